"""The MIPS `-pg` call-shape rules on hand-built instruction words."""

import struct

import pytest

from recordpatch.arch import mips
from recordpatch.errors import UnsupportedError

MOVE_AT_RA = 0x03E00825      # or at,ra,zero
MOVE_AT_RA_DADDU = 0x03E0082D
JAL0 = 0x0C000000
ADDIU_SP_M8 = 0x27BDFFF8
LUI_V1 = 0x3C030000
ADDIU_V1 = 0x24630000
DADDIU_V1 = 0x64630000
JALR_V1 = 0x0060F809
ADDIU_T4_SP = 0x27AC0014
LUI_V0 = 0x3C020000
ADDIU_V0 = 0x24420000


def text(*ws, endian=">"):
    return struct.pack(endian + "%dI" % len(ws), *ws)


def verdict(ws, off, rtype, lo16=(), endian=">"):
    return mips.classify(mips.words(text(*ws, endian=endian), endian), off, rtype, set(lo16))


@pytest.mark.parametrize("endian", [">", "<"])
def test_kernel_jal_site(endian):
    v = verdict([0x27BDFFE8, MOVE_AT_RA, JAL0, ADDIU_SP_M8], 8, mips.R_MIPS_26, endian=endian)
    assert v.site and v.kind == mips.KIND_JAL and v.reason == ""


def test_kernel_jal_with_ra_address():
    v = verdict([MOVE_AT_RA, ADDIU_T4_SP, JAL0, ADDIU_SP_M8], 8, mips.R_MIPS_26)
    assert v.site and v.reason == ""


def test_jal_without_move_is_recorded_with_a_warning():
    v = verdict([0, 0, 0, JAL0, 0], 12, mips.R_MIPS_26)
    assert v.site and "move at,ra" in v.reason


def test_r26_on_a_j_is_not_a_call():
    v = verdict([MOVE_AT_RA, 0x08000000, 0], 4, mips.R_MIPS_26)
    assert not v.site and "not a jal" in v.reason


@pytest.mark.parametrize("lo", [ADDIU_V1, DADDIU_V1])
def test_module_long_call(lo):
    v = verdict([LUI_V1, lo, MOVE_AT_RA, JALR_V1, ADDIU_SP_M8], 0, mips.R_MIPS_HI16, lo16={4})
    assert v.site and v.kind == mips.KIND_LONG and v.pair == 4 and v.reason == ""


def test_module_long_call_with_ra_address_between():
    v = verdict([LUI_V1, ADDIU_V1, MOVE_AT_RA, ADDIU_T4_SP, JALR_V1, 0], 0, mips.R_MIPS_HI16, lo16={4})
    assert v.site and v.reason == ""


def test_address_load_is_not_a_site():
    # What ftrace's own (non -pg) code does: take _mcount's address.
    v = verdict([LUI_V1, ADDIU_V1, 0x03E00008, 0], 0, mips.R_MIPS_HI16, lo16={4})
    assert not v.site and "address load" in v.reason
    v = verdict([LUI_V0, ADDIU_V0, 0, 0], 0, mips.R_MIPS_HI16, lo16={4})
    assert not v.site
    # lui v1 whose %lo is not against _mcount (no LO16 at +4)
    v = verdict([LUI_V1, ADDIU_V1, MOVE_AT_RA, JALR_V1], 0, mips.R_MIPS_HI16, lo16=())
    assert not v.site


def test_lone_lo16_and_data_references():
    assert not verdict([ADDIU_V1], 0, mips.R_MIPS_LO16, lo16={0}).site
    assert not verdict([0], 0, mips.R_MIPS_32).site
    assert "outside" not in verdict([0], 0, mips.R_MIPS_32).reason


def test_offset_outside_or_misaligned():
    assert not verdict([JAL0], 4, mips.R_MIPS_26).site
    assert not verdict([JAL0, JAL0], 2, mips.R_MIPS_26).site


def test_move_encodings():
    for w in (MOVE_AT_RA, MOVE_AT_RA_DADDU, 0x03E00821, 0x001F0825):
        assert mips.is_move_at_ra(w), hex(w)
    for w in (0x03E01025, 0x03E00826, 0x03E1082D):
        assert not mips.is_move_at_ra(w), hex(w)


def test_abi_detection():
    assert mips.abi_of(32, 0x70001005).name == "o32"      # mips32r2, o32, noreorder
    assert mips.abi_of(32, 0x90001005).r6
    assert mips.abi_of(64, 0x80000007).name == "n64"
    with pytest.raises(UnsupportedError, match="n32"):
        mips.abi_of(32, 0x80000027)
    with pytest.raises(UnsupportedError, match="eabi32"):
        mips.abi_of(32, 0x00003000)
    with pytest.raises(UnsupportedError, match="o64"):
        mips.abi_of(64, 0x00002000)


