"""`recordpatch patch`: rewrite ftrace call sites of a MIPS image into a chosen state.

Sites come from `__patchable_function_entries` (pads of -fpatchable-function-entry=3 or 4)
and, for -pg code, from `__mcount_loc`. The states are those of the MIPS
DYNAMIC_FTRACE_WITH_REGS design (implemented for Linux 6.1 in kernel/pfe/, docs/kernel-pfe.md):

  pad, 3 words    nop       nop; nop; nop
                  init      lui at,%hi(tramp); nop; li FLAG,0
                  call-regs lui at,%hi(tramp); jalr at,at; li FLAG,0
                  call      lui at,%hi(tramp); jalr at,at; li FLAG,1
  pad, 4 words    the same + nop, and
                  redirect  lui at,%hi(B'); addiu at,at,%lo(B'); jr at; nop
  -pg, in-kernel  call      jal _mcount; <slot: addiu sp,sp,-8 (o32) | nop (n64)>
                  nop       nop; nop (o32: the stack adjust goes too, as the kernel does,
                            since nobody pops it any more)
  -pg, long call  call      lui v1,%hi(_mcount) (then addiu v1; move at,ra; jalr v1; slot)
                  nop       b 1f  (1: = after the jalr's delay slot)

FLAG is the ABI's t0 ($8 o32, $12 n64) unless --flag-reg. Every word is encoded by the
assembler backend (arch/asm.py: keystone or the hand encoders, read back by capstone).
:func:`plan_changes` returns the byte writes and the findings; :func:`patch_file` writes
the output atomically, and only when every site holds an expected sequence.

Linked images (ET_EXEC) support every state. A relocatable object only supports states
whose words need no relocation: the trampoline and B' must then be given as addresses,
and -pg sites (their words carry R_MIPS_26/HI16 relocations) are refused.
"""

from __future__ import annotations

import os
import struct

from ..arch import encode as E
from ..arch import mips
from ..arch.encode import Target
from ..diag import ERROR, Finding
from ..elf import consts as C
from ..elf.reader import ElfFile
from ..errors import RecordpatchError, UsageError
from ..results import FileReport, Report
from ..tuples import named
from .tables import MCOUNT as TABLE_MCOUNT
from .tables import PFE as TABLE_PFE
from .tables import linked_tables, relocatable_entries, words

PAD_STATES = ("nop", "init", "call-regs", "call", "redirect")
PG_STATES = ("nop", "call")

#: kind: "pad" | "pg-kernel" | "pg-module"; addr: address (linked) or section offset;
#: off: file offset of the first word; n: words the states cover; func: function name;
#: section_name: the section it is in (a name, as in record.Site.section_name)
Site = named("Site", "kind addr off n func section_name")
#: one site's change: old state name, new state name, old and new words
Change = named("Change", "site old_state new_state old new")


class PatchError(RecordpatchError):
    pass


class Options(named("Options", "state trampoline target flag_reg only exclude",
                         defaults=(None, None, None, (), ()))):
    """state: a state name; trampoline/target: symbol name or address (int or text);
    flag_reg: register text ("t0", "$12", "8") or None for the ABI's t0."""
    __slots__ = ()


