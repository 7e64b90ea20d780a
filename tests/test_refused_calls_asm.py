"""Calls to _mcount the kernel cannot patch (`mips.refused_call`), on sequences GNU as
assembles: the oracle is the assembler (which words, which relocations, where the label
`call` lands) and the hand-derived semantics of each sequence, not recordpatch's decoder.

Each case is a sequence after `.set noreorder`; `call:` marks the instruction that calls
_mcount, or is absent when nothing calls it (the address is overwritten, a jump or branch
ends the search, the call goes through another register or does not link ra).
"""

import struct

import pytest

from conftest import gas, need_module
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
    # not at the section start: the length counts from the first word of the sequence
    ("after-two-words", "nop\n nop\n lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n"
                        "call: jalr $2\n nop", 4),
    # $zero never carries the address, whatever is written to it
    ("from-zero-only", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n addu $4, $0, $0\n"
                       "jalr $4\n nop", 0),
    # instructions that neither write the carrying register nor jump do not end the search
    ("mfhi-between", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n mfhi $5\n"
                     "call: jalr $2\n nop", 5),
    ("andi-from-zero-between", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n"
                               "andi $5, $0, 1\n call: jalr $2\n nop", 5),
    ("addi-between", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n addi $5, $5, 1\n"
                     "call: jalr $2\n nop", 5),
    ("bgtz-ends", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n bgtz $5, 1f\n nop\n"
                  "1: jalr $2\n nop", 0),
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
    """The .text bytes, the _mcount relocations [(offset, type)] and the labels {name: value}."""
    elftools = need_module("elftools.elf.elffile")
    o = gas(tmp_path / "c.o", f"\t.set noreorder\n\t.text\n\t.globl f\n\t.type f,@function\n"
            f"f:\n\t{src}\n", target, flags)
    with open(o, "rb") as fh:
        e = elftools.ELFFile(fh)
        text = e.get_section_by_name(".text").data()
        symtab = e.get_section_by_name(".symtab")
        relsec = e.get_section_by_name(".rela.text") or e.get_section_by_name(".rel.text")
        relocs = []
        for r in relsec.iter_relocations():
            if symtab.get_symbol(r["r_info_sym"]).name == "_mcount":
                relocs.append((r["r_offset"], r["r_info_type"]))
        labels = {s.name: s["st_value"] for s in symtab.iter_symbols()
                  if s.name and s["st_shndx"] != "SHN_UNDEF"}
    return text, relocs, labels


@pytest.mark.parametrize("abi,name,src,n", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_refused_call_found_where_gas_put_it(abi, name, src, n, tmp_path):
    target, flags, _ = TARGET[abi]
    text, relocs, labels = assemble(tmp_path, target, flags, src)
    call = labels.get("call")
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
    # 16-bit instructions (major opcodes ...001, ...010) before the jalr: walked as 2 bytes
    ("addu16-then-jalr", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n addu $4, $5, $6\n"
                         "call: jalr $2\n nop"),
    ("lw16-then-jalr", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n lw $4, 0($5)\n"
                       "call: jalr $2\n nop"),
    # 32-bit instructions that are not jalr: an immediate shaped like `jalr16 $2`, a store
    # of ra based on $2, a POOL32A instruction reading $2, a jalr not linking ra
    ("immediate-like-jalr16", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n"
                              "addiu $4, $4, 0x45c2\n jalr $3\n nop"),
    ("sw-ra-based-on-it", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n sw $31, 0($2)\n"
                          "jalr $3\n nop"),
    ("pool32a-reading-it", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n"
                           "addu $8, $2, $9\n jalr $3\n nop"),
    ("jalr-not-linking-ra", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n jalr $5, $2\n"
                            "nop"),
    # a POOL16A halfword whose bits 9..5 are 31, then the second halfword of POOL32A jalr:
    # two 16-bit instructions, not a jalr
    ("pool16a-then-jalr-halfword", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n"
                                   ".hword 0x07e2, 0x0f3c\n jalr $3\n nop"),
    # the address in $at (register 1)
    ("through-at", ".set noat\n lui $1, %hi(_mcount)\n addiu $1, $1, %lo(_mcount)\n jalr $3\n"
                   "nop"),
    # %hi(_mcount) on an addiu: no lui, no address load, nothing starts there
    ("hi-on-addiu", "addiu $2, $2, %hi(_mcount)\n jalr $2\n nop"),
]