# ------------------------------------------------- survivors of `make mutate` (docs/testing.md)
# Encodings derived by hand from the MIPS32/MIPS64 ISA manuals (op rs rt rd shamt funct /
# op rs rt imm) and checked once against GNU as 2.40; st_other values from binutils
# include/elf/mips.h.

def test_reloc_names_in_messages():
    assert mips.reloc_name(2) == "R_MIPS_32" and mips.reloc_name(250) == "R_MIPS_<250>"
    assert verdict([0], 0, 2).reason == "R_MIPS_32 reference to _mcount"


@pytest.mark.parametrize("word,reg,value", [
    (0x24080001, 8, 1),          # addiu t0,zero,1   (li t0,1)
    (0x2408FFFF, 8, -1),         # addiu t0,zero,-1  (sign-extended)
    (0x24088000, 8, -32768),
    (0x24087FFF, 8, 32767),
    (0x34088000, 8, 0x8000),     # ori t0,zero,0x8000 (zero-extended)
    (0x340C0001, 12, 1),         # ori t4,zero,1: n64's t0 is $12
    (0x25280001, 8, None),       # addiu t0,t1,1: rs is not zero
    (0x24090001, 8, None),       # addiu t1,zero,1: another register
    (0x3C080001, 8, None),       # lui t0,1: neither addiu nor ori
])
def test_li_value(word, reg, value):
    assert mips.li_value(word, reg) == value


@pytest.mark.parametrize("word,ok", [
    (0x00200809, True),          # jalr at,at
    (0x0020F809, False),         # jalr ra,at
    (0x00600809, False),         # jalr at,v1
    (0x00210809, False),         # rt != 0
    (0x00200808, False),         # funct JR
    (0x04200809, False),         # not SPECIAL (REGIMM)
    (0x00000000, False),         # nop: SPECIAL, rt = 0, nothing else matches
])
def test_jalr_at_at(word, ok):
    assert mips.is_jalr_at_at(word) is ok


@pytest.mark.parametrize("other,micro", [
    (0x80, True), (0x83, True),  # STO_MICROMIPS (plus visibility bits)
    (0xF0, False),               # STO_MIPS16
    (0x00, False), (0x03, False), (0x40, False), (0xC0, False),
])
def test_micromips_symbol(other, micro):
    assert mips.is_micromips_sym(other) is micro


@pytest.mark.parametrize("endian", [">", "<"])
def test_nop_run_mips(endian):
    w = lambda *ws: text(*ws, endian=endian)  # noqa: E731
    other = 0x27BDFFE8
    assert mips.nop_run(w(0, 0, 0, other), 0, endian, False) == [0, 4, 8, 12]
    assert mips.nop_run(w(other, 0, 0, other), 4, endian, False) == [0, 4, 8]
    assert mips.nop_run(w(0, 0, 0), 0, endian, False) == [0, 4, 8, 12]     # up to the end
    assert mips.nop_run(w(0, 0, 0, 0, 0), 0, endian, False, limit=3) == [0, 4, 8, 12]
    assert mips.nop_run(w(0, 0), 2, endian, False) == [0]                   # misaligned
    assert mips.nop_run(w(0, 0), -4, endian, False) == [0]
    assert mips.nop_run(w(other), 0, endian, False) == [0]


@pytest.mark.parametrize("endian", [">", "<"])
def test_nop_run_micromips(endian):
    h = lambda *hs: struct.pack(endian + "%dH" % len(hs), *hs)  # noqa: E731
    nop16, other = mips.MM_NOP16, 0x1234
    # nop16, nop16, a 32-bit nop (two zero halfwords), then another instruction
    assert mips.nop_run(h(nop16, nop16, 0, 0, other), 0, endian, True) == [0, 2, 4, 8]
    assert mips.nop_run(h(other, nop16, 0, 0), 2, endian, True) == [0, 2, 6]   # to the end
    assert mips.nop_run(h(nop16, 0, other), 0, endian, True) == [0, 2]         # half a nop32
    assert mips.nop_run(h(nop16, nop16, nop16), 0, endian, True, limit=2) == [0, 2, 4]
    assert mips.nop_run(h(nop16, nop16), 1, endian, True) == [0]              # odd
    assert mips.nop_run(h(nop16, nop16), -2, endian, True) == [0]
    assert mips.nop_run(h(nop16, nop16), 0, endian, True) == [0, 2, 4]        # ends on a nop16
    assert mips.nop_run(h(nop16, 0), 0, endian, True) == [0, 2]               # half a nop32 at the end