# ---------------------------------------------------------------- the image
class Image:
    def __init__(self, data: bytes):
        self.data = data
        self.elf = elf = ElfFile(data)
        if elf.machine != C.EM_MIPS:
            raise PatchError(f"wrong machine: e_machine {elf.machine}, expected EM_MIPS (8)")
        if elf.type not in (C.ET_EXEC, C.ET_REL):
            raise PatchError("only linked executables (ET_EXEC) and relocatable objects are patched "
                             f"(e_type {elf.type})")
        abi = mips.abi_of(elf.bits, elf.flags)
        self.t = Target(abi.name, elf.endian == ">", abi.r6)
        self.linked = elf.type == C.ET_EXEC
        self.word = struct.Struct(elf.endian + "I")
        self.mask = (1 << elf.bits) - 1
        self.syms = {}
        self.funcs = []
        self._func_index: dict = {}
        if elf.symtab is not None:
            for s in elf.symtab:
                if s.section and s.name:
                    self.syms.setdefault(s.name, s)
                    if s.type == C.STT_FUNC:
                        self.funcs.append(s)

    # addresses <-> file offsets
    def file_offset(self, addr: int, n: int = 4) -> tuple[int, str]:
        for s in self.elf.sections:
            if (s.flags & C.SHF_ALLOC) and s.type == C.SHT_PROGBITS and s.addr <= addr \
                    and addr + n <= s.addr + s.size:
                return s.offset + addr - s.addr, s.name
        raise PatchError(f"address {addr:#x} is in no section with contents")

    def read(self, off: int) -> int:
        return self.word.unpack_from(self.data, off)[0]

    def func_at(self, addr: int, section: int | None = None) -> str:
        """The function starting at ``addr``, else the one containing it (the highest
        start), else "". One bisect per call: a vmlinux has ~24k sites and ~30k functions."""
        from bisect import bisect_right
        idx = self._func_index.get(section)
        if idx is None:
            fs = sorted(((s.value & ~1, s) for s in self.funcs
                         if section is None or s.section == section), key=lambda x: x[0])
            idx = self._func_index[section] = ([v for v, _ in fs], [f for _, f in fs])
        starts, funcs = idx
        k = bisect_right(starts, addr)
        if k and starts[k - 1] == addr:
            return funcs[bisect_right(starts, addr - 1)].name   # the first defined there
        for j in range(k - 1, -1, -1):
            v, f = starts[j], funcs[j]
            if v <= addr < v + max(f.size, 1):
                return f.name
            if addr - v > 0x100000:   # no function is that long
                break
        return ""

    def address_of(self, spec, what: str) -> tuple[int, str, bool]:
        """(address, name, is_symbol) for a symbol name or a number."""
        if isinstance(spec, int):
            return spec & self.mask, f"{spec:#x}", False
        try:
            return int(spec, 0) & self.mask, spec, False
        except ValueError:
            pass
        if not self.linked:
            raise PatchError(f"{what} {spec}: in a relocatable object a symbol's address is only "
                             "known after linking, and loading it would need a new relocation; "
                             "give the address (SYM|ADDR) or patch the linked image")
        s = self.syms.get(spec)
        if s is None:
            raise PatchError(f"{what} {spec}: no such symbol in this file")
        return s.value & ~1 & self.mask, spec, True


# ---------------------------------------------------------------- sites
def _table_words(img: Image, name: str):
    """The addresses in a linked image's sections called ``name``."""
    for tname, _, data in linked_tables(img.elf):
        if tname == name:
            yield from words(img.elf, data)


def _is_pad(img: Image, addr: int, pad_words: int) -> bool:
    """Nops or one of the design's pad states at ``addr`` (not a -pg call site)."""
    try:
        off, _ = img.file_offset(addr, 4 * pad_words)
    except PatchError:
        return False
    w = [img.read(off + 4 * k) for k in range(3)]
    return all(x == mips.NOP for x in w) or bool(mips.pad_state(*w, E.flag_reg_default(img.t.abi), img.t.r6))


