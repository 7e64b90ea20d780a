"""MIPS instructions as intents, the hand encoders, and a small field decoder.

Pure computation, standard library only (the recording path may import it).
The keystone/capstone glue that checks every word lives in ``asm.py``.

Sources: "MIPS Architecture for Programmers Vol. II-A" (MIPS32) and its MIPS64
and Release 6 volumes: J/JAL (instr_index = target[27:2], region of the delay
slot), BEQ (offset = (target - (pc + 4)) / 4, signed 16 bits), JALR (rd, rs,
funct 9; R6 removes JR (funct 8): `jr rs` is `jalr zero,rs`).
"""

from __future__ import annotations

from ..errors import RecordpatchError
from ..tuples import named

from .mips import REG_AT, REG_RA, REG_SP, REG_V1, REG_ZERO, sext  # noqa: F401 (E.REG_*)

#: Register names by ABI (index = number). o32 $8-$15 are t0-t7; n64 $8-$11 are a4-a7, $12-$15 t0-t3.
_COMMON = {0: "zero", 1: "at", 2: "v0", 3: "v1", 4: "a0", 5: "a1", 6: "a2", 7: "a3",
           16: "s0", 17: "s1", 18: "s2", 19: "s3", 20: "s4", 21: "s5", 22: "s6", 23: "s7",
           24: "t8", 25: "t9", 26: "k0", 27: "k1", 28: "gp", 29: "sp", 30: "fp", 31: "ra"}
REG_NAMES = {
    "o32": [_COMMON.get(i) or f"t{i - 8}" for i in range(32)],
    "n64": [_COMMON.get(i) or (f"a{i - 4}" if i < 12 else f"t{i - 12}") for i in range(32)],
}
#: Registers holding arguments at a function's entry (live: a pad must not write them).
ARG_REGS = {"o32": frozenset(range(4, 8)), "n64": frozenset(range(4, 12))}
#: Registers a function entry pad may clobber: dead at entry under the ABI
#: (at, v0/v1, temporaries, t9 is the PIC call register and is not touched).
SCRATCH_REGS = {"o32": frozenset({1, 2, 3, *range(8, 16), 24}),
                "n64": frozenset({1, 2, 3, *range(12, 16), 24})}


def flag_reg_default(abi: str) -> int:
    """The ABI's own t0: $8 on o32, $12 on n64."""
    return 8 if abi == "o32" else 12


def pretty_word(w: int, pc: int, t) -> str:
    """The word at ``pc`` in the ABI's register names (capstone names $12 t4 even on n64),
    or '' when the decoder here does not know it."""
    i = decode(w, pc, t)
    return i.pretty(t.abi) if i else ""


def flag_reg(text: str | None, abi: str) -> int:
    """The register a pad's `li` sets (the design's flag; text as --flag-reg gives it, None:
    the ABI's t0). Never zero (`li` would be lost), at (the pad's own address register), sp
    or ra (the call needs them): RecordpatchError. An argument register is legal but
    breaks the traced function: :func:`flag_reg_hazard`."""
    if text is None:
        return flag_reg_default(abi)
    r = parse_reg(text, abi)
    if r in (REG_ZERO, REG_AT, REG_SP, REG_RA):
        raise RecordpatchError(f"${r} ({reg_name(abi, r)}) cannot be the flag register: the "
                               "pad needs it")
    return r


def flag_reg_hazard(r: int, abi: str) -> str:
    """Why a pad writing ``r`` would break the traced function, or '': an argument register
    holds an argument at the function's entry."""
    if r in ARG_REGS[abi]:
        return (f"flag register ${r} is {reg_name(abi, r)}, an argument register on {abi}: "
                "the pad overwrites an argument")
    return ""


def reg_name(abi: str, r: int) -> str:
    return REG_NAMES[abi][r]


def parse_reg(text: str, abi: str) -> int:
    """`$12`, `12`, `t0` (in the ABI's naming) -> register number."""
    t = text.strip().lstrip("$")
    if t.isdigit() and 0 <= int(t) < 32:
        return int(t)
    if t in REG_NAMES[abi]:
        return REG_NAMES[abi].index(t)
    if t == "s8":
        return 30
    raise RecordpatchError(f"unknown register {text!r} for {abi}")


class Target(named("Target", "abi big r6")):
    """What words are encoded for: abi "o32"/"n64", big-endian?, MIPS Release 6?"""
    __slots__ = ()

    @property
    def bits(self) -> int:
        return 64 if self.abi == "n64" else 32

    @property
    def endian(self) -> str:
        return ">" if self.big else "<"

    @property
    def name(self) -> str:
        return f"{self.abi}-{'be' if self.big else 'le'}{'-r6' if self.r6 else ''}"


ALL_TARGETS = tuple(Target(a, b, r) for a in ("o32", "n64") for b in (True, False) for r in (False, True))


