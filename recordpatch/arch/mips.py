"""MIPS rules: ABIs, relocation types, instruction fields and the `-pg` call shapes.

Sources: "MIPS Architecture for Programmers Vol. II-A" (MIPS32/MIPS64
instruction encodings, R6 changes), the SYSV ABI MIPS supplement (o32 ELF
header flags, R_MIPS_* numbers), the MIPS64 ELF object specification (n64), and
GCC's mips.cc function_profiler (what `-pg` emits on MIPS).

Everything here is pure computation on 32-bit instruction words; nothing reads
or writes files.
"""

from __future__ import annotations

import struct

from ..errors import UnsupportedError
from ..tuples import named

# ---------------------------------------------------------------- relocations
R_MIPS_NONE = 0
R_MIPS_32 = 2
R_MIPS_26 = 4
R_MIPS_HI16 = 5
R_MIPS_LO16 = 6
R_MIPS_64 = 18
R_MIPS_HIGHEST = 29
R_MIPS_HIGHER = 28
R_MIPS_PC26_S2 = 61

RELOC_NAMES = {
    0: "R_MIPS_NONE", 2: "R_MIPS_32", 4: "R_MIPS_26", 5: "R_MIPS_HI16", 6: "R_MIPS_LO16",
    18: "R_MIPS_64", 28: "R_MIPS_HIGHER", 29: "R_MIPS_HIGHEST", 61: "R_MIPS_PC26_S2",
}


def reloc_name(t: int) -> str:
    return RELOC_NAMES.get(t, f"R_MIPS_<{t}>")


# ---------------------------------------------------------------- ABI (e_flags)
EF_MIPS_ABI2 = 0x20          # n32
EF_MIPS_ABI = 0x0000F000
E_MIPS_ABI_O32 = 0x00001000
E_MIPS_ABI_O64 = 0x00002000
E_MIPS_ABI_EABI32 = 0x00003000
E_MIPS_ABI_EABI64 = 0x00004000
EF_MIPS_ARCH = 0xF0000000
EF_MIPS_ARCH_32R6 = 0x90000000
EF_MIPS_ARCH_64R6 = 0xA0000000
EF_MIPS_MICROMIPS = 0x02000000

_ABI_NAMES = {E_MIPS_ABI_O64: "o64", E_MIPS_ABI_EABI32: "eabi32", E_MIPS_ABI_EABI64: "eabi64"}


class Abi(named("Abi", "name word abs_reloc r6")):
    __slots__ = ()
    # name: "o32" or "n64"
    # word: pointer size in bytes: size of a table entry
    # abs_reloc: R_MIPS_32 or R_MIPS_64: what a table entry is relocated with


def abi_of(bits: int, e_flags: int) -> Abi:
    """The ABI of a MIPS object, or UnsupportedError naming the one we do not handle.

    o32 is ELFCLASS32 without EF_MIPS_ABI2 (the ABI field may be 0 or O32);
    n64 is ELFCLASS64. n32 (ELFCLASS32 + EF_MIPS_ABI2), o64 and EABI are not
    kernel ABIs for ftrace and are refused by name.
    """
    abi_field = e_flags & EF_MIPS_ABI
    r6 = (e_flags & EF_MIPS_ARCH) in (EF_MIPS_ARCH_32R6, EF_MIPS_ARCH_64R6)
    if bits == 32:
        if e_flags & EF_MIPS_ABI2:
            raise UnsupportedError("unsupported MIPS ABI n32 (only o32 and n64 are handled)")
        if abi_field not in (0, E_MIPS_ABI_O32):
            raise UnsupportedError(f"unsupported MIPS ABI {_ABI_NAMES.get(abi_field, hex(abi_field))}"
                                   " (only o32 and n64 are handled)")
        return Abi("o32", 4, R_MIPS_32, r6)
    if abi_field:
        raise UnsupportedError(f"unsupported MIPS ABI {_ABI_NAMES.get(abi_field, hex(abi_field))}"
                               " in an ELF64 file (only o32 and n64 are handled)")
    return Abi("n64", 8, R_MIPS_64, r6)


# ---------------------------------------------------------------- instruction fields
def op(w: int) -> int:
    return w >> 26


def rs(w: int) -> int:
    return (w >> 21) & 31


def rt(w: int) -> int:
    return (w >> 16) & 31


