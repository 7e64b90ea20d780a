"""The MIPS assembler backend: keystone for plain words, hand encoders for jumps,
and capstone reading every word back.

Imported only by the commands that emit or check code (patch, verify): keystone
and capstone cost ~0.3 s to import and are an optional extra (`pip install
recordpatch[patch]`). The recording path never imports this module.

Rules (measured here with keystone 0.9.2 / capstone 5):
* keystone assembles in *reorder* mode: without `.set noreorder` a `jalr` comes
  back with a delay-slot nop. Every statement is assembled with `.set noreorder`
  and must come back exactly 4 bytes (a `li` or `addiu` that needs two words is
  refused, never truncated).
* keystone silently mis-encodes PC-relative and absolute targets, and has no R6
  mode: `jal`, `j`, `b` and R6's `jr` (= `jalr zero,rs`) are encoded by hand
  (``encode.py``). The other words keystone emits are the same on R6.
* capstone decodes each word in the target's mode (MIPS32/MIPS64, R6, endian);
  the decoded instruction must be the intent. capstone prints R6's JALR zero and
  the removed JR (funct 8) alike, so the encoding is also read back with our own
  field decoder, which knows R6 has no JR.
"""

from __future__ import annotations

import struct

from . import encode as E
from .encode import EncodeError, Insn, Target


class BackendMissing(E.RecordpatchError):
    pass


def _import():
    try:
        import capstone
        import keystone
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise BackendMissing(f"the MIPS assembler backend needs keystone-engine and capstone "
                             f"(pip install 'recordpatch[patch]'): {e}") from None
    return keystone, capstone