class Insn(named("Insn", "op args")):
    """An intended instruction: op name and integer operands (registers by number).

    nop ()  lui (rt, imm16)  addiu/daddiu (rt, rs, simm16)  li (rt, imm: one word)
    move (rd, rs)  jalr (rd, rs)  jr (rs)  jal/j (target address)  b (target address)
    """
    __slots__ = ()

    def _spell(self, reg, sep: str) -> str:
        """The instruction with registers spelt by ``reg`` and operands joined by ``sep``."""
        op, a = self.op, self.args
        if op == "nop":
            return "nop"
        if op in ("jal", "j", "b"):
            return f"{op} {a[0]:#x}"
        if op == "lui":
            ops = [reg(a[0]), f"{a[1]:#x}"]
        elif op in ("addiu", "daddiu"):
            ops = [reg(a[0]), reg(a[1]), str(a[2])]
        elif op == "li":
            ops = [reg(a[0]), str(a[1])]
        elif op in ("move", "jalr"):
            ops = [reg(a[0]), reg(a[1])]
        elif op == "jr":
            ops = [reg(a[0])]
        else:
            raise RecordpatchError(f"unknown instruction {op}")
        return f"{op} {sep.join(ops)}"

    def text(self, abi: str = "o32") -> str:
        """Assembler text with numeric registers (what keystone and GNU as read)."""
        return self._spell("${}".format, ", ")

    def pretty(self, abi: str) -> str:
        """Text with the ABI's register names (for people)."""
        return self._spell(REG_NAMES[abi].__getitem__, ",")


def nop():
    return Insn("nop", ())


def lui(rt, imm):
    return Insn("lui", (rt, imm))


def addiu(rt, rs, imm):
    return Insn("addiu", (rt, rs, imm))


def daddiu(rt, rs, imm):
    return Insn("daddiu", (rt, rs, imm))


def li(rt, imm):
    return Insn("li", (rt, imm))


def move(rd, rs):
    return Insn("move", (rd, rs))


def jalr(rd, rs):
    return Insn("jalr", (rd, rs))


def jr(rs):
    return Insn("jr", (rs,))


def jal(target):
    return Insn("jal", (target,))


def j(target):
    return Insn("j", (target,))


def b(target):
    return Insn("b", (target,))


class EncodeError(RecordpatchError):
    """An intent that cannot be one word (operand out of range, not in this ISA)."""


def _reg(r, what="register"):
    if not isinstance(r, int) or not 0 <= r < 32:
        raise EncodeError(f"{what} {r!r} is not a MIPS register number (0-31)")
    return r


def check_operands(insn: Insn, t: Target) -> None:
    """Range and ISA checks done before any encoder runs."""
    op, a = insn.op, insn.args
    if op == "nop":
        return
    if op == "lui":
        _reg(a[0])
        if not 0 <= a[1] <= 0xFFFF:
            raise EncodeError(f"lui immediate {a[1]:#x} is not 16 bits")
    elif op in ("addiu", "daddiu"):
        _reg(a[0]), _reg(a[1])
        if not -0x8000 <= a[2] <= 0x7FFF:
            raise EncodeError(f"{op} immediate {a[2]} is not a signed 16-bit value")
        if op == "daddiu" and t.bits != 64:
            raise EncodeError("daddiu is a 64-bit instruction (not in o32 code)")
    elif op == "li":
        _reg(a[0])
        if not -0x8000 <= a[1] <= 0xFFFF:
            raise EncodeError(f"li {a[1]} needs more than one instruction (one word: -32768..65535)")
    elif op in ("move", "jalr"):
        # jalr rd == rs (the design's `jalr at,at`) is UNPREDICTABLE in the ISA manuals and GNU as
        # refuses it; it is encoded (the design needs it) and the transition model shows the hazard.
        _reg(a[0]), _reg(a[1])
    elif op == "jr":
        _reg(a[0])
    elif op in ("jal", "j", "b"):
        if a[0] & 3:
            raise EncodeError(f"{op} target {a[0]:#x} is not 4-byte aligned")
    else:
        raise EncodeError(f"unknown instruction {op}")


# ---------------------------------------------------------------- hand encoders (PC-relative/absolute)
def _mask(t: Target) -> int:
    return (1 << t.bits) - 1


def enc_jump(op: str, target: int, pc: int, t: Target) -> int:
    """J/JAL: the target must lie in the 256 MB region of the delay slot (pc + 4)."""
    m = _mask(t)
    target &= m
    slot = (pc + 4) & m
    if target & 3:
        raise EncodeError(f"{op} target {target:#x} is not 4-byte aligned")
    if (target ^ slot) >> 28:
        raise EncodeError(f"{op} at {pc:#x} cannot reach {target:#x}: not in the 256 MB region of "
                          f"its delay slot ({slot & ~0x0FFFFFFF & m:#x})")
    return ((2 if op == "j" else 3) << 26) | ((target >> 2) & 0x03FFFFFF)