def find_sites(img: Image, pad_words: int) -> list[Site]:
    elf = img.elf
    sites = []
    if img.linked:
        starts = {s.value & ~1 for s in img.funcs}
        section_names = {s.name for s in elf.sections}
        for name, _, data in linked_tables(elf, elf.symtab):
            for addr in words(elf, data):
                if not addr:
                    continue  # an entry of a discarded section
                # a vmlinux keeps either table between __start/__stop_mcount_loc (no section
                # of that name is left): its pads are told from -pg sites by their words
                if name == TABLE_PFE or name not in section_names and _is_pad(img, addr, pad_words):
                    off, sec = img.file_offset(addr, 4 * pad_words)
                    if addr not in starts and addr + 4 * pad_words in starts:
                        _refuse_pr99217(img.func_at(addr + 4 * pad_words), pad_words)
                    sites.append(Site("pad", addr, off, pad_words, img.func_at(addr), sec))
                    continue
                off, sec = img.file_offset(addr, 8)
                w = img.read(off)
                kind = "pg-module" if mips.is_lui(w, E.REG_V1) or mips.is_b_1f(w) else "pg-kernel"
                sites.append(Site(kind, addr, off, 2 if kind == "pg-kernel" else 1,
                                  img.func_at(addr), sec))
        if not sites:
            raise PatchError(f"no call sites: no {TABLE_PFE} and no {TABLE_MCOUNT} in this image "
                             "(link with the table sections kept: no --gc-sections, or KEEP() them)")
        return sites
    from .patchable import plan
    if any(s.name == TABLE_PFE for s in elf.sections):
        pr = [p for p in plan(elf).pads if p.pr99217]
        if pr:
            _refuse_pr99217(pr[0].func.name, pr[0].nops, len(pr))
    for _t, slot, shndx, offset, _rela, problem in relocatable_entries(elf, TABLE_PFE):
        if problem:
            raise PatchError(f"{TABLE_PFE} entry {slot}: {problem}")
        sec = elf.section(shndx)
        if offset + 4 * pad_words > sec.size or sec.type != C.SHT_PROGBITS:
            raise PatchError(f"{TABLE_PFE} entry {slot} points past {sec.name}")
        sites.append(Site("pad", offset, sec.offset + offset, pad_words,
                          img.func_at(offset, shndx), sec.name))
    if not sites:
        from . import record
        refused = record.find_sites(elf)[4]
        if refused:   # record's verdict, whatever the state of the words
            raise PatchError(record.refusal(refused))
        if any(s.name == TABLE_MCOUNT or s.name.endswith(TABLE_MCOUNT) for s in elf.sections) or \
                img.syms.get("_mcount") is None and _has_mcount_refs(img):
            raise PatchError("-pg call sites in a relocatable object cannot be patched: each `jal "
                             "_mcount`/`lui v1,%hi(_mcount)` word carries a relocation the linker "
                             "applies over it; patch the linked image")
        raise PatchError(f"no call sites: no {TABLE_PFE} in this object")
    _check_no_relocs(img, sites)
    return sites


def _refuse_pr99217(fname: str, nops: int, count: int = 0) -> None:
    """A pad before its function's label never runs: patching it changes nothing a caller
    executes, so the patch is refused with record's and audit's diagnosis."""
    from .patchable import pr99217_text
    more = f" ({count} functions like it)" if count > 1 else ""
    raise PatchError(f"{pr99217_text(nops, fname)}{more}; patching such pads would change "
                     "code no caller runs")


def _has_mcount_refs(img: Image) -> bool:
    st = img.elf.symtab
    return st is not None and any(s.name == "_mcount" for s in st)


def _check_no_relocs(img: Image, sites) -> None:
    """A relocation inside a pad of a relocatable object would be applied over our words."""
    elf = img.elf
    by_sec = {}
    for s in sites:
        by_sec.setdefault(s.section_name, []).append(s)
    for rs in elf.sections:
        if rs.type not in (C.SHT_REL, C.SHT_RELA):
            continue
        target = elf.section(rs.info) if 0 < rs.info < len(elf.sections) else None
        if target is None or target.name not in by_sec:
            continue
        for r in elf.relocations(rs):
            for s in by_sec[target.name]:
                if s.addr <= r.offset < s.addr + 4 * s.n:
                    raise PatchError(f"{s.func or target.name}+{r.offset - s.addr:#x}: a relocation "
                                     "inside the pad; the linker would overwrite the patch")