def rd(w: int) -> int:
    return (w >> 11) & 31


def funct(w: int) -> int:
    return w & 63


OP_SPECIAL, OP_J, OP_JAL, OP_BEQ, OP_ADDIU, OP_ORI, OP_LUI, OP_DADDIU = 0, 2, 3, 4, 9, 13, 15, 25
#: MIPS32/64 Release 6 POP66/POP76 with rs = 0: JIC rt,off / JIALC rt,off (`jrc`/`jalrc`
#: when off = 0), compact jumps with no delay slot (pre-R6, the same opcodes are LDC2/SDC2).
OP_POP66, OP_POP76 = 54, 62
FN_SLL, FN_JR, FN_JALR, FN_OR, FN_ADDU, FN_DADDU, FN_DSLL, FN_DSLL32 = 0, 8, 9, 37, 33, 45, 56, 60
REG_ZERO, REG_AT, REG_V1, REG_SP, REG_RA = 0, 1, 3, 29, 31

NOP = 0x00000000


def is_jal(w: int) -> bool:
    return w >> 26 == OP_JAL


def is_move_at_ra(w: int) -> bool:
    """`move at,ra` in any of its encodings: or/addu/daddu at,ra,zero (either operand order)."""
    if op(w) != OP_SPECIAL or rd(w) != REG_AT or (w >> 6) & 31:
        return False
    if funct(w) not in (FN_OR, FN_ADDU, FN_DADDU):
        return False
    return {rs(w), rt(w)} == {REG_RA, REG_ZERO}


#: Every encoding of `move at,ra` (or/addu/daddu at, with ra and zero in either order),
#: for the common-case test in the recording loop: one set lookup per site.
MOVE_AT_RA_WORDS = frozenset(
    (a << 21) | (b << 16) | (REG_AT << 11) | f
    for f in (FN_OR, FN_ADDU, FN_DADDU) for a, b in ((REG_RA, REG_ZERO), (REG_ZERO, REG_RA)))


def is_lui(w: int, reg: int) -> bool:
    return op(w) == OP_LUI and rs(w) == 0 and rt(w) == reg


def is_addiu_self(w: int, reg: int) -> bool:
    """addiu/daddiu reg,reg,imm (the %lo half of a long-call address)."""
    return op(w) in (OP_ADDIU, OP_DADDIU) and rs(w) == reg and rt(w) == reg


def is_jalr_ra(w: int, reg: int) -> bool:
    """jalr ra,reg: SPECIAL/JALR with rd = ra. Same encoding on R6 (hint bits 0)."""
    return op(w) == OP_SPECIAL and funct(w) == FN_JALR and rs(w) == reg and rd(w) == REG_RA \
        and rt(w) == 0


# ---------------------------------------------------------------- -pg call shapes
KIND_JAL = "jal"            # kernel: [move at,ra; (ra-address);] jal _mcount; <delay slot>
KIND_LONG = "long-call"     # module: lui v1; addiu v1; move at,ra; [..] jalr v1; <delay slot>

#: How far (in instructions) after the %lo half we look for `move at,ra` and `jalr v1`.
LONG_CALL_WINDOW = 4
#: How far before a `jal _mcount` the `move at,ra` may stand (-mmcount-ra-address adds one).
JAL_WINDOW = 3


class Verdict(named("Verdict", "site kind reason pair", defaults=(-1,))):
    """What a relocation against _mcount is: a call site to record, or why not."""
    __slots__ = ()

    # kind: KIND_JAL, KIND_LONG, or "" when not a site
    # reason: empty for clean sites; else what is wrong or what it is
    # pair: for long calls: offset of the %lo half (not recorded)


def _reader(text: bytes, endian: str, fmt: str):
    """An accessor read(offset) -> the aligned unit at ``offset``, or None outside ``text``."""
    unpack = struct.Struct(endian + fmt).unpack_from
    size = struct.calcsize(fmt)
    n = len(text)

    def read(off: int) -> int | None:
        if off < 0 or off + size > n or off & (size - 1):
            return None
        return unpack(text, off)[0]

    return read


def words(text: bytes, endian: str):
    """Return an accessor word(offset) -> int or None when outside ``text``."""
    return _reader(text, endian, "I")