def enc_b(target: int, pc: int, t: Target) -> int:
    """`b target` = BEQ zero,zero,offset; offset counted from the delay slot, in words."""
    m = _mask(t)
    delta = ((target - (pc + 4)) & m)
    if delta >> (t.bits - 1):
        delta -= 1 << t.bits
    if delta & 3:
        raise EncodeError(f"b target {target:#x} is not 4-byte aligned")
    off = delta >> 2
    if not -0x8000 <= off <= 0x7FFF:
        raise EncodeError(f"b at {pc:#x} cannot reach {target:#x} (offset {delta} bytes is beyond "
                          "the +-128 KB of a 16-bit branch)")
    return (4 << 26) | (off & 0xFFFF)


def enc_jalr(rd: int, rs: int) -> int:
    return (rs << 21) | (rd << 11) | 9


def enc_jr(rs: int, t: Target) -> int:
    """JR (funct 8) before R6; on R6 JR is gone and `jr rs` is JALR zero,rs."""
    return enc_jalr(0, rs) if t.r6 else (rs << 21) | 8


def hand_encoded(insn: Insn, t: Target) -> bool:
    """Encoded here rather than by keystone: jumps, branches, and R6's jr."""
    return insn.op in ("jal", "j", "b") or (insn.op == "jr" and t.r6)


def hand_encode(insn: Insn, pc: int, t: Target) -> int:
    if insn.op in ("jal", "j"):
        return enc_jump(insn.op, insn.args[0], pc, t)
    if insn.op == "b":
        return enc_b(insn.args[0], pc, t)
    if insn.op == "jr":
        return enc_jr(insn.args[0], t)
    raise EncodeError(f"{insn.op} is not hand-encoded")


# ---------------------------------------------------------------- hi/lo halves
def hi_lo(addr: int, t: Target) -> tuple[int, int]:
    """%hi/%lo of an address loadable with lui + (d)addiu: (hi16, signed lo16).

    On n64 the address must be a sign-extended 32-bit value (lui sign-extends).
    """
    m = _mask(t)
    addr &= m
    if t.bits == 64 and sext(addr, 32) & m != addr:
        raise EncodeError(f"address {addr:#x} is not a sign-extended 32-bit address: "
                          "lui/daddiu cannot load it")
    lo = sext(addr, 16)
    hi = ((addr - lo) >> 16) & 0xFFFF
    return hi, lo


# ---------------------------------------------------------------- field decoder
def fields(w: int) -> tuple[int, int, int, int, int, int]:
    """(opcode, rs, rt, rd, sa, funct)."""
    return w >> 26, (w >> 21) & 31, (w >> 16) & 31, (w >> 11) & 31, (w >> 6) & 31, w & 63


def decode(w: int, pc: int, t: Target) -> Insn | None:
    """The intent a word encodes, for the instructions this backend emits; None otherwise.

    Our own reading of the fields, independent of capstone: used by the transition
    interpreter and to catch what capstone cannot tell apart (JR vs JALR zero on R6).
    """
    op, rs_, rt_, rd_, sa, fn = fields(w)
    if w == 0:
        return nop()
    if op == 0:
        if fn == 9 and rt_ == 0 and sa == 0:
            return jr(rs_) if rd_ == 0 and t.r6 else jalr(rd_, rs_)
        if fn == 8 and rt_ == 0 and rd_ == 0 and sa == 0 and not t.r6:
            return jr(rs_)
        if sa == 0 and fn in (37, 45, 33) and 0 in (rs_, rt_):
            if fn == 45 and t.bits != 64:
                return None
            if fn == 33 and t.bits == 64:
                return Insn("addu-move", (rd_, rs_ or rt_))  # 32-bit: sign-extends, not a move
            return move(rd_, rs_ or rt_)
        return None
    if op == 15 and rs_ == 0:
        return lui(rt_, w & 0xFFFF)
    if op == 9:
        return li(rt_, sext(w, 16)) if rs_ == 0 else addiu(rt_, rs_, sext(w, 16))
    if op == 25 and t.bits == 64:
        return daddiu(rt_, rs_, sext(w, 16))
    if op == 13 and rs_ == 0:
        return li(rt_, w & 0xFFFF)
    if op in (2, 3):
        region = (pc + 4) & ~0x0FFFFFFF & _mask(t)
        return Insn("j" if op == 2 else "jal", (region | ((w & 0x03FFFFFF) << 2),))
    if op == 4 and rs_ == 0 and rt_ == 0:
        return b((pc + 4 + (sext(w, 16) << 2)) & _mask(t))
    return None