# ---------------------------------------------------------------- state words
class States:
    """The words of each state at one site, and the recognition of old words."""

    def __init__(self, img: Image, opts: Options):
        from ..arch.asm import assembler
        self.img, self.t = img, img.t
        self.a = assembler(img.t)
        self._pad_words: dict = {}
        t = self.t
        try:
            self.flag = E.flag_reg(opts.flag_reg, t.abi)
        except RecordpatchError as e:
            raise UsageError(f"--flag-reg: {e}") from None
        hazard = E.flag_reg_hazard(self.flag, t.abi)
        if hazard:   # verify analyses such a pad; patch never writes one
            raise UsageError(f"--flag-reg: {hazard}")
        self.tramp = self.target = self.mcount = None
        self.tramp_name = self.target_name = ""
        spec = opts.trampoline if opts.trampoline is not None else "ftrace_regs_caller"
        try:
            self.tramp, self.tramp_name, is_sym = img.address_of(spec, "trampoline")
        except PatchError:
            if opts.trampoline is not None or opts.state in ("init", "call-regs", "call"):
                raise
            is_sym = False
        if self.tramp is not None:
            self._check_tramp(is_sym)
        if opts.target is not None:
            self.target, self.target_name, _ = img.address_of(opts.target, "--target")
            E.hi_lo(self.target, t)  # reachable by lui+addiu
        elif opts.state == "redirect":
            raise UsageError("--state redirect needs --target SYM|ADDR (the function B' to run)")
        m = img.syms.get("_mcount")
        if m is not None and img.linked:
            self.mcount = m.value & img.mask

    def _check_tramp(self, is_sym: bool) -> None:
        img = self.img
        if is_sym:
            from .check import check_elf
            _res, diags = check_elf(img.elf, [self.tramp_name], 65536)
            bad = [d.message for d in diags if d.level == ERROR]
            if bad:
                raise PatchError(f"trampoline {self.tramp_name}: {bad[0]}")
        elif self.tramp & 0xFFFF:
            raise PatchError(f"trampoline {self.tramp:#x} is not 64 KiB aligned: lui at,%hi() alone "
                             "cannot load it")
        E.hi_lo(self.tramp, self.t)

    def _add(self):
        return E.daddiu if self.t.bits == 64 else E.addiu

    def pad_insns(self, state: str, n: int):
        at = E.REG_AT
        if state == "nop":
            seq = [E.nop()] * 3
        elif state == "redirect":
            if n < 4:
                raise PatchError("redirect needs a 4-word pad (-fpatchable-function-entry=4)")
            hi, lo = E.hi_lo(self.target, self.t)
            return [E.lui(at, hi), self._add()(at, at, lo), E.jr(at), E.nop()]
        else:
            if self.tramp is None:
                raise PatchError("no trampoline: give --trampoline SYM|ADDR")
            hi, _ = E.hi_lo(self.tramp, self.t)
            mid = E.nop() if state == "init" else E.jalr(at, at)
            seq = [E.lui(at, hi), mid, E.li(self.flag, 1 if state == "call" else 0)]
        return seq + [E.nop()] * (n - 3)

    def words(self, site: Site, state: str) -> list[int]:
        pc = site.addr if self.img.linked else 0
        if site.kind == "pad":
            # no pad word is PC-relative: encode (and verify) each state once, not per site
            key = (state, site.n)
            if key not in self._pad_words:
                self._pad_words[key] = self.a.encode_all(self.pad_insns(state, site.n), pc)
            return self._pad_words[key]
        if site.kind == "pg-kernel":
            if state == "nop":
                return self.a.encode_all([E.nop(), E.nop()], pc)
            if self.mcount is None:
                raise PatchError("no _mcount symbol: cannot restore the -pg call")
            slot = E.addiu(E.REG_SP, E.REG_SP, -8) if self.t.abi == "o32" else E.nop()
            return self.a.encode_all([E.jal(self.mcount), slot], pc)
        # pg-module: the lui word only
        if state == "nop":
            return [self.a.encode(E.b(self._module_end(site)), pc)]
        if self.mcount is None:
            raise PatchError("no _mcount symbol: cannot restore the -pg call")
        hi, _ = E.hi_lo(self.mcount, self.t)
        return [self.a.encode(E.lui(E.REG_V1, hi), pc)]

    def _module_end(self, site: Site) -> int:
        """Label 1: of the long-call sequence: after the delay slot of its `jalr v1`."""
        for k in range(1, 8):
            w = self.img.read(site.off + 4 * k)
            if mips.is_jalr_ra(w, E.REG_V1):
                return site.addr + 4 * k + 8
        raise PatchError("no `jalr v1` within 8 words of the long-call site")

    def states_for(self, site: Site) -> tuple[str, ...]:
        if site.kind == "pad":
            return PAD_STATES if site.n >= 4 else PAD_STATES[:-1]
        return PG_STATES

    def classify(self, site: Site, old: list[int]) -> str | None:
        """The state ``old`` (the site's current words) is in, or None."""
        for st in self.states_for(site):
            if st == "redirect":
                if self._is_redirect(site, old):
                    return st
                continue
            try:
                if self.words(site, st) == old:
                    return st
            except (PatchError, E.EncodeError):
                continue
        return None

    def _is_redirect(self, site: Site, old) -> bool:
        pc = site.addr if self.img.linked else 0
        d = [E.decode(w, pc + 4 * i, self.t) for i, w in enumerate(old)]
        if None in d or len(d) < 4:
            return False
        add = "daddiu" if self.t.bits == 64 else "addiu"
        return (d[0].op == "lui" and d[0].args[0] == E.REG_AT and d[1].op == add
                and d[1].args[:2] == (E.REG_AT, E.REG_AT) and d[2] in (E.jr(E.REG_AT), E.jalr(0, E.REG_AT))
                and d[3].op == "nop")