def move_at_ra_before(word, offset: int) -> bool:
    """A `move at,ra` within JAL_WINDOW words before ``offset``: what GCC puts before the
    `jal _mcount` of a kernel call site (record's classify and audit's linked images)."""
    return any(is_move_at_ra(p) for p in map(word, range(offset - 4, offset - 4 * JAL_WINDOW - 1,
                                                         -4)) if p is not None)


def long_call_jalr(word, lo: int) -> tuple[bool, bool]:
    """GCC's long call after its `addiu v1,v1,%lo(_mcount)` at ``lo``: (whether a
    `jalr v1` follows within LONG_CALL_WINDOW words; whether a `move at,ra` came before
    it). The one recogniser of that shape: record (relocatable) and audit (linked)."""
    seen_move = False
    for k in range(1, LONG_CALL_WINDOW + 1):
        wk = word(lo + 4 * k)
        if wk is None:
            break
        if is_move_at_ra(wk):
            seen_move = True
        elif is_jalr_ra(wk, REG_V1):
            return True, seen_move
    return False, seen_move


def classify(word, offset: int, rtype: int, lo16_offsets) -> Verdict:
    """Decide whether the relocation of type ``rtype`` at ``offset`` is a `-pg` call.

    ``word`` reads instruction words of the section; ``lo16_offsets`` holds the
    offsets of R_MIPS_LO16 relocations against _mcount in the same section.
    A site is the whole sequence GCC emits, checked instruction by instruction;
    a lone `lui/addiu` pair (taking _mcount's address, as ftrace's own code does)
    is not a call.
    """
    w = word(offset)
    if w is None:
        return Verdict(False, "", "relocation offset is not an aligned instruction in its section")
    if rtype == R_MIPS_26:
        if not is_jal(w):
            return Verdict(False, "", f"R_MIPS_26 on {w:#010x}, which is not a jal")
        if not move_at_ra_before(word, offset):
            return Verdict(True, KIND_JAL, "jal _mcount without a preceding move at,ra")
        return Verdict(True, KIND_JAL, "")
    if rtype == R_MIPS_HI16:
        if not is_lui(w, REG_V1):
            return Verdict(False, "", f"R_MIPS_HI16 on {w:#010x}, which is not lui v1")
        lo = offset + 4
        w2 = word(lo)
        if w2 is None or not is_addiu_self(w2, REG_V1) or lo not in lo16_offsets:
            return Verdict(False, "", "address load of _mcount (lui without addiu v1,%lo(_mcount))")
        called, seen_move = long_call_jalr(word, lo)
        if not called:
            return Verdict(False, "", "address load of _mcount (lui/addiu v1 not followed by "
                           "jalr v1)")
        if not seen_move:
            return Verdict(True, KIND_LONG, "jalr v1 to _mcount without move at,ra", lo)
        return Verdict(True, KIND_LONG, "", lo)
    if rtype == R_MIPS_LO16:
        return Verdict(False, "", "%lo half of an _mcount address")
    return Verdict(False, "", f"{reloc_name(rtype)} reference to _mcount")


# ---------------------------------------------------------------- calls the kernel cannot patch
# Linux 6.1's arch/mips/kernel/ftrace.c knows two shapes only, both MIPS32 encodings:
# `jal _mcount` (ftrace_make_nop writes `nop`, ftrace_make_call `jal ftrace_caller`) and
# GCC's 32-bit long call `lui v1; addiu v1; move at,ra; [move t0,..;] jalr v1`, whose `lui`
# becomes INSN_B_1F: `b` over exactly MCOUNT_OFFSET_INSNS (4, or 5 with 32-bit
# -mmcount-ra-address) words. Any other call to _mcount, if recorded, is patched into a
# wrong program (a branch into the middle of a longer sequence; MIPS32 words over
# microMIPS code), so it is refused; left unrecorded it still calls _mcount, so it is
# reported as an error, never dropped silently.
KIND_REFUSED = "refused"
#: Words scanned after an address load of _mcount for the `jalr ra,REG` that calls it
#: (GCC's 64-bit sequence without -msym32 has its jalr 7 words after the first lui).
CALL_SCAN_WINDOW = 10
#: microMIPS major opcodes (first halfword >> 10) of the 32-bit calls: JAL32, JALS32, JALX32
MM_CALL_OPS = {0x3D: "jal", 0x1D: "jals", 0x3C: "jalx"}


