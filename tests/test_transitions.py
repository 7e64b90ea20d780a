"""`verify --transitions`: write plans derived from the encodings by the abstract interpreter."""

from __future__ import annotations

import json

import pytest

from conftest import need_module, run_ours
from recordpatch.arch import encode as E
from recordpatch.passes import transitions as T

need_module("keystone")
need_module("capstone")

TARGETS = E.ALL_TARGETS


def plans(d, family):
    fam = next(f for f in d["families"] if f["name"] == family)
    return {(p["from"], p["to"]): p for p in fam["plans"]}, {s["name"]: s for s in fam["states"]}


@pytest.fixture(scope="module", params=TARGETS, ids=[t.name for t in TARGETS])
def analysis(request):
    return request.param, T.verify_transitions(request.param)


def test_pad_states_words(analysis):
    t, d = analysis
    _, states = plans(d, "pad3")
    flag = 8 if t.abi == "o32" else 12
    assert d["flag_reg"] == flag and d["flag_reg_name"] == "t0"
    assert states["nop"]["words"] == [0] * 3
    assert states["init"]["words"] == [0x3c010081, 0, 0x24000000 | flag << 16]
    assert states["call"]["words"] == [0x3c010081, 0x00200809, 0x24000001 | flag << 16]
    assert states["call"]["behaviour"] == ["trampoline(flag=0x1, ra=entry $ra) -> body"]
    assert states["call-regs"]["behaviour"] == ["trampoline(flag=0x0, ra=entry $ra) -> body"]
    # jalr at,at (rd == rs): an interrupt in its delay slot re-runs it with at = return address
    assert states["call"]["delay_slot_hazards"] == ["body"]
    assert states["nop"]["delay_slot_hazards"] == []


def test_design_plans(analysis):
    t, d = analysis
    p, _ = plans(d, "pad3")
    # disabled -> call without regs: `li t0,1` first, then `jalr`
    assert p[("init", "call")]["safe"] and p[("init", "call")]["order"] == [8, 4]
    assert p[("init", "call-regs")]["order"] == [4]
    assert p[("call", "call-regs")]["order"] == [8] and p[("call-regs", "call")]["order"] == [8]
    assert p[("nop", "init")]["safe"]
    # straight from the compiler's nops to a call: a CPU that ran the old nop at +0 and was
    # preempted would run jalr at,at with the caller's at
    bad = p[("nop", "call")]
    assert not bad["safe"] and "jump to entry $at" in bad["reason"]
    # the jalr is the step that breaks the plan; the step list records the counterexample
    assert not bad["steps"][-1]["ok"] and "run" in bad["steps"][-1]


def test_plan_steps_are_data(analysis):
    """Each write is (offset, old word, new word) as numbers with their text; a
    counterexample run is a list of (offset, instruction, image). Words derived by hand:
    lui at,0x81 = 0x3c010081; li t0,0 = addiu t0,zero,0 = 0x24080000 (t0 is $8 on o32,
    $12 on n64); jalr at,at = 0x00200809."""
    t, d = analysis
    p, _ = plans(d, "pad3")
    flag = 8 if t.abi == "o32" else 12
    steps = p[("nop", "init")]["steps"]
    assert [(s["offset"], s["old"]["word"], s["new"]["word"]) for s in steps] == [
        (0, 0, 0x3C010081), (8, 0, 0x24000000 | flag << 16)]
    assert [s["new"]["asm"] for s in steps] == ["lui at,0x81", "li t0,0"]
    bad = p[("nop", "call")]["steps"][-1]
    assert (bad["offset"], bad["new"]["word"], bad["ok"]) == (4, 0x00200809, False)
    run = bad["run"]
    assert [x["offset"] for x in run] == [0, 4, 8] and run[1]["asm"] == "jalr at,at"
    # the old nop at +0 from the original image, the new jalr from the last one
    assert run[0]["image"] == 0 and run[1]["image"] == len(p[("nop", "call")]["steps"])


