"""`recordpatch verify --transitions`: which single-word write orders move a call site from
one state to another safely, derived from the instruction words themselves.

The states' words come from the assembler backend (keystone/hand encoders, checked by
capstone). A small abstract interpreter then runs the words (our own field decoder,
``arch/encode.decode``) on symbolic registers: what each word does to at, the flag
register, ra, sp and control flow, and which calls it makes (trampoline, _mcount,
a redirect). The *behaviour* of a run is what the rest of the program can observe:
the calls made (with the flag value and the return address the callee sees) and the
registers live at the function body's entry (sp, ra, arguments). Dead scratch registers
(at, v0/v1, temporaries) are not behaviour.

A write plan is a sequence of images I0 (old) .. In (new), each one word apart. A CPU may
be preempted at any instruction boundary (Rostedt, 2013: stop_machine() does not wait for
preempted tasks) and resume in a later image, so a run fetches each word from an image at
least as new as the previous fetch. The plan is safe when every such run over I0..Ij
behaves like the old or the new sequence, for every step j.

Separately, each state is run with an interrupt in the delay slot of each branch: the CPU
restarts at the branch with the branch's link register already written (the MIPS EPC/BD
rule). That exposes `jalr at,at` (rd == rs, UNPREDICTABLE in the ISA): on restart `at`
holds the return address, and the trampoline is skipped.
"""

from __future__ import annotations

import itertools

from ..arch import encode as E
from ..arch.encode import Target
from ..results import Report
from ..tuples import named

# ---------------------------------------------------------------- the model's addresses
PAD = 0x00400100          # first word of the sequence
TRAMP = 0x00810000        # ftrace_regs_caller: 64 KB aligned, so %hi alone loads it
MCOUNT = 0x00800100       # _mcount (the compiler's -pg ABI: o32 callers pre-adjust sp by -8)
FCALLER = 0x00800200      # ftrace_caller as the dynamic kernel re-enables it (no sp pop)
REDIRECT = 0x00820040     # B', the replacement function

LIVE = {"o32": (29, 31, 4, 5, 6, 7, 28, 30), "n64": (29, 31, *range(4, 12), 28, 30)}

Family = named("Family", "name description states")
Outcome = named("Outcome", "behaviour trace")
MAX_STEPS = 24


def families(t: Target, flag: int):
    """name -> Family(states: name -> list of intents at PAD, PAD+4, ...)."""
    at, v1, sp, ra = E.REG_AT, E.REG_V1, E.REG_SP, E.REG_RA
    th, _ = E.hi_lo(TRAMP, t)
    bh, bl = E.hi_lo(REDIRECT, t)
    mh, ml = E.hi_lo(MCOUNT, t)
    add = E.daddiu if t.bits == 64 else E.addiu
    init = [E.lui(at, th), E.nop(), E.li(flag, 0)]
    regs = [E.lui(at, th), E.jalr(at, at), E.li(flag, 0)]
    call = [E.lui(at, th), E.jalr(at, at), E.li(flag, 1)]
    out = {}
    out["pad3"] = Family("pad3", "-fpatchable-function-entry=3 pad (the design mail)", {
        "nop": [E.nop()] * 3, "init": init, "call-regs": regs, "call": call})
    out["pad4"] = Family("pad4", "-fpatchable-function-entry=4 pad, with a redirect to B'", {
        "nop": [E.nop()] * 4, "init": init + [E.nop()], "call-regs": regs + [E.nop()],
        "call": call + [E.nop()],
        "redirect": [E.lui(at, bh), add(at, at, bl), E.jr(at), E.nop()]})
    slot = E.addiu(sp, sp, -8) if t.abi == "o32" else E.nop()
    mv = E.move(at, ra)
    out["pg-kernel"] = Family("pg-kernel", "-pg in-kernel site: move at,ra; jal _mcount; <delay slot>"
                              + (" (o32: addiu sp,sp,-8, popped by _mcount)" if t.abi == "o32" else ""), {
        "call": [mv, E.jal(MCOUNT), slot],
        "nop": [mv, E.nop(), E.nop()],
        "call-ftrace": [mv, E.jal(FCALLER), E.nop()]})
    end = PAD + 4 * 5            # label 1: after the delay slot of jalr v1
    out["pg-module"] = Family("pg-module", "-pg module site (-mlong-calls): lui/addiu v1; move at,ra; "
                              "jalr v1; <delay slot>", {
        "call": [E.lui(v1, mh), add(v1, v1, ml), mv, E.jalr(ra, v1), slot],
        "nop": [E.b(end), add(v1, v1, ml), mv, E.jalr(ra, v1), slot]})
    return out