def halfwords(text: bytes, endian: str):
    """Return an accessor half(offset) -> int or None (microMIPS code is a halfword stream;
    a 32-bit instruction is its most significant halfword first, in either endianness)."""
    return _reader(text, endian, "H")


def _mm_length(h: int) -> int:
    """Bytes of the microMIPS instruction whose first halfword is ``h``: 16-bit encodings
    have major opcodes with low three bits 1, 2 or 3 (microMIPS32 manual, table 6.1)."""
    return 2 if (h >> 10) & 7 in (1, 2, 3) else 4


def _mm_jalr_reg(h: int, h2: int | None) -> int | None:
    """The register a microMIPS `jalr[s] ra,REG` (16 or 32 bits) calls through, else None."""
    if h & 0xFFC0 == 0x45C0:           # POOL16C JALR16 / JALRS16: rs in bits 4..0
        return h & 31
    if h >> 10 == 0 and h2 is not None and h2 in (0x0F3C, 0x4F3C) and (h >> 5) & 31 == REG_RA:
        return h & 31                  # POOL32A JALR / JALRS with rt = ra
    return None


def _mips_call_through(word, offset: int, refs) -> int | None:
    """Offset of the `jalr ra,REG` that calls the _mcount address loaded from ``offset``
    on, or None: registers written from a word relocated against _mcount (``refs``) or
    from such registers (lui, [d]addiu, ori, [d]addu, or, sll/dsll/dsll32) carry the
    address; a jump, a branch or another jalr ends the search."""
    carry = 0
    for k in range(CALL_SCAN_WINDOW):
        o = offset + 4 * k
        w = word(o)
        if w is None:
            return None
        hit = o in refs
        code = op(w)
        if code == OP_LUI:
            dst, val = rt(w), hit
        elif code in (OP_ADDIU, OP_DADDIU, OP_ORI):
            dst, val = rt(w), hit or bool(carry >> rs(w) & 1)
        elif code == OP_SPECIAL:
            f = funct(w)
            if f == FN_JALR:
                return o if rd(w) == REG_RA and carry >> rs(w) & 1 else None
            if f in (FN_ADDU, FN_DADDU, FN_OR):
                dst, val = rd(w), bool((carry >> rs(w) | carry >> rt(w)) & 1)
            elif f in (FN_SLL, FN_DSLL, FN_DSLL32):
                dst, val = rd(w), bool(carry >> rt(w) & 1)
            elif f == FN_JR:
                return None
            else:
                continue
        elif code == OP_POP76 and rs(w) == 0:   # R6 jalrc / jialc: clang's R6 long call
            return o if carry >> rt(w) & 1 else None
        elif code in (OP_J, OP_JAL, OP_POP66) or 4 <= code <= 7 or code == 1:
            return None
        else:
            continue
        if dst:
            carry = carry | 1 << dst if val else carry & ~(1 << dst)
    return None


def refused_call(word, half, offset: int, rtype: int, refs) -> Verdict | None:
    """A call to _mcount starting at ``offset`` in a shape the kernel cannot patch
    (``pair``: offset of its last instruction, to report each call once), or None.
    Called for relocations :func:`classify` finds no recordable site at."""
    if rtype == R_MICROMIPS_26_S1:
        h = half(offset)
        if h is not None and h >> 10 in MM_CALL_OPS:
            return Verdict(False, KIND_REFUSED, f"microMIPS `{MM_CALL_OPS[h >> 10]} _mcount` "
                           "(arch/mips/kernel/ftrace.c writes MIPS32 words only; build without "
                           "-mmicromips)", offset)
        return None
    if rtype == R_MICROMIPS_HI16:
        h = half(offset)
        if h is None or h & 0xFFE0 != 0x41A0:   # POOL32I LUI
            return None
        reg, o = h & 31, offset + 4
        for _ in range(CALL_SCAN_WINDOW):
            h1 = half(o)
            if h1 is None:
                return None
            if _mm_jalr_reg(h1, half(o + 2)) == reg:
                return Verdict(False, KIND_REFUSED, "microMIPS long call to _mcount "
                               "(arch/mips/kernel/ftrace.c writes MIPS32 words only; build "
                               "without -mmicromips)", o)
            o += _mm_length(h1)
        return None
    if rtype not in (R_MIPS_HIGHEST, R_MIPS_HI16):
        return None
    end = _mips_call_through(word, offset, refs)
    if end is None:
        return None
    compact = op(word(end)) == OP_POP76   # R6 jalrc: no delay slot
    n = (end - offset) // 4 + (1 if compact else 2)
    if rtype == R_MIPS_HIGHEST:
        what = ("64-bit long call to _mcount (lui %highest .. jalr: built without -msym32; "
                "KBUILD_SYM32=y gives the 32-bit form)")
    else:
        what = "long call to _mcount not in GCC's lui v1/addiu v1/move at,ra/jalr v1 form"
    return Verdict(False, KIND_REFUSED, f"{what}: {n} words"
                   f"{' (R6 jalrc, no delay slot)' if compact else ' with its delay slot'}, "
                   "where ftrace_make_nop's `b 1f` assumes GCC's 5 (or 6)", end)


