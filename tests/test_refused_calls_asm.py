"""Calls to _mcount the kernel cannot patch (`mips.refused_call`), on sequences GNU as
assembles: the oracle is the assembler (which words, which relocations, where the label
`call` lands) and the hand-derived semantics of each sequence, not recordpatch's decoder.

Each case is a sequence after `.set noreorder`; `call:` marks the instruction that calls
_mcount, or is absent when nothing calls it (the address is overwritten, a jump or branch
ends the search, the call goes through another register or does not link ra).
"""

import struct
import subprocess

import pytest

from conftest import cross, need_module
from recordpatch.arch import mips

FILL = "lw $5, 0($sp)\n"          # writes a register that carries nothing; not a jump

O32 = [  # (id, source, words of the sequence incl. the delay slot when called)
    ("lui-addiu-jalr", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n"
                       "call: jalr $2\n nop", 4),
    ("via-addu", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n addu $4, $2, $0\n"
                 "call: jalr $4\n nop", 5),
    ("via-addu-rt", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n addu $4, $0, $2\n"
                    "call: jalr $4\n nop", 5),
    ("via-or-rt", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n or $4, $0, $2\n"
                  "call: jalr $4\n nop", 5),
    ("via-sll", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n sll $4, $2, 0\n"
                "call: jalr $4\n nop", 5),
    ("via-addiu-other", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n addiu $4, $2, 0\n"
                        "call: jalr $4\n nop", 5),
    ("ori-lo", "lui $2, %hi(_mcount)\n ori $2, $2, %lo(_mcount)\n call: jalr $2\n nop", 4),
    ("fillers-in-window", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n" + FILL * 7
                          + "call: jalr $2\n nop", 11),
    ("beyond-window", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n" + FILL * 8
                      + "jalr $2\n nop", 0),
    ("overwritten-lui", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n lui $2, 0x1234\n"
                        "jalr $2\n nop", 0),
    ("overwritten-addu", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n addu $2, $5, $6\n"
                         "jalr $2\n nop", 0),
    ("overwritten-sll", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n sll $2, $5, 2\n"
                        "jalr $2\n nop", 0),
    ("copy-then-overwrite", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n"
                            "addu $4, $2, $0\n addiu $4, $5, 8\n jalr $4\n nop", 0),
    ("other-register", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n jalr $3\n nop", 0),
    ("not-linking-ra", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n jalr $5, $2\n nop",
     0),
    ("jr-ends", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n jr $5\n nop\n"
                "jalr $2\n nop", 0),
    ("branch-ends", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n beq $5, $6, 1f\n nop\n"
                    "1: jalr $2\n nop", 0),
    ("regimm-ends", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n bgez $5, 1f\n nop\n"
                    "1: jalr $2\n nop", 0),
    ("j-ends", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n j 1f\n nop\n"
               "1: jalr $2\n nop", 0),
    ("lui-of-another-symbol", "lui $2, %hi(other)\n addiu $2, $2, %lo(_mcount)\n"
                              "jalr $2\n nop", "addiu"),
    ("address-only", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n sw $2, 0($sp)\n"
                     "jr $ra\n nop", 0),
]
N64 = [  # GCC's -mlong-calls without -msym32 (two halves joined by dsll32/daddu) and the
         # serial form (dsll 16 twice), both from R_MIPS_HIGHEST
    ("highest-dsll32", "lui $3, %highest(_mcount)\n lui $1, %hi(_mcount)\n"
                       "daddiu $3, $3, %higher(_mcount)\n daddiu $1, $1, %lo(_mcount)\n"
                       "dsll32 $3, $3, 0\n daddu $3, $3, $1\n call: jalr $3\n nop", 8),
    ("highest-serial", "lui $3, %highest(_mcount)\n daddiu $3, $3, %higher(_mcount)\n"
                       "dsll $3, $3, 16\n daddiu $3, $3, %hi(_mcount)\n dsll $3, $3, 16\n"
                       "daddiu $3, $3, %lo(_mcount)\n call: jalr $3\n nop", 8),
    ("highest-lost-in-daddu", "lui $3, %highest(_mcount)\n lui $1, 0x1234\n"
                              "daddiu $3, $3, %higher(_mcount)\n dsll32 $3, $3, 0\n"
                              "daddu $4, $5, $1\n jalr $4\n nop", 0),
]
R6 = [  # jalrc and jialc have no delay slot (MIPS32 R6 manual); clang's R6 long call is
        # lui + jialc
    ("jalrc", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n call: jalrc $2", 3),
    ("jialc", "lui $1, %hi(_mcount)\n call: jialc $1, %lo(_mcount)", 2),
    ("jalrc-other", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n jalrc $3", 0),
]
TARGET = {"o32": ("mips", "-march=mips32r2", O32), "n64": ("mips64", "-march=mips64r2 -mabi=64",
                                                            N64),
          "r6": ("mipsr6", "", R6)}
CASES = [(abi, *c) for abi, (_, _, cs) in TARGET.items() for c in cs]


def assemble(tmp_path, target, flags, src):
    """The .text bytes, the _mcount relocations [(offset, type)] and the label `call`."""
    elftools = need_module("elftools.elf.elffile")
    s, o = tmp_path / "c.s", tmp_path / "c.o"
    s.write_text(f"\t.set noreorder\n\t.text\n\t.globl f\n\t.type f,@function\nf:\n\t{src}\n")
    subprocess.run([cross(target, "as"), *flags.split(), str(s), "-o", str(o)], check=True)
    with open(o, "rb") as fh:
        e = elftools.ELFFile(fh)
        text = e.get_section_by_name(".text").data()
        symtab = e.get_section_by_name(".symtab")
        relsec = e.get_section_by_name(".rela.text") or e.get_section_by_name(".rel.text")
        relocs = []
        for r in relsec.iter_relocations():
            if symtab.get_symbol(r["r_info_sym"]).name == "_mcount":
                relocs.append((r["r_offset"], r["r_info_type"]))
        call = [s["st_value"] for s in symtab.iter_symbols() if s.name == "call"]
    return text, relocs, (call[0] if call else None)


@pytest.mark.parametrize("abi,name,src,n", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_refused_call_found_where_gas_put_it(abi, name, src, n, tmp_path):
    target, flags, _ = TARGET[abi]
    text, relocs, call = assemble(tmp_path, target, flags, src)
    word, half = mips.words(text, ">"), mips.halfwords(text, ">")
    refs = {o for o, _ in relocs}
    # the sequence starts at its first relocation against _mcount (lui %hi or %highest)
    first, rtype = min(relocs)
    v = mips.refused_call(word, half, first, rtype, refs)
    if n == "addiu":   # the lui is not _mcount's: nothing starts there; from the addiu,
        assert first == 4 and v is None   # a %lo relocation starts no search either
        return
    if call is None:
        assert v is None, v
        return
    assert v is not None and v.kind == mips.KIND_REFUSED and v.site is False
    assert v.pair == call
    assert f": {n} words" in v.reason
    assert ("no delay slot" in v.reason) == (abi == "r6")
    assert ("64-bit long call" in v.reason) == (abi == "n64")


MM = [  # microMIPS: lui then the jalr[s] through the same register, 16- or 32-bit encodings
    ("jalr16", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n call: jalr $2\n nop"),
    ("move16-between", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n move $4, $5\n"
                       "call: jalr $2\n nop"),
    ("jalrs32", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n call: jalrs32 $2\n nop"),
    ("jalr32", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n call: jalr32 $2\n nop"),
    ("other-register", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n jalr $3\n nop"),
]


@pytest.mark.parametrize("name,src", MM, ids=[m[0] for m in MM])
def test_micromips_long_call_refused_at_its_jalr(name, src, tmp_path):
    text, relocs, call = assemble(tmp_path, "mips", "-march=mips32r2 -mmicromips", src)
    first, rtype = min(relocs)
    assert rtype == mips.R_MICROMIPS_HI16
    v = mips.refused_call(mips.words(text, ">"), mips.halfwords(text, ">"), first, rtype,
                          {o for o, _ in relocs})
    if call is None:
        assert v is None
    else:
        assert v is not None and v.kind == mips.KIND_REFUSED and "microMIPS long call" in v.reason
        assert v.pair == call & ~1      # microMIPS labels carry the ISA bit


def test_micromips_jal_refused_and_others_not(tmp_path):
    """`jal`/`jals`/`jalx _mcount` in microMIPS code (all three R_MICROMIPS_26_S1, as gas
    writes them) are refused and named;
    `j _mcount` (a tail call, no link) is not a call the kernel patches."""
    for insn, name in (("jal", "jal"), ("jals", "jals"), ("jalx", "jalx")):
        text, relocs, _ = assemble(tmp_path, "mips", "-march=mips32r2 -mmicromips",
                                   f"{insn} _mcount\n nop")
        ((off, rtype),) = relocs
        v = mips.refused_call(mips.words(text, ">"), mips.halfwords(text, ">"), off, rtype, {off})
        assert rtype == mips.R_MICROMIPS_26_S1
        assert v is not None and f"microMIPS `{name} _mcount`" in v.reason and v.pair == off
    text, relocs, _ = assemble(tmp_path, "mips", "-march=mips32r2 -mmicromips", "j _mcount\n nop")
    ((off, rtype),) = relocs
    assert mips.refused_call(mips.words(text, ">"), mips.halfwords(text, ">"), off, rtype,
                             {off}) is None


def test_word_outside_text_ends_search():
    """A sequence cut by the section end: no call (and no exception)."""
    lui = struct.pack(">I", 0x3C020000)            # lui v0,0 (%hi(_mcount) before relocation)
    assert mips.refused_call(mips.words(lui, ">"), mips.halfwords(lui, ">"), 0, mips.R_MIPS_HI16,
                             {0}) is None