class Assembler:
    """Encode intents for one target; every word is checked before it is returned."""

    def __init__(self, target: Target):
        ks_mod, cs_mod = _import()
        self.t = target
        self._ks_mod = ks_mod
        mode = ks_mod.KS_MODE_MIPS64 if target.bits == 64 else ks_mod.KS_MODE_MIPS32
        mode |= ks_mod.KS_MODE_BIG_ENDIAN if target.big else ks_mod.KS_MODE_LITTLE_ENDIAN
        self._ks = ks_mod.Ks(ks_mod.KS_ARCH_MIPS, mode)
        cmode = cs_mod.CS_MODE_MIPS64 if target.bits == 64 else cs_mod.CS_MODE_MIPS32
        if target.r6:
            cmode |= cs_mod.CS_MODE_MIPS32R6
        cmode |= cs_mod.CS_MODE_BIG_ENDIAN if target.big else cs_mod.CS_MODE_LITTLE_ENDIAN
        self._cs = cs_mod.Cs(cs_mod.CS_ARCH_MIPS, cmode)
        self._cs.detail = True
        self._cs_mod = cs_mod
        m = cs_mod.mips
        self._ids = {getattr(m, "MIPS_INS_" + n): n.lower() for n in
                     ("NOP", "LUI", "ADDIU", "DADDIU", "ORI", "MOVE", "OR", "ADDU", "DADDU", "JALR",
                      "JR", "JAL", "J", "B", "BEQ")}
        self._reg0 = m.MIPS_REG_ZERO
        self._pack = struct.Struct(target.endian + "I")

    # ------------------------------------------------------------ encoding
    def keystone_word(self, insn: Insn) -> int:
        """One word from keystone, with the length check (no verification)."""
        src = ".set noreorder\n" + insn.text(self.t.abi)
        try:
            enc, _ = self._ks.asm(src)
        except self._ks_mod.KsError as e:
            raise EncodeError(f"keystone cannot assemble `{insn.text()}`: {e}") from None
        if not enc or len(enc) != 4:
            n = len(enc or ())
            raise EncodeError(f"`{insn.text()}` assembles to {n} bytes, not one instruction word")
        return self._pack.unpack(bytes(enc))[0]

    def encode(self, insn: Insn, pc: int = 0) -> int:
        """The checked word for ``insn`` placed at address ``pc``."""
        E.check_operands(insn, self.t)
        if E.hand_encoded(insn, self.t):
            w = E.hand_encode(insn, pc, self.t)
        else:
            w = self.keystone_word(insn)
        self.verify(w, insn, pc)
        return w

    def encode_all(self, insns, pc: int = 0) -> list[int]:
        return [self.encode(i, pc + 4 * k) for k, i in enumerate(insns)]

    def to_bytes(self, words) -> bytes:
        return b"".join(self._pack.pack(w) for w in words)

    # ------------------------------------------------------------ checking
    def canon(self, w: int, pc: int = 0):
        """capstone's reading of ``w`` as a comparable tuple, or None if it is not an instruction."""
        insns = list(self._cs.disasm(self._pack.pack(w), pc))
        if len(insns) != 1:
            return None
        ci = insns[0]
        name = self._ids.get(ci.id)
        ops = []
        for o in ci.operands:
            if o.type == self._cs_mod.mips.MIPS_OP_REG:
                ops.append(o.reg - self._reg0)
            elif o.type == self._cs_mod.mips.MIPS_OP_IMM:
                ops.append(o.imm)
            else:
                ops.append(None)
        fn = w & 63
        if name == "nop":
            return ("nop",)
        if name == "lui":
            return ("lui", ops[0], ops[1] & 0xFFFF)
        if name in ("addiu", "daddiu", "ori"):
            return (name, ops[0], ops[1], ops[2])
        if name in ("move", "or", "addu", "daddu"):
            if name != "move":
                if 0 not in ops[1:]:
                    return ("?", ci.mnemonic, ci.op_str)
                ops = [ops[0], ops[1] or ops[2]]
            # capstone's `move` covers or/addu/daddu; on n64 addu sign-extends 32 bits
            return ("addu-move" if fn == 33 and self.t.bits == 64 else "move", ops[0], ops[1])
        if name == "jalr":
            return ("jalr", 31, ops[0]) if len(ops) == 1 else ("jalr", ops[0], ops[1])
        if name == "jr":
            # capstone prints JALR zero,rs and JR (funct 8) both as `jr`
            return ("jalr", 0, ops[0]) if fn == 9 else ("jr", ops[0])
        if name in ("jal", "j", "b"):
            return (name, ops[0] & ((1 << self.t.bits) - 1))
        if name == "beq" and ops[0] == 0 and ops[1] == 0:
            return ("b", ops[2] & ((1 << self.t.bits) - 1))
        return ("?", ci.mnemonic, ci.op_str)

    def expected(self, insn: Insn, pc: int) -> set:
        """The capstone readings that mean ``insn``."""
        op, a = insn.op, insn.args
        if op == "nop":
            return {("nop",)}
        if op == "lui":
            return {("lui", a[0], a[1])}
        if op in ("addiu", "daddiu"):
            return {(op, *a)}
        if op == "li":
            out = set()
            if -0x8000 <= a[1] <= 0x7FFF:
                out.add(("addiu", a[0], 0, a[1]))
            if 0 <= a[1] <= 0xFFFF:
                out.add(("ori", a[0], 0, a[1]))
            return out
        if op == "move":
            return {("move", a[0], a[1])}
        if op == "jalr":
            return {("jalr", a[0], a[1])}
        if op == "jr":
            return {("jalr", 0, a[0])} if self.t.r6 else {("jr", a[0])}
        if op in ("jal", "j", "b"):
            return {(op, a[0] & ((1 << self.t.bits) - 1))}
        raise EncodeError(f"unknown instruction {op}")

    def verify(self, w: int, insn: Insn, pc: int = 0) -> None:
        """Raise EncodeError unless capstone and our field decoder both read ``insn`` in ``w``."""
        got = self.canon(w, pc)
        want = self.expected(insn, pc)
        if got not in want:
            raise EncodeError(f"encoding check failed for `{insn.text()}` at {pc:#x} on {self.t.name}: "
                              f"{w:#010x} decodes as {self.disasm(w, pc)!r}")
        mine = E.decode(w, pc, self.t)
        if mine is None or not _same(mine, insn, self.t):
            raise EncodeError(f"encoding check failed for `{insn.text()}` at {pc:#x} on {self.t.name}: "
                              f"{w:#010x} is {mine.text() if mine else 'not an instruction we know'} "
                              f"by its fields")

    def disasm(self, w: int, pc: int = 0) -> str:
        insns = list(self._cs.disasm(self._pack.pack(w), pc))
        if len(insns) != 1:
            return f".word {w:#010x}"
        return f"{insns[0].mnemonic} {insns[0].op_str}".strip()


def _norm(i: Insn, t: Target) -> Insn:
    if i.op == "jalr" and i.args[0] == 0 and t.r6:
        return E.jr(i.args[1])
    if i.op == "addiu" and i.args[1] == 0:
        return E.li(i.args[0], i.args[2])
    return i


def _same(mine: Insn, want: Insn, t: Target) -> bool:
    """Our field decoder's reading equals the intent (R6 `jalr zero,rs` is `jr rs`)."""
    mine, want = _norm(mine, t), _norm(want, t)
    if mine == want:
        return True
    return False


_CACHE: dict = {}


def assembler(target: Target) -> Assembler:
    a = _CACHE.get(target)
    if a is None:
        a = _CACHE[target] = Assembler(target)
    return a