# ---------------------------------------------------------------- patchable entries
#: st_other bits of MIPS function symbols (MIPS ABI supplement; binutils include/elf/mips.h)
STO_MIPS_ISA = 0xC0
STO_MICROMIPS = 0x80
STO_MIPS16 = 0xF0

#: microMIPS `nop16` (MOVE16 zero,zero); the 32-bit microMIPS nop is 0x0000 0x0000, like MIPS's.
MM_NOP16 = 0x0C00
R_MICROMIPS_26_S1 = 133
R_MICROMIPS_HI16 = 134
R_MIPS_PC16 = 10


def is_micromips_sym(other: int) -> bool:
    return other & STO_MIPS_ISA == STO_MICROMIPS and other != STO_MIPS16


def nop_run(text: bytes, offset: int, endian: str, micro: bool, limit: int = 64) -> list[int]:
    """Offsets (relative to ``offset``) of the consecutive nops starting at ``offset``,
    plus, as the last element, the end of the run; so ``len(result) - 1`` nops.

    MIPS: 32-bit `nop` words. microMIPS: `nop16` halfwords or 32-bit nops (two zero
    halfwords). Stops at the first other instruction, the section end, or ``limit``.
    """
    pos = 0
    out = []
    end = len(text)
    if not micro:
        unpack = struct.Struct(endian + "I").unpack_from
        if offset & 3 or offset < 0:
            return [0]
        while len(out) < limit and offset + pos + 4 <= end and unpack(text, offset + pos)[0] == NOP:
            out.append(pos)
            pos += 4
        out.append(pos)
        return out
    unpack = struct.Struct(endian + "H").unpack_from
    if offset & 1 or offset < 0:
        return [0]
    while len(out) < limit and offset + pos + 2 <= end:
        h = unpack(text, offset + pos)[0]
        if h == MM_NOP16:
            step = 2
        elif h == 0 and offset + pos + 4 <= end and unpack(text, offset + pos + 2)[0] == 0:
            step = 4
        else:
            break
        out.append(pos)
        pos += step
    out.append(pos)
    return out


#: PC-relative relocation types: the place referenced is S + A + 4 (the branch's
#: offset counts from the delay slot / next instruction), so a call to S has A = -4.
R_MIPS_PC21_S2 = 60
PC_RELATIVE = frozenset({R_MIPS_PC16, R_MIPS_PC21_S2, R_MIPS_PC26_S2})


def sext(v: int, bits: int) -> int:
    """The low ``bits`` bits of ``v`` as a two's complement number."""
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def rel_addend(rtype: int, w: int) -> int | None:
    """The implicit addend of a REL relocation of ``rtype`` stored in word ``w``
    (a 32-bit instruction or data word), or None for types we do not decode.
    R_MIPS_HI16/LO16 give their halves only (the caller pairs them)."""
    if rtype == R_MIPS_32:
        return w
    if rtype == R_MIPS_26:
        return (w & 0x3FFFFFF) << 2
    if rtype == R_MICROMIPS_26_S1:
        return (w & 0x3FFFFFF) << 1
    if rtype == R_MIPS_PC16:
        return sext(w, 16) << 2
    if rtype == R_MIPS_PC21_S2:
        return sext(w, 21) << 2
    if rtype == R_MIPS_PC26_S2:
        return sext(w, 26) << 2
    if rtype in (R_MIPS_HI16, R_MIPS_LO16):
        return w & 0xFFFF
    return None