@pytest.mark.parametrize("word,r6,ok", [
    (0x03E00008, False, True),   # jr ra (SPECIAL/JR)
    (0x03E00009, False, True),   # jalr zero,ra: R6's jr, valid before R6 too
    (0x03E00009, True, True),
    (0x03E00008, True, False),   # SPECIAL/JR was removed in R6
    (0x03E00408, False, False),  # jr.hb: hint bits before R6
    (0x03E00048, False, False),  # hint field (bits 6..10) = 1
    (0x03E0F809, False, False),  # jalr ra,ra links
    (0x00600008, False, False),  # jr v1, asked for ra
])
def test_jr(word, r6, ok):
    assert mips.is_jr(word, REG_RA, r6) is ok


REG_RA = 31


# What GNU as stores as the REL addend of each relocation type recordpatch rewrites
# (`record --repair`, `patch`): the source's addend, PC-relative ones less 4 (they count from
# the delay slot), %hi carrying the %lo's sign.
AS_CASES = {
    "mips": ("-march=mips32r2", [
        (".word ext+0x12345678", "R_MIPS_32", 0x12345678),
        ("jal ext+0x1234\n nop", "R_MIPS_26", 0x1234),
        ("b ext+0x100\n nop", "R_MIPS_PC16", 0x100 - 4),
        ("b ext-0x100\n nop", "R_MIPS_PC16", -0x100 - 4),
        ("lui $2, %hi(ext+0x12348000)\n addiu $2, $2, %lo(ext+0x12348000)", "R_MIPS_HI16",
         0x1235),
        ("lui $2, %hi(ext+0x12348000)\n addiu $2, $2, %lo(ext+0x12348000)", "R_MIPS_LO16",
         0x8000),
        (".set micromips\n jal ext+0x100\n nop\n .set nomicromips", "R_MICROMIPS_26_S1", 0x100),
    ]),
    "mipsr6": ("", [
        ("balc ext+0x100", "R_MIPS_PC26_S2", 0x100 - 4),
        ("balc ext-0x1000", "R_MIPS_PC26_S2", -0x1000 - 4),
        ("beqzc $2, ext+0x200", "R_MIPS_PC21_S2", 0x200 - 4),
        ("beqzc $2, ext-0x200", "R_MIPS_PC21_S2", -0x200 - 4),
    ]),
}
TYPES = {"R_MIPS_32": 2, "R_MIPS_26": 4, "R_MIPS_HI16": 5, "R_MIPS_LO16": 6, "R_MIPS_PC16": 10,
         "R_MIPS_PC21_S2": 60, "R_MIPS_PC26_S2": 61, "R_MICROMIPS_26_S1": 133}


@pytest.mark.parametrize("target", sorted(AS_CASES))
def test_rel_addends_as_gas_writes_them(target, tmp_path):
    from elftools.elf.elffile import ELFFile
    from conftest import gas
    flags, cases = AS_CASES[target]
    for k, (src, rname, addend) in enumerate(cases):
        o = gas(tmp_path / f"{k}.o", f"\t.set noreorder\n\t.text\n\t{src}\n", target, flags)
        with open(o, "rb") as f:
            e = ELFFile(f)
            (r,) = [r for r in e.get_section_by_name(".rel.text").iter_relocations()
                    if r["r_info_type"] == TYPES[rname]]
            w = struct.unpack_from(">I", e.get_section_by_name(".text").data(), r["r_offset"])[0]
        assert r["r_info_type"] == TYPES[rname], src
        t = TYPES[rname]
        assert mips.rel_addend(t, w) in (addend, addend & 0xFFFFFFFF), (src, hex(w))
        blank = mips.rel_with_addend(t, w, 0)
        assert mips.rel_with_addend(t, blank, addend) == w, (src, hex(w))
        assert blank != w
    assert mips.rel_addend(18, 0) is None
    with pytest.raises(ValueError, match="^18$"):       # the type is named
        mips.rel_with_addend(18, 0, 0)


def test_not_a_site_has_no_kind():
    """A rejected relocation is site False with kind "" (what `-w` and `--json` report)."""
    for v in (verdict([JAL0], 4, mips.R_MIPS_26), verdict([MOVE_AT_RA, 0x08000000, 0], 4,
                                                          mips.R_MIPS_26)):
        assert v.site is False and v.kind == ""
    assert verdict([JAL0], 4, mips.R_MIPS_26).reason == \
        "relocation offset is not an aligned instruction in its section"