MM_WHY = "(arch/mips/kernel/ftrace.c writes MIPS32 words only; build without -mmicromips)"
MM_LONG_REASON = f"microMIPS long call to _mcount {MM_WHY}"


@pytest.mark.parametrize("name,src", MM, ids=[m[0] for m in MM])
def test_micromips_long_call_refused_at_its_jalr(name, src, tmp_path):
    text, relocs, labels = assemble(tmp_path, "mips", "-march=mips32r2 -mmicromips", src)
    call = labels.get("call")
    first, rtype = min(relocs)
    assert rtype == mips.R_MICROMIPS_HI16
    v = mips.refused_call(mips.words(text, ">"), mips.halfwords(text, ">"), first, rtype,
                          {o for o, _ in relocs})
    if call is None:
        assert v is None
    else:
        assert v == (False, mips.KIND_REFUSED, MM_LONG_REASON, call & ~1)   # labels: ISA bit


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
        assert v == (False, mips.KIND_REFUSED, f"microMIPS `{name} _mcount` {MM_WHY}", off)
    text, relocs, _ = assemble(tmp_path, "mips", "-march=mips32r2 -mmicromips", "j _mcount\n nop")
    ((off, rtype),) = relocs
    assert mips.refused_call(mips.words(text, ">"), mips.halfwords(text, ">"), off, rtype,
                             {off}) is None


def test_word_outside_text_ends_search():
    """A sequence cut by the section end: no call (and no exception)."""
    lui = struct.pack(">I", 0x3C020000)            # lui v0,0 (%hi(_mcount) before relocation)
    assert mips.refused_call(mips.words(lui, ">"), mips.halfwords(lui, ">"), 0, mips.R_MIPS_HI16,
                             {0}) is None


# What users read (`record` refuses the object with it): the whole message, for each shape.
B1F = "where ftrace_make_nop's `b 1f` assumes GCC's 5 (or 6)"
REASONS = {
    ("o32", "lui-addiu-jalr"): "long call to _mcount not in GCC's lui v1/addiu v1/move at,ra/"
                               f"jalr v1 form: 4 words with its delay slot, {B1F}",
    ("n64", "highest-dsll32"): "64-bit long call to _mcount (lui %highest .. jalr: built "
                               "without -msym32; KBUILD_SYM32=y gives the 32-bit form): 8 words "
                               f"with its delay slot, {B1F}",
    ("r6", "jalrc"): "long call to _mcount not in GCC's lui v1/addiu v1/move at,ra/jalr v1 "
                     f"form: 3 words (R6 jalrc, no delay slot), {B1F}",
}


@pytest.mark.parametrize("abi,name", REASONS, ids=[f"{a}-{n}" for a, n in REASONS])
def test_refusal_reason_text(abi, name, tmp_path):
    target, flags, cases = TARGET[abi]
    src = dict((c[0], c[1]) for c in cases)[name]
    text, relocs, labels = assemble(tmp_path, target, flags, src)
    first, rtype = min(relocs)
    v = mips.refused_call(mips.words(text, ">"), mips.halfwords(text, ">"), first, rtype,
                          {o for o, _ in relocs})
    assert v == (False, mips.KIND_REFUSED, REASONS[abi, name], labels["call"])


# `classify`: every verdict on a relocation against _mcount, on o32 code gas assembled.
# (id, source, relocation type classified, site, kind, reason, label of the pair or None).
# The %lo half a long call records as its pair is labelled `lo`.
MOVE = "move $1, $31\n"
JAL_NO_MOVE = "jal _mcount without a preceding move at,ra"
NO_JALR = "address load of _mcount (lui/addiu v1 not followed by jalr v1)"
LONG = "lui $3, %hi(_mcount)\n lo: addiu $3, $3, %lo(_mcount)\n"
CLASSIFY = [
    ("jal-move-just-before", MOVE + "jal _mcount\n nop", "R_MIPS_26", True, "jal", "", None),
    # -mmcount-ra-address puts up to two words between; three is the window's edge
    ("jal-move-three-before", MOVE + FILL * 2 + "jal _mcount\n nop", "R_MIPS_26", True, "jal",
     "", None),
    ("jal-move-four-before", MOVE + FILL * 3 + "jal _mcount\n nop", "R_MIPS_26", True, "jal",
     JAL_NO_MOVE, None),
    ("jal-move-in-delay-slot", "jal _mcount\n" + MOVE, "R_MIPS_26", True, "jal", JAL_NO_MOVE,
     None),
    ("j-not-jal", "j _mcount\n nop", "R_MIPS_26", False, "",
     "R_MIPS_26 on 0x08000000, which is not a jal", None),       # j: opcode 2, target 0 (REL)
    ("lui-not-v1", "lui $2, %hi(_mcount)\n addiu $2, $2, %lo(_mcount)\n jalr $2\n nop",
     "R_MIPS_HI16", False, "", "R_MIPS_HI16 on 0x3c020000, which is not lui v1", None),
    ("lo-on-a-load", "lui $3, %hi(_mcount)\n lw $3, %lo(_mcount)($3)\n" + MOVE
     + "jalr $3\n nop", "R_MIPS_HI16", False, "",
     "address load of _mcount (lui without addiu v1,%lo(_mcount))", None),
    ("address-stored", LONG + "sw $3, 0($sp)\n jr $31\n nop", "R_MIPS_HI16", False, "",
     NO_JALR, None),
    ("long-call", LONG + MOVE + "jalr $3\n nop", "R_MIPS_HI16", True, "long-call", "", "lo"),
    ("long-call-no-move", LONG + "jalr $3\n nop", "R_MIPS_HI16", True, "long-call",
     "jalr v1 to _mcount without move at,ra", "lo"),
    # the jalr at most LONG_CALL_WINDOW (4) words after the %lo half
    ("long-call-jalr-fourth", LONG + MOVE + FILL * 2 + "jalr $3\n nop", "R_MIPS_HI16", True,
     "long-call", "", "lo"),
    ("long-call-jalr-fifth", LONG + MOVE + FILL * 3 + "jalr $3\n nop", "R_MIPS_HI16", False, "",
     NO_JALR, None),
    ("lo-half", LONG + MOVE + "jalr $3\n nop", "R_MIPS_LO16", False, "",
     "%lo half of an _mcount address", None),
    ("word-in-text", "nop\n .word _mcount", "R_MIPS_32", False, "",
     "R_MIPS_32 reference to _mcount", None),
]


@pytest.mark.parametrize("name,src,rname,site,kind,reason,pair", CLASSIFY,
                         ids=[c[0] for c in CLASSIFY])
def test_classify_on_gas_output(name, src, rname, site, kind, reason, pair, tmp_path):
    text, relocs, labels = assemble(tmp_path, "mips", "-march=mips32r2", src)
    rtype = getattr(mips, rname)
    offset = min(o for o, t in relocs if t == rtype)
    lo16 = {o for o, t in relocs if t == mips.R_MIPS_LO16}
    v = mips.classify(mips.words(text, ">"), offset, rtype, lo16)
    assert v == (site, kind, reason, labels[pair] if pair else -1)


def test_classify_unaligned_offset(tmp_path):
    text, _, _ = assemble(tmp_path, "mips", "-march=mips32r2", MOVE + "jal _mcount\n nop")
    for off in (1, 2, 3, 5, len(text)):
        assert mips.classify(mips.words(text, ">"), off, mips.R_MIPS_26, set()) == (
            False, "", "relocation offset is not an aligned instruction in its section", -1)