def pad_words_of(img: Image, opts: Options) -> int:
    """4 when redirecting (or when a site already is redirected), else 3."""
    if opts.state == "redirect":
        return 4
    if img.linked:
        for addr in _table_words(img, TABLE_PFE):
            try:
                off, _ = img.file_offset(addr, 16)
            except PatchError:
                continue
            w0, w2 = img.read(off), img.read(off + 8)
            if mips.is_lui(w0, E.REG_AT) and w2 in (0x00200008, 0x00200009):  # jr at / jalr zero,at
                return 4
    return 3


# ---------------------------------------------------------------- the pass
def plan_changes(data: bytes, opts: Options):
    """(image, states, changes, diagnostics, selected sites). Nothing is written."""
    img = Image(data)
    if opts.state not in PAD_STATES:
        raise PatchError(f"unknown state {opts.state!r}")
    st = States(img, opts)
    sites = find_sites(img, pad_words_of(img, opts))
    names = {s.func for s in sites}
    for f in (*opts.only, *opts.exclude):
        if f not in names:
            raise PatchError(f"--only/--except {f}: no call site in a function of that name")
    sel = [s for s in sites if (not opts.only or s.func in opts.only) and s.func not in opts.exclude]
    if opts.state == "redirect" and st.target is not None:
        sel = [s for s in sel if s.addr != st.target]  # B' itself is never redirected to itself
    diags, changes = [], []
    for s in sel:
        at = f"{s.addr:#x}" if img.linked else f"{s.section_name}+{s.addr:#x}"
        where = {"function": s.func or s.section_name}
        if s.kind != "pad" and opts.state not in PG_STATES:
            diags.append(Finding(ERROR, "no-state", f"the -pg call site at {at} has no "
                                 f"{opts.state} state (only nop and call)", **where))
            continue
        old = [img.read(s.off + 4 * i) for i in range(s.n)]
        cur = st.classify(s, old)
        if cur is None:
            got = "; ".join(_pretty(st, w, s.addr + 4 * i) for i, w in enumerate(old))
            diags.append(Finding(ERROR, "unexpected-words", f"unexpected words at the "
                                 f"{_kind_text(s)} at {at}: {got} (not one of the states "
                                 f"{', '.join(st.states_for(s))} with flag register ${st.flag} "
                                 f"and trampoline {st.tramp_name or '?'})", **where))
            continue
        try:
            new = st.words(s, opts.state)
        except E.EncodeError as e:
            diags.append(Finding(ERROR, "encode", f"{at}: {e}", **where))
            continue
        changes.append(Change(s, cur, opts.state, old, new))
    return img, st, changes, diags, sel


def _named(name: str, addr: int) -> str:
    return f"{addr:#x}" if name == f"{addr:#x}" else f"{name} {addr:#x}"


def _pretty(st: States, w: int, pc: int) -> str:
    """A word for people: the encoder's names, else capstone's disassembly."""
    return E.pretty_word(w, pc, st.t) or st.a.disasm(w, pc)


def _kind_text(s: Site) -> str:
    return {"pad": f"{s.n}-word pad", "pg-kernel": "`jal _mcount` site",
            "pg-module": "long-call `lui v1` site"}[s.kind]


def apply(data: bytes, img: Image, changes, upto: int | None = None, orders=None) -> bytes:
    """``data`` with the changes' words written. ``upto``/``orders``: only the first ``upto``
    writes of each change, in the order ``orders[i]`` gives (word indexes)."""
    buf = bytearray(data)
    for k, ch in enumerate(changes):
        idx = [i for i in range(len(ch.new)) if ch.new[i] != ch.old[i]]
        if orders is not None:
            idx = list(orders[k])
        if upto is not None:
            idx = idx[:upto]
        for i in idx:
            img.word.pack_into(buf, ch.site.off + 4 * i, ch.new[i])
    return bytes(buf)


def _family(t: Target, site: Site) -> str:
    if site.kind == "pad":
        return "pad4" if site.n >= 4 else "pad3"
    return site.kind


def write_orders(st: States, changes):
    """Per change, the safe single-word write order from transitions.py, or raise."""
    from . import transitions as T
    fams = T.families(st.t, st.flag)
    cache, orders = {}, []
    for ch in changes:
        fam = _family(st.t, ch.site)
        key = (fam, ch.old_state, ch.new_state)
        if key not in cache:
            states = fams[fam].states
            if ch.old_state not in states or ch.new_state not in states:
                raise PatchError(f"no transition model for {fam} {ch.old_state} -> {ch.new_state}")
            words = {n: st.a.encode_all(i, T.PAD) for n, i in states.items()}
            n = len(words[ch.old_state])
            m = T.Machine(st.t, st.flag, n)
            safe, order, _steps, reason = T.analyse_pair(m, words[ch.old_state],
                                                         words[ch.new_state])
            # the model's pg-kernel sequence starts at `move at,ra`; our site at the `jal`
            shift = 1 if fam == "pg-kernel" else 0
            cache[key] = (safe, tuple(i - shift for i in order), reason)
        safe, order, reason = cache[key]
        if not safe:
            raise PatchError(f"{fam} {ch.old_state} -> {ch.new_state}: {reason}")
        orders.append(order)
    return orders


def staged_images(data: bytes, opts: Options) -> list[bytes]:
    """Every intermediate image of the safe plan, applied to all selected sites in step:
    [after write 1, after write 2, ..., final]."""
    img, st, changes, diags, _ = plan_changes(data, opts)
    if diags:
        raise PatchError(diags[0].message)
    orders = write_orders(st, changes)
    steps = max((len(o) for o in orders), default=0)
    return [apply(data, img, changes, k, orders) for k in range(1, steps + 1)]


# ---------------------------------------------------------------- command
def patch_file(path: str, output: str, opts: Options) -> Report:
    """`recordpatch patch`: ``path`` with the selected sites in ``opts.state``, written to
    ``output`` (atomically), or nothing written and the reasons as findings."""
    from ..elf.writer import write_atomic
    from .pipeline import decompress, error_result, read_input

    def failed(f: FileReport) -> Report:
        return Report("patch", [f], {"state": opts.state, "written": False})
    if os.path.exists(output) and os.path.samefile(path, output):
        raise UsageError("-o names the input; the input is never modified")
    try:
        data, st_in = read_input(path)
        data = decompress(path, data)   # a .ko.xz is read; OUT is always uncompressed
        img, st, changes, diags, sel = plan_changes(data, opts)
        if diags:
            diags.append(Finding(ERROR, "not-written", f"{len(diags)} of {len(sel)} sites not "
                                 "in an expected state; nothing written"))
            return failed(FileReport(path, "findings", diags))
        if not changes:
            raise PatchError("no call site selected")
        out = apply(data, img, changes)
        write_atomic(output, [out], mode=st_in.st_mode)
    except (RecordpatchError, E.EncodeError) as e:
        return failed(error_result(path, e))
    except OSError as e:
        return failed(error_result(path, RecordpatchError(e.strerror or str(e))))
    t = img.t
    pads = any(ch.site.kind == "pad" for ch in changes)
    summary = {"output": output, "target": t.name, "abi": t.abi, "state": opts.state,
               "sites": len(changes), "rewritten": sum(ch.old != ch.new for ch in changes),
               # the flag register is written by pad states only, never at -pg sites
               "flag_reg": st.flag if pads else None,
               "flag_reg_name": E.reg_name(t.abi, st.flag) if pads else None,
               "trampoline": (_named(st.tramp_name, st.tramp)
                              if st.tramp is not None and pads else None),
               "redirect": (_named(st.target_name, st.target)
                            if opts.state == "redirect" else None),
               "written": True}
    changed = [{"function": ch.site.func, "address": ch.site.addr, "kind": ch.site.kind,
                "from": ch.old_state, "to": ch.new_state, "words": list(ch.new),
                "asm": [_pretty(st, w, ch.site.addr + 4 * i) for i, w in enumerate(ch.new)]}
               for ch in changes]
    return Report("patch", [FileReport(path, "patched", [], {"changes": changed})], summary)