# ---------------------------------------------------------------- the interpreter
def _entry(r):
    return ("entry", r, 0)


JUNK = ("junk",)


MODELS = {
    "preempt": "a CPU switches to a newer image only where it can be preempted: at instruction "
               "boundaries, never between a branch and its delay slot (an exception there restarts "
               "the branch)",
    "live": "also a fetch split between a branch and its delay slot (words written while other CPUs "
            "run, no stop_machine)",
}


class Machine:
    def __init__(self, t: Target, flag: int, n_words: int, model: str = "preempt"):
        self.t, self.flag, self.n = t, flag, n_words
        self.split_delay_slot = model == "live"
        self.mask = (1 << t.bits) - 1
        self.live = LIVE[t.abi]

    def show(self, v) -> str:
        if isinstance(v, int):
            return f"{v:#x}"
        if v[0] == "entry":
            name = "$" + E.reg_name(self.t.abi, v[1])
            return f"entry {name}{v[2]:+d}" if v[2] else f"entry {name}"
        if v[0] == "ret":
            return f"return address {v[1]:#x}"
        return "garbage"

    def _sext32(self, v):
        return E.sext(v, 32) & self.mask

    def _add(self, v, imm, width64):
        if isinstance(v, int):
            r = (v + imm) & self.mask
            return r if width64 else self._sext32(r)
        if v[0] == "entry" and v[1] == E.REG_SP:
            return ("entry", v[1], v[2] + imm)
        return JUNK

    def snapshot(self, regs):
        return tuple((r, regs.get(r, _entry(r))) for r in self.live)

    def describe(self, b) -> str:
        """A behaviour (events, end) in words."""
        events, end = b
        parts = []
        for ev in events:
            if ev[0] == "tracer":
                parts.append(f"trampoline(flag={self.show(ev[1])}, ra={self.show(ev[2])})")
            elif ev[0] == "mcount":
                parts.append(f"{ev[3]}(parent={self.show(ev[1])})")
            else:
                parts.append(" ".join(map(str, ev)))
        if end[0] == "body":
            bad = [f"${E.reg_name(self.t.abi, r)}={self.show(v)}" for r, v in end[1] if v != _entry(r)]
            parts.append("body" + (f" with {', '.join(bad)}" if bad else ""))
        elif end[0] == "redirect":
            bad = [f"${E.reg_name(self.t.abi, r)}={self.show(v)}" for r, v in end[2] if v != _entry(r)]
            parts.append(f"B' at {end[1]:#x}" + (f" with {', '.join(bad)}" if bad else ""))
        else:
            parts.append(" ".join(map(str, end)))
        return " -> ".join(parts)

    def runs(self, images, delay_interrupt=False):
        """All behaviours of runs over ``images`` (fetches from non-decreasing image indexes),
        each with one witness trace [(position, image index, text)]."""
        out = {}
        start = {r: _entry(r) for r in range(1, 32)}
        stack = [(0, 0, start, (), (), 0, False)]
        while stack:
            pos, img, regs, events, trace, steps, used_irq = stack.pop()
            for res in self._step(images, pos, img, regs, events, trace, steps, used_irq, delay_interrupt):
                if res[0] == "done":
                    out.setdefault(res[1], res[2])
                else:
                    stack.append(res[1])
        return out

    def _fetch(self, images, pos, img):
        for j in range(img, len(images)):
            yield j, images[j][pos]

    def _step(self, images, pos, img, regs, events, trace, steps, used_irq, irq):
        t = self.t
        if steps > MAX_STEPS:
            yield ("done", (events, ("loops",)), trace)
            return
        if pos == self.n:
            yield ("done", (events, ("body", self.snapshot(regs))), trace)
            return
        pc = PAD + 4 * pos
        for j, w in self._fetch(images, pos, img):
            # no de-duplication of equal words: the image index decides later fetches
            insn = E.decode(w, pc, t)
            tr = trace + ((pos, j, insn.pretty(t.abi) if insn else f".word {w:#x}"),)
            if insn is None:
                yield ("done", (events, ("undefined instruction", f"{w:#010x}")), tr)
                continue
            if insn.op in ("jalr", "jr", "jal", "j", "b"):
                yield from self._branch(images, pos, j, insn, dict(regs), events, tr, steps, used_irq, irq)
                continue
            r2 = dict(regs)
            self._exec(insn, r2)
            yield ("more", (pos + 1, j, r2, events, tr, steps + 1, used_irq))

    def _exec(self, insn, regs):
        a = insn.args
        op = insn.op
        if op == "nop":
            return
        if op == "lui":
            v = self._sext32(a[1] << 16)
            dst = a[0]
        elif op == "li":
            v, dst = a[1] & self.mask, a[0]
        elif op in ("addiu", "daddiu"):
            v, dst = self._add(regs.get(a[1], _entry(a[1])) if a[1] else 0, a[2], op == "daddiu"), a[0]
        elif op == "move":
            v, dst = (regs.get(a[1], _entry(a[1])) if a[1] else 0), a[0]
        elif op == "addu-move":
            src = regs.get(a[1], _entry(a[1])) if a[1] else 0
            v, dst = (self._sext32(src) if isinstance(src, int) else JUNK), a[0]
        else:  # pragma: no cover - decode() returns only the ops above
            raise AssertionError(op)
        if dst:
            regs[dst] = v

    def _branch(self, images, pos, img, insn, regs, events, trace, steps, used_irq, irq):
        """A jump or branch, its delay slot, and where control goes."""
        pc = PAD + 4 * pos
        if insn.op in ("jalr", "jr"):
            rs = insn.args[-1]
            target = regs.get(rs, _entry(rs)) if rs else 0
        else:
            target = insn.args[0]
        if insn.op == "jalr" and insn.args[0]:
            regs[insn.args[0]] = ("ret", pc + 8)
        elif insn.op == "jal":
            regs[E.REG_RA] = ("ret", pc + 8)
        if irq and not used_irq:
            # interrupted in the delay slot: EPC = the branch, link already written
            yield ("more", (pos, img, dict(regs), events, trace + ((pos, img, "<interrupt in delay slot>"),),
                            steps + 1, True))
        if pos + 1 >= self.n:
            yield ("done", (events, ("branch with its delay slot outside the sequence",)), trace)
            return
        slot_images = self._fetch(images, pos + 1, img) if self.split_delay_slot \
            else [(img, images[img][pos + 1])]
        for j, w in slot_images:
            d = E.decode(w, pc + 4, self.t)
            tr = trace + ((pos + 1, j, d.pretty(self.t.abi) if d else f".word {w:#x}"),)
            if d is None or d.op in ("jalr", "jr", "jal", "j", "b"):
                yield ("done", (events, ("undefined: branch or bad word in a delay slot",)), tr)
                continue
            r2 = dict(regs)
            self._exec(d, r2)
            yield from self._goto(target, pos + 1, j, r2, events, tr, steps + 2, used_irq)

    def _goto(self, target, slot_pos, img, regs, events, trace, steps, used_irq):
        t = self.t
        if isinstance(target, tuple) and target[0] == "ret":
            target = target[1]
        if not isinstance(target, int):
            yield ("done", (events, ("jump to", self.show(target))), trace)
            return
        target &= self.mask
        if target == TRAMP:
            ev = ("tracer", regs.get(self.flag, _entry(self.flag)), regs.get(E.REG_RA, _entry(31)))
            back = regs.get(E.REG_AT, _entry(1))
            r2 = dict(regs)
            for r in E.SCRATCH_REGS[t.abi]:
                r2[r] = JUNK          # the trampoline may clobber scratch registers
            yield from self._return(back, events + (ev,), r2, img, trace, steps, used_irq)
            return
        if target in (MCOUNT, FCALLER):
            name = "_mcount" if target == MCOUNT else "ftrace_caller"
            parent = regs.get(E.REG_AT, _entry(1))
            back = regs.get(E.REG_RA, _entry(31))
            r2 = dict(regs)
            for r in E.SCRATCH_REGS[t.abi]:
                r2[r] = JUNK
            r2[E.REG_RA] = parent                     # _mcount returns with ra = at (the parent)
            if target == MCOUNT and t.abi == "o32":   # and pops the caller's stack adjust
                r2[E.REG_SP] = self._add(r2.get(E.REG_SP, _entry(29)), 8, True)
            yield from self._return(back, events + (("mcount", parent, back, name),), r2, img, trace,
                                    steps, used_irq)
            return
        if target == REDIRECT:
            yield ("done", (events, ("redirect", target, self.snapshot(regs))), trace)
            return
        off = target - PAD
        if 0 <= off <= 4 * self.n and not off & 3:
            yield ("more", (off // 4, img, regs, events, trace, steps, used_irq))
            return
        yield ("done", (events, ("jump to", f"{target:#x}")), trace)

    def _return(self, back, events, regs, img, trace, steps, used_irq):
        if isinstance(back, tuple) and back[0] == "ret":
            off = back[1] - PAD
            if 0 <= off <= 4 * self.n:
                yield ("more", (off // 4, img, regs, events, trace, steps, used_irq))
                return
        yield ("done", (events, ("callee returns to", self.show(back))), trace)


# ---------------------------------------------------------------- plans
#: One write of a plan: the word at ``offset`` goes from ``old`` to ``new`` (ints); ``ok``
#: if no CPU can then behave as neither image does, else ``witness`` = (behaviour, trace).
Step = named("Step", "offset old new ok witness")
Plan = named("Plan", "src dst safe order steps reason")


def analyse_pair(m: Machine, old, new):
    """The plan from word list ``old`` to ``new``: safe order or why none exists."""
    diff = [i for i in range(len(old)) if old[i] != new[i]]
    b_old = set(m.runs([old]))
    b_new = set(m.runs([new]))
    ok_set = b_old | b_new
    best = None
    for order in itertools.permutations(diff):
        images = [list(old)]
        for i in order:
            img = list(images[-1])
            img[i] = new[i]
            images.append(img)
        steps = []
        failed = False
        for k in range(1, len(images)):
            bad = None
            for b, tr in m.runs(images[:k + 1]).items():
                if b not in ok_set:
                    bad = (b, tr)
                    break
            i = order[k - 1]
            steps.append(Step(4 * i, old[i], new[i], bad is None, bad))
            if bad is not None:
                failed = True
                break
        cand = (not failed, len([s for s in steps if s.ok]), order, steps)
        if best is None or cand[:2] > best[:2]:
            best = cand
        if not failed:
            break
    if not diff:
        return True, (), [], ""
    safe, _, order, steps = best
    reason = ""
    if not safe:
        bad = steps[-1].witness
        words = ", ".join(f"+{4 * i}" for i in diff)
        reason = (f"no order of single-word writes is safe: the words at {words} must change at once "
                  f"(or with no CPU inside the sequence); e.g. after writing +{steps[-1].offset} "
                  f"a CPU runs [{_trace_text(bad[1])}]: {m.describe(bad[0])}")
    return safe, order, steps, reason


def _pretty(w: int, pc: int, t: Target) -> str:
    return E.pretty_word(w, pc, t) or f".word {w:#010x}"


def _trace_text(trace) -> str:
    return "; ".join(f"+{4 * p}:{txt}{'' if j == 0 else f' (image {j})'}" for p, j, txt in trace)


def _trace_data(trace) -> list[dict]:
    """A counterexample run as data: each instruction's offset in the pad, its text, and
    the image it was fetched from (0: the original words, k: after the k-th write)."""
    return [{"offset": 4 * p, "asm": txt, "image": j} for p, j, txt in trace]


def verify_transitions(t: Target, flag: int | None = None, model: str = "preempt") -> dict:
    """Every family's states, their words, hazards, and a plan for each ordered pair."""
    from ..arch.asm import assembler

    flag = E.flag_reg_default(t.abi) if flag is None else flag
    a = assembler(t)
    out = {"target": t.name, "abi": t.abi, "endian": "big" if t.big else "little", "r6": t.r6,
           "flag_reg": flag, "flag_reg_name": E.reg_name(t.abi, flag),
           "model": model, "model_description": MODELS[model],
           "addresses": {"pad": PAD, "trampoline": TRAMP, "_mcount": MCOUNT,
                         "ftrace_caller": FCALLER, "redirect": REDIRECT},
           "families": []}
    hazard = E.flag_reg_hazard(flag, t.abi)
    out["warnings"] = [hazard] if hazard else []
    for fam in families(t, flag).values():
        words = {name: a.encode_all(insns, PAD) for name, insns in fam.states.items()}
        n = len(next(iter(words.values())))
        m = Machine(t, flag, n, model)

        def word(w, off):
            return {"word": w, "asm": _pretty(w, PAD + off, t)}

        states = []
        for name, ws in words.items():
            normal = m.runs([ws])
            hazards = sorted({m.describe(b) for b in m.runs([ws], delay_interrupt=True)}
                             - {m.describe(b) for b in normal})
            states.append({"name": name, "words": list(ws),
                           "asm": [_pretty(w, PAD + 4 * i, t) for i, w in enumerate(ws)],
                           "capstone": [a.disasm(w, PAD + 4 * i) for i, w in enumerate(ws)],
                           "behaviour": sorted(m.describe(b) for b in normal),
                           "delay_slot_hazards": hazards})
        plans = []
        for src, dst in itertools.permutations(words, 2):
            safe, order, steps, reason = analyse_pair(m, words[src], words[dst])
            plans.append({"from": src, "to": dst, "safe": safe,
                          "order": [4 * i for i in order] if safe else [],
                          "steps": [{"offset": s.offset, "old": word(s.old, s.offset),
                                     "new": word(s.new, s.offset), "ok": s.ok,
                                     **({} if s.ok else {"counterexample": m.describe(s.witness[0]),
                                                         "run": _trace_data(s.witness[1])})}
                                    for s in steps],
                          "reason": reason})
        out["families"].append({"name": fam.name, "description": fam.description,
                                "states": states, "plans": plans})
    return out


def verify(abi: str = "o32", endian: str = "big", r6: bool = False, flag_reg: str | None = None,
           model: str = "preempt") -> Report:
    """`recordpatch verify --transitions`: the analysis is the summary (unsafe plans are
    findings about the design, not failures of the command: it exits 0)."""
    from ..errors import RecordpatchError, UsageError

    t = Target(abi, endian == "big", r6)
    try:
        flag = E.flag_reg(flag_reg, t.abi)
    except RecordpatchError as e:
        raise UsageError(f"--flag-reg: {e}") from None
    return Report("verify", [], verify_transitions(t, flag, model))