# What `record -w` says about every reference to _mcount in an object (o32, gas): odd sites
# (recorded, flagged), address loads in a traced section (the `lui` the reference records
# as a call, the `%lo` its filter skips) and in an untraced one, a call in an untraced
# section. Which references the reference records comes from the reference's own table.
WNOTES = """\t.set noreorder
\t.set noat
\t.text
\t.globl f
\t.type f,@function
f:
odd: jal _mcount
\tnop
\taddiu $sp, $sp, -8
long: lui $3, %hi(_mcount)
\taddiu $3, $3, %lo(_mcount)
\tjalr $3
\tnop
load: lui $2, %hi(_mcount)
\taddiu $2, $2, %lo(_mcount)
\tsw $2, 0($sp)
\tjr $31
\tnop
\t.section .entry.text,"ax",@progbits
g:\tmove $1, $31
ejal: jal _mcount
\tnop
eload: lui $2, %hi(_mcount)
\taddiu $2, $2, %lo(_mcount)
\tjr $31
\tnop
"""


def test_record_w_names_every_reference(tmp_path):
    import json
    import shutil
    from conftest import recorded_sites, run_ours, run_reference
    elftools = need_module("elftools.elf.elffile")
    obj = gas(tmp_path / "w.o", WNOTES, "mipsel", "-march=mips32r2")
    ref = tmp_path / "ref.o"
    shutil.copyfile(obj, ref)
    assert run_reference(ref).returncode == 0
    theirs = {(sec, off) for _, sec, off in recorded_sites(ref)}
    with open(obj, "rb") as f:
        e = elftools.ELFFile(f)
        at = {s.name: (e.get_section(s["st_shndx"]).name, s["st_value"])
              for s in e.get_section_by_name(".symtab").iter_symbols()
              if s.name and isinstance(s["st_shndx"], int)}
    r = run_ours("record", "-w", "-n", "--json", obj)
    f = json.loads(r.stdout)["files"][0]
    got = [(x["level"], x["kind"], x["section"], x["offset"], x["function"], x["message"])
           for x in f["findings"]]
    text, entry = (lambda n: at[n]), (lambda n, d=0: (at[n][0], at[n][1] + d))
    lui = "not recorded: R_MIPS_HI16 on 0x3c020000, which is not lui v1"   # lui v0, by hand
    lo = "not recorded: %lo half of an _mcount address"
    assert text("load") in theirs and entry("load", 4) not in theirs    # the reference's filter
    assert text("ejal") not in theirs and text("eload") not in theirs   # untraced section
    assert got == [
        ("warning", "odd-site", *text("odd"), "", "jal _mcount without a preceding move at,ra"),
        ("warning", "odd-site", *text("long"), "", "jalr v1 to _mcount without move at,ra"),
        ("note", "not-a-call", *text("load"), "",
         f"not a call (recordmcount would record it), {lui}"),
        ("note", "not-a-call-reference-skips", *entry("load", 4), "", f"not a call, {lo}"),
        ("warning", "untraced-section", *text("ejal"), "",
         "section .entry.text has mcount callers that ftrace ignores"),
        ("note", "not-a-call-untraced", *text("eload"), "", f"not a call, {lui}"),
        ("note", "not-a-call-untraced", *entry("eload", 4), "", f"not a call, {lo}"),
        ("warning", "not-calls", "", None, "", "1 reference to _mcount in traced sections is "
         "not a call and not recorded; recordmcount (Linux 6.1, 6.12) records it as a call "
         "site (ftrace would then patch that code); -w lists it")]
    assert [(x["section"], x["offset"], x["kind"]) for x in f["entries"]] == [
        (*text("odd"), "jal"), (*text("long"), "long-call")]
    assert {(x["section"], x["offset"]) for x in f["entries"]} | {text("load")} == theirs
    assert (f["sites"], f["ignored"]) == (2, 1)