@pytest.mark.parametrize("word,ok", [
    (MOVE_AT_RA, True),
    (MOVE_AT_RA | 1 << 6, False),        # shamt != 0: no longer a move
    (0x24210010, False),                 # addiu at,at,16
])
def test_move_at_ra_fields(word, ok):
    assert mips.is_move_at_ra(word) is ok


def test_small_predicates():
    assert mips.is_addiu_self(0x24210010, 1) and mips.is_addiu_self(0x64210010, 1)  # (d)addiu at,at
    assert not mips.is_addiu_self(0x24010010, 1)      # addiu at,zero
    assert not mips.is_addiu_self(0x34210010, 1)      # ori at,at
    assert mips.is_lui(0x3C018011, 1) and not mips.is_lui(0x3C038011, 1)
    assert not mips.is_lui(0x24010001, 1)         # addiu at,zero,1
    assert not mips.is_lui(0x3C218011, 1)         # rs != 0
    for n, ok in ((0, False), (1, True), (4, True), (8, True), (9, False)):
        assert mips.is_b_1f(0x10000000 | n) is ok     # beq zero,zero,n
    assert not mips.is_b_1f(0x10010004) and not mips.is_b_1f(0x24000004)
    # jal at pc: target in the 256 MB region of the delay slot (pc + 4)
    assert mips.jal_target(0x0C000010, 0x8FFFFFF8) == 0x80000040
    assert mips.jal_target(0x0C000010, 0x8FFFFFFC) == 0x90000040
    assert mips.jal_target(0x0C000010, 0xFFFFFFFC) == 0x00000040            # wraps at 32 bits
    assert mips.jal_target(0x0C000010, 0xFFFFFFFF8FFFFFFC, 64) == 0xFFFFFFFF90000040


LUI_AT, JALR_AT_AT, LI_T0_0, LI_T0_1 = 0x3C018011, 0x00200809, 0x24080000, 0x24080001


@pytest.mark.parametrize("w0,w1,w2,r6,state", [
    (LUI_AT, 0, LI_T0_0, False, "init"),
    (LUI_AT, JALR_AT_AT, LI_T0_0, False, "call-regs"),
    (LUI_AT, JALR_AT_AT, LI_T0_1, False, "call"),
    (LUI_AT, 0x24210010, 0x00200008, False, "redirect"),   # addiu at,at,16; jr at
    (LUI_AT, 0x24210010, 0x00200009, True, "redirect"),    # R6 jr at = jalr zero,at
    (LUI_AT, 0x24210010, 0x00200008, True, ""),            # SPECIAL/JR does not exist on R6
    (LUI_AT, 0x24210010, 0x00600008, False, ""),           # jr v1
    (LUI_AT, 0x24010010, 0x00200008, False, ""),           # addiu at,zero
    (LUI_AT, 0, LI_T0_1, False, ""),                       # nop with flag 1: no such state
    (LUI_AT, 0, 0x24080002, False, ""),                    # flag 2
    (LUI_AT, 0x27BDFFE8, LI_T0_0, False, ""),              # other second word
    (LUI_AT, None, LI_T0_0, False, ""),
    (LUI_AT, 0, None, False, ""),
    (0x3C038011, 0, LI_T0_0, False, ""),                   # lui v1
])
def test_pad_state(w0, w1, w2, r6, state):
    assert mips.pad_state(w0, w1, w2, 8, r6) == state


def test_sext_sign_bit_is_the_top_bit():
    """Two's complement: only bit ``bits - 1`` makes the value negative."""
    assert mips.sext(0x4000, 16) == 0x4000 and mips.sext(0x7FFF, 16) == 0x7FFF
    assert mips.sext(0x8000, 16) == -0x8000 and mips.sext(0xFFFF, 16) == -1
    assert mips.sext(0x80000, 21) == 0x80000 and mips.sext(0x100000, 21) == -0x100000
    assert mips.sext(0x1_2345, 16) == 0x2345                    # bits above are dropped


def test_readers_refuse_misaligned_offsets():
    """Instructions are 4-byte (MIPS32) or 2-byte (microMIPS) aligned: an offset that is
    not is no instruction, and neither is one past the end."""
    data = bytes(range(8))
    word, half = mips.words(data, ">"), mips.halfwords(data, "<")
    assert [word(o) for o in range(-4, 9)] == [None] * 4 + [0x00010203] + [None] * 3 + [
        0x04050607] + [None] * 4
    assert [half(o) for o in range(-2, 9)] == [None, None, 0x0100, None, 0x0302, None, 0x0504,
                                              None, 0x0706, None, None]


def test_nop_run_stops_at_64_by_default():
    """The longest pad `-fpatchable-function-entry` is read as: 64 nops."""
    assert mips.nop_run(bytes(4 * 70), 0, ">", False) == list(range(0, 4 * 65, 4))
    assert mips.nop_run(bytes(4 * 70), 0, ">", True) == list(range(0, 4 * 65, 4))   # nop32s


# ABIs as GNU as writes them (readelf -h shows the class and flags named in each comment);
# the e_flags offset in the ELF header is 36 (ELF32) or 48 (ELF64) (gABI, "ELF Header").
ABI_OBJECTS = [
    ("mips", "-march=mips32r2", ("o32", 4, mips.R_MIPS_32, False)),        # ELF32 o32 mips32r2
    ("mipsr6", "-march=mips32r6", ("o32", 4, mips.R_MIPS_32, True)),       # ELF32 o32 mips32r6
    ("mips64", "-mabi=64 -march=mips64r2", ("n64", 8, mips.R_MIPS_64, False)),  # ELF64 mips64r2
    ("mips64", "-mabi=64 -march=mips64r6", ("n64", 8, mips.R_MIPS_64, True)),   # ELF64 mips64r6
    ("mips64", "-mabi=n32", "unsupported MIPS ABI n32 (only o32 and n64 are handled)"),  # abi2
    ("mips64", "-mabi=o64", "unsupported MIPS ABI o64 (only o32 and n64 are handled)"),  # o64
    ("mips64", "-mabi=eabi -mgp64", "unsupported MIPS ABI eabi64 (only o32 and n64 are handled)"),
    ("mips64", "-mabi=eabi -mgp32", "unsupported MIPS ABI eabi32 (only o32 and n64 are handled)"),
]


def gas_object(tmp_path, target, flags):
    from conftest import gas
    return gas(tmp_path / "a.o", "\t.text\nf:\tnop\n", target, flags)


def header_abi(data: bytes):
    bits = 64 if data[4] == 2 else 32                   # EI_CLASS
    flags = struct.unpack_from((">" if data[5] == 2 else "<") + "I", data,
                               48 if bits == 64 else 36)[0]
    return bits, flags


@pytest.mark.parametrize("target,flags,want", ABI_OBJECTS, ids=[f"{a[0]}{a[1]}" for a in ABI_OBJECTS])
def test_abi_of_gas_objects(target, flags, want, tmp_path):
    bits, e_flags = header_abi(gas_object(tmp_path, target, flags).read_bytes())
    if isinstance(want, str):
        with pytest.raises(UnsupportedError) as e:
            mips.abi_of(bits, e_flags)
        assert str(e.value) == want
    else:
        assert mips.abi_of(bits, e_flags) == want


def test_abi_fields_gas_never_writes(tmp_path):
    """o32 with the ABI field 0 (older tools) is o32; a field in an ELF64 file, or one no
    ABI has, is refused by name or number. The flags are gas's, with the field rewritten."""
    _, o32 = header_abi(gas_object(tmp_path, "mips", "-march=mips32r2").read_bytes())
    _, n64 = header_abi(gas_object(tmp_path, "mips64", "-mabi=64").read_bytes())
    assert o32 & mips.EF_MIPS_ABI == mips.E_MIPS_ABI_O32 and n64 & mips.EF_MIPS_ABI == 0
    assert mips.abi_of(32, o32 & ~mips.EF_MIPS_ABI).name == "o32"
    tail = " (only o32 and n64 are handled)"
    for bits, base, field, want in (
            (32, o32, 0x5000, "unsupported MIPS ABI 0x5000" + tail),
            (64, n64, mips.E_MIPS_ABI_O64, "unsupported MIPS ABI o64 in an ELF64 file" + tail),
            (64, n64, 0x5000, "unsupported MIPS ABI 0x5000 in an ELF64 file" + tail)):
        with pytest.raises(UnsupportedError) as e:
            mips.abi_of(bits, base & ~mips.EF_MIPS_ABI | field)
        assert str(e.value) == want


def test_record_refuses_n32_in_one_line(tmp_path):
    from conftest import run_ours
    o = gas_object(tmp_path, "mips64", "-mabi=n32")
    before = o.read_bytes()
    r = run_ours("record", o)
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr == (f"{o}: error: recordpatch: unsupported MIPS ABI n32 "
                        "(only o32 and n64 are handled)\n")
    assert o.read_bytes() == before