def rel_with_addend(rtype: int, w: int, addend: int) -> int:
    """Word ``w`` with its REL addend field set to ``addend`` (inverse of rel_addend)."""
    if rtype == R_MIPS_32:
        return addend & 0xFFFFFFFF
    if rtype == R_MIPS_26:
        return (w & ~0x3FFFFFF) | ((addend >> 2) & 0x3FFFFFF)
    if rtype == R_MICROMIPS_26_S1:
        return (w & ~0x3FFFFFF) | ((addend >> 1) & 0x3FFFFFF)
    if rtype == R_MIPS_PC16:
        return (w & ~0xFFFF) | ((addend >> 2) & 0xFFFF)
    if rtype == R_MIPS_PC21_S2:
        return (w & ~0x1FFFFF) | ((addend >> 2) & 0x1FFFFF)
    if rtype == R_MIPS_PC26_S2:
        return (w & ~0x3FFFFFF) | ((addend >> 2) & 0x3FFFFFF)
    if rtype in (R_MIPS_HI16, R_MIPS_LO16):
        return (w & ~0xFFFF) | (addend & 0xFFFF)
    raise ValueError(rtype)


# ---------------------------------------------------------------- patched states (audit)
# What Linux's arch/mips/kernel/ftrace.c writes over a recorded site, and what the
# patchable-entry design (DYNAMIC_FTRACE_WITH_REGS) writes over a pad. Pure predicates on
# words; `recordpatch audit` uses them to tell a patched site from a wrong entry.


def jal_target(w: int, pc: int, bits: int = 32) -> int:
    """The address a `jal` at ``pc`` jumps to (the 256 MB region of its delay slot)."""
    mask = (1 << bits) - 1
    return (((pc + 4) & ~0x0FFFFFFF) | ((w & 0x03FFFFFF) << 2)) & mask


def is_b_1f(w: int) -> bool:
    """`b 1f` (beq zero,zero,+N, N of 1..8 words): ftrace_make_nop's INSN_B_1F over a
    module's long call (skips lui/addiu/move/jalr; 4 or 5 words with -mmcount-ra-address)."""
    return w >> 16 == OP_BEQ << 10 and 1 <= (w & 0xFFFF) <= 8


def is_jalr_at_at(w: int) -> bool:
    """`jalr at,at`: the design's call into the trampoline (rd = rs = at)."""
    return op(w) == OP_SPECIAL and funct(w) == FN_JALR and rs(w) == REG_AT and rd(w) == REG_AT \
        and rt(w) == 0


def is_jr(w: int, reg: int, r6: bool) -> bool:
    """`jr reg`: SPECIAL/JR before R6; R6 encodes it as `jalr zero,reg` (also valid before)."""
    if op(w) != OP_SPECIAL or rs(w) != reg or rt(w) or rd(w) or (w >> 6) & 31 and not r6:
        return False
    return funct(w) == FN_JALR or (funct(w) == FN_JR and not r6)


def li_value(w: int, reg: int) -> int | None:
    """The value of `li reg,imm` (addiu reg,zero / ori reg,zero), else None."""
    if rs(w) != REG_ZERO or rt(w) != reg:
        return None
    if op(w) == OP_ADDIU:
        v = w & 0xFFFF
        return v - 0x10000 if v & 0x8000 else v
    if op(w) == OP_ORI:
        return w & 0xFFFF
    return None


def pad_state(w0: int, w1: int | None, w2: int | None, flag_reg: int, r6: bool) -> str:
    """The design's patched pad states from its first three words, or '' if none:
    init (lui at; nop; li t0,0), call-regs (lui at; jalr at,at; li t0,0),
    call (... li t0,1), redirect (lui at; addiu at,at; jr at)."""
    if not is_lui(w0, REG_AT) or w1 is None or w2 is None:
        return ""
    if is_addiu_self(w1, REG_AT) and is_jr(w2, REG_AT, r6):
        return "redirect"
    flag = li_value(w2, flag_reg)
    if flag not in (0, 1):
        return ""
    if w1 == NOP:
        return "init" if flag == 0 else ""
    if is_jalr_at_at(w1):
        return "call-regs" if flag == 0 else "call"
    return ""
