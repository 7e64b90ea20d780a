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