def test_redirect_needs_quiescence(analysis):
    t, d = analysis
    p, states = plans(d, "pad4")
    assert states["redirect"]["behaviour"] == [f"B' at {T.REDIRECT:#x}"]
    assert not p[("init", "redirect")]["safe"]
    assert p[("redirect", "nop")]["safe"]


def test_pg_kernel(analysis):
    t, d = analysis
    p, states = plans(d, "pg-kernel")
    if t.abi == "o32":
        # the jal and its stack-adjust delay slot must change together
        bad = p[("call", "nop")]
        assert not bad["safe"] and "+4, +8" in bad["reason"] and "$sp=entry $sp-8" in bad["reason"]
        assert not p[("nop", "call")]["safe"]
        # Rostedt's fix: after boot, re-enable with a delay-slot nop and a caller that pops nothing
        assert p[("nop", "call-ftrace")]["safe"] and p[("call-ftrace", "nop")]["order"] == [4]
    else:
        assert p[("call", "nop")]["safe"] and p[("call", "nop")]["order"] == [4]


def test_pg_module(analysis):
    t, d = analysis
    p, states = plans(d, "pg-module")
    assert states["nop"]["words"][0] == 0x10000004            # b 1f
    assert p[("call", "nop")]["order"] == [0] and p[("nop", "call")]["order"] == [0]
    assert states["nop"]["behaviour"] == ["body"]


def test_live_model_is_stricter():
    t = E.Target("o32", True, False)
    pre, _ = plans(T.verify_transitions(t, model="preempt"), "pad3")
    live, _ = plans(T.verify_transitions(t, model="live"), "pad3")
    assert pre[("call", "init")]["safe"]
    # a jalr fetched from the old image with its delay slot from the new one: flag 0
    assert not live[("call", "init")]["safe"] and "flag=0x0" in live[("call", "init")]["reason"]
    assert all(live[k]["safe"] <= pre[k]["safe"] for k in pre)


def test_argument_register_as_flag_is_visible():
    d = T.verify_transitions(E.Target("n64", True, False), flag=8)
    assert d["flag_reg_name"] == "a4" and "argument register" in d["warnings"][0]
    _, states = plans(d, "pad3")
    assert states["init"]["behaviour"] == ["body with $a4=0x0"]


def test_interpreter_on_raw_words():
    t = E.Target("o32", False, False)
    m = T.Machine(t, 8, 3)
    runs = m.runs([[0, 0x00200809, 0x24080001]])             # no lui: at is the caller's
    assert [m.describe(b) for b in runs] == ["jump to entry $at"]
    runs = m.runs([[0x3C010081, 0x00200809, 0x24080001]])
    assert [m.describe(b) for b in runs] == ["trampoline(flag=0x1, ra=entry $ra) -> body"]
    runs = m.runs([[0x3C010081, 0x00200809, 0x00200809]])    # a branch in a delay slot
    assert "delay slot" in m.describe(next(iter(runs)))


def test_cli_text_and_json():
    r = run_ours("verify", "--transitions", "--abi", "n64", "--endian", "little", "--r6")
    assert r.returncode == 0, r.stderr
    assert "n64-le-r6" in r.stdout and "UNSAFE" in r.stdout and "li t0,1" in r.stdout
    r = run_ours("verify", "--transitions", "--json")
    d = json.loads(r.stdout)["summary"]
    assert d["target"] == "o32-be" and {f["name"] for f in d["families"]} == {
        "pad3", "pad4", "pg-kernel", "pg-module"}


@pytest.mark.parametrize("args", [["verify"], ["verify", "--transitions", "--flag-reg", "q9"],
                                  ["verify", "--transitions", "--flag-reg", "ra"],
                                  ["verify", "--transitions", "--abi", "n32"]])
def test_cli_usage_errors(args):
    r = run_ours(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr
