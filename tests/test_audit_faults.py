"""`recordpatch audit`'s findings compared whole (kind, where, function, message) with
values from GNU binutils (objdump: which instruction is where, which function it is in,
which words call _mcount; as, ld, strip, objcopy to build the inputs), pyelftools (section
addresses, sizes, flags, symbols, table words), the reference recordmcount's own tables
and hand-derived encodings: never from audit itself.

Linked images are GNU ld's links of recorded kernel fixtures with their table words edited:
zeroed (the kernel's sorttable does that to discarded entries: skipped), pointing into a
non-executable section, duplicated, misaligned, with the microMIPS bit on a MIPS32 call, at
no section, straddling the end of .text, at an instruction that is no state of a site. Each
moved entry leaves its call without an entry: a "missing" finding at the call objdump
shows. Objects (REL and RELA) get the same faults in their tables and relocations; then
pads (PR99217, link order), file-level verdicts, the walk and summary, System.map, and the
state of each linked word one by one.
"""

import re
import shutil
import struct
import subprocess

import pytest

from conftest import FIXTURES, cross, gas, need_module, run_ours
from recordpatch.diag import WARNING, Finding
from recordpatch.passes import audit
from test_audit import link
from test_audit_names import objdump_labels, objdump_lines

INSN = re.compile(r"^([0-9a-f]+) <[^>]+> (\S+)(?:\s+(.*))?$")


def objdump_insns(path, target):
    """{(section, address): 'op args'} as objdump prints them (symbolic jal targets dropped);
    an object's addresses are section offsets."""
    got = {}
    for sec, line in objdump_lines(path, target, "--no-show-raw-insn"):
        m = INSN.match(line)
        if m:
            args = re.sub(r" <[^>]*>$", "", m[3] or "").strip()
            got[(sec, int(m[1], 16))] = f"{m[2]} {args}".strip()
    return got


def insns_by_address(path, target):
    return {a: i for (_, a), i in objdump_insns(path, target).items()}


def sections(path):
    elffile = need_module("elftools.elf.elffile")
    with open(path, "rb") as f:
        e = elffile.ELFFile(f)
        return {s.name: (s["sh_addr"], s["sh_size"], s["sh_flags"], s["sh_offset"], s["sh_type"])
                for s in e.iter_sections()}, e.little_endian


def symbol_value(path, name):
    elffile = need_module("elftools.elf.elffile")
    with open(path, "rb") as f:
        syms = elffile.ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)
        return syms[0]["st_value"] if syms else None


def linked_table(path, name="__mcount_loc"):
    """(words, file offset of the first) of a linked image's table section (pyelftools)."""
    elffile = need_module("elftools.elf.elffile")
    with open(path, "rb") as f:
        e = elffile.ELFFile(f)
        t = e.get_section_by_name(name)
        fmt = ("<" if e.little_endian else ">") + ("Q" if e.elfclass == 64 else "I")
        n = t["sh_size"] // struct.calcsize(fmt)
        return list(struct.unpack_from(fmt[0] + n * fmt[1], t.data())), t["sh_offset"]


def mcount_calls(exe, target="mipsel"):
    """Addresses of the `jal _mcount` objdump shows (the _mcount symbol from pyelftools)."""
    mcount = symbol_value(exe, "_mcount")
    return sorted(a for a, i in insns_by_address(exe, target).items() if i == f"jal {mcount:x}")


def in_fn(labels_by_addr, addr):
    name, off = labels_by_addr[addr]
    return (name, off), f" in {name}" + (f"+{off:#x}" if off else "")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("linked")
    objs = []
    for n in ("basic.o", "sections.o"):
        objs.append(tmp / n)
        shutil.copyfile(FIXTURES / "mipsel" / "kernel" / n, objs[-1])
    assert run_ours("record", *objs).returncode == 0
    exe = link("mipsel", objs, tmp / "vmlinux", [str(FIXTURES / "mipsel" / "kernel" / "mcount_def.o")])
    return exe


def test_every_bad_entry_of_a_linked_table(image, tmp_path):
    exe = tmp_path / "vmlinux"
    shutil.copyfile(image, exe)
    secs, little = sections(exe)
    end = "<" if little else ">"
    table, toff = linked_table(exe)
    n = len(table)
    buf = bytearray(exe.read_bytes())
    insns = insns_by_address(exe, "mipsel")
    by_addr = {a: lab for (sec, a), lab in objdump_labels(exe, "mipsel").items()}
    mcount = symbol_value(exe, "_mcount")
    calls = traced_calls(exe)
    assert len(mcount_calls(exe)) - len(calls) == 2       # in .entry.text and .noinstr.text
    assert sorted(table) == calls and n == 18      # what the recorder wrote: every call
    text_addr, text_size = secs[".text"][:2]
    data_name = next(k for k, (a, s, fl, _, ty) in secs.items()
                     if fl & 2 and not fl & 4 and ty == "SHT_PROGBITS" and s >= 4)   # SHF_ALLOC, not EXECINSTR
    data_addr = secs[data_name][0]
    plain = next(a for a in sorted(insns) if secs[".text"][0] <= a < text_addr + text_size
                 and a + 4 not in calls and a not in calls and a - 4 not in calls
                 and insns[a].split()[0] in ("addiu", "sw", "lw"))
    # Linux's mcount.S (DYNAMIC_FTRACE) puts _mcount at ftrace_caller; a jump there is
    # named for ftrace_caller, the code ftrace patches in
    jump_name = "ftrace_caller" if symbol_value(exe, "ftrace_caller") == mcount else "_mcount"
    last = text_addr + text_size - 4                 # .text's last word (objdump: a nop)
    other_jal = next(a for a in sorted(insns) if insns[a].startswith("jal ")
                     and insns[a] != f"jal {mcount:x}")
    target = int(insns[other_jal].split()[1], 16)
    edits = {0: 0, 1: data_addr, 3: table[2], 4: table[4] + 2, 5: table[5] | 1, 6: 0x10,
             7: text_addr + text_size - 2, 8: plain, 9: last, 10: other_jal}
    for slot, v in edits.items():
        struct.pack_into(end + "I", buf, toff + 4 * slot, v)
    # the call of entry 11 becomes `j _mcount` (opcode 2): a jump, no call, not a state
    struct.pack_into(end + "I", buf, secs[".text"][3] + table[11] - text_addr,
                     0x08000000 | (mcount & 0x0FFFFFFF) >> 2)
    exe.write_bytes(bytes(buf))

    def at(slot):
        return f"__mcount_loc+{4 * slot:#x}"

    def sec_of(a):
        return next((k, a - s[0]) for k, s in secs.items()
                    if s[2] & 2 and s[0] <= a < s[0] + s[1] and s[4] != "SHT_NOBITS")
    want = [
        Finding(WARNING, "not-executable", f"__mcount_loc entry ({at(1)}) points at "
                f"{data_addr:#x} in {data_name}, which is not an executable section",
                data_name, 0),
        Finding(WARNING, "duplicate", f"duplicate entry {table[2]:#x} ({at(3)}; also {at(2)})",
                *sec_of(table[2])),
        Finding(WARNING, "bad-target", f"entry {table[4] + 2:#x} is not 4-byte aligned",
                *sec_of(table[4] + 2)),
        Finding(WARNING, "bad-target", f"__mcount_loc entry ({at(5)}) points at "
                f"{table[5] | 1:#x}: a microMIPS entry that is not a nop pad", *sec_of(table[5])),
        Finding(WARNING, "bad-target", "entry 0x10 is not inside any section", "__mcount_loc",
                4 * 6),
        Finding(WARNING, "bad-target", f"entry {text_addr + text_size - 2:#x} is not inside "
                "any section", "__mcount_loc", 4 * 7),
    ]
    for slot, a, insn in ((8, plain, insns[plain]), (9, last, insns[last]),
                          (10, other_jal, f"jal {by_addr[target][0]}"),
                          (11, table[11], f"j {jump_name}")):
        fn, text = in_fn(by_addr, a)
        want.append(Finding(WARNING, "bad-target", f"__mcount_loc entry ({at(slot)}) points at "
                            f"{a:#x}: `{insn}`{text}, neither a call to _mcount, a pad, "
                            "nor a state ftrace writes", *sec_of(a), *fn))
    assert insns[last] == "nop" and by_addr[target][1] == 0
    # each moved entry's call has none now; but the entry with the microMIPS bit still
    # names its call's address, reported once (above)
    for slot in sorted(set(edits) - {5}):
        a = table[slot]
        fn, text = in_fn(by_addr, a)
        want.append(Finding(WARNING, "missing", f"call to _mcount at {a:#x}{text} has no "
                            "__mcount_loc entry", *sec_of(a), *fn))
    r = audit.audit_file(str(exe))
    assert r.status == "findings"
    assert sorted(r.findings) == sorted(want)
    assert r.data["entries"] == n and r.data["tables"] == {"__mcount_loc": n}
    good = n - len(edits) - 1                       # and entry 11, now at `j _mcount`
    assert r.data["states"] == {"jal _mcount": good}
    sections_hit = {}
    for a in [table[k] for k in range(n) if k not in edits] + [table[2], table[4], table[5],
                                                               data_addr, plain, last, other_jal]:
        s = sec_of(a)[0]
        sections_hit[s] = sections_hit.get(s, 0) + 1
    assert r.data["sections"] == sections_hit


def traced_calls(exe):
    """The `jal _mcount` outside .entry.text and .noinstr.text (recordmcount.c's
    is_mcounted_section_name has neither)."""
    secs, _ = sections(exe)
    return [a for a in mcount_calls(exe) if not any(secs[k][0] <= a < secs[k][0] + secs[k][1]
                                                    for k in (".entry.text", ".noinstr.text"))]


def test_stripped_image_with_its_table_section(image, tmp_path):
    """No symbol table, but the __mcount_loc section: the table is audited from it (every
    entry a `jal` after `move at,ra`), and with no _mcount symbol no call can be missing."""
    exe = tmp_path / "vmlinux"
    subprocess.run([cross("mipsel", "strip"), "-o", str(exe), str(image)], check=True)
    assert sections(exe)[0].get(".symtab") is None
    r = audit.audit_file(str(exe))
    n = len(traced_calls(image))
    assert (r.status, r.findings) == ("clean", [])
    assert r.data["entries"] == n and r.data["states"] == {"jal _mcount": n}


def test_calls_but_no_table(tmp_path):
    """Unrecorded objects linked: every traced call counted, in one finding; then with all
    but one call overwritten by `nop`, the singular."""
    objs = [FIXTURES / "mipsel" / "kernel" / n for n in ("basic.o", "sections.o")]
    exe = link("mipsel", objs, tmp_path / "vmlinux", [str(FIXTURES / "mipsel" / "kernel" / "mcount_def.o")])
    calls = traced_calls(exe)
    tail = " to _mcount but no __mcount_loc and no __start_mcount_loc/__stop_mcount_loc"
    r = audit.audit_file(str(exe))
    assert r.findings == [Finding(WARNING, "not-recorded", f"{len(calls)} calls{tail}")]
    secs, little = sections(exe)
    buf = bytearray(exe.read_bytes())
    for a in calls[1:]:
        sec = next(s for s in secs.values() if s[0] <= a < s[0] + s[1] and s[2] & 4)
        struct.pack_into("<I" if little else ">I", buf, sec[3] + a - sec[0], 0)
    exe.write_bytes(bytes(buf))
    r = audit.audit_file(str(exe))
    assert r.findings == [Finding(WARNING, "not-recorded", f"1 call{tail}")]


RANGES = ("__entry_text_start = .; *(.entry.text) __entry_text_end = .; "
          "__noinstr_text_start = .; *(.noinstr.text) __noinstr_text_end = .;")


@pytest.mark.parametrize("marked", [True, False], ids=["marked", "unmarked"])
def test_entry_and_noinstr_text_inside_text(image, tmp_path, marked):
    """Linux links .entry.text and .noinstr.text into .text between __entry_text_start/end
    and __noinstr_text_start/end (include/asm-generic/vmlinux.lds.h); recordmcount never
    records them, so their calls need no entry there. Without those symbols the same calls
    are .text calls with no entry: missing, each at the address objdump shows."""
    script = tmp_path / "kernel.lds"
    body = RANGES if marked else "*(.entry.text) *(.noinstr.text)"
    script.write_text(f"SECTIONS {{ .text 0x80100000 : {{ *(.text) {body} }} }}\n")
    objs = [image.parent / n for n in ("basic.o", "sections.o")]
    exe = link("mipsel", objs, tmp_path / "vmlinux",
               [str(FIXTURES / "mipsel" / "kernel" / "mcount_def.o")], ["-T", str(script)])
    secs, _ = sections(exe)
    assert ".entry.text" not in secs and ".noinstr.text" not in secs
    table = set(linked_table(exe)[0])
    labels = {a: lab for (_, a), lab in objdump_labels(exe, "mipsel").items()}
    unlisted = sorted(set(mcount_calls(exe)) - table)
    assert len(unlisted) == 2 and len(table) == 18
    r = audit.audit_file(str(exe))
    assert r.data["states"] == {"jal _mcount": 18}
    if marked:
        assert (r.status, r.findings) == ("clean", [])
        return
    want = []
    for a in unlisted:
        fn, text = in_fn(labels, a)
        want.append(Finding(WARNING, "missing", f"call to _mcount at {a:#x}{text} has no "
                            "__mcount_loc entry", ".text", a - secs[".text"][0], *fn))
    assert r.findings == want


# ---------------------------------------------------------------- relocatable objects
def table_slots(path, name="__mcount_loc"):
    """([(section name, value)] of each word of the table ``name`` of an object, resolved
    with pyelftools (REL: the addend is the word; RELA: r_addend); the word size)."""
    elffile = need_module("elftools.elf.elffile")
    with open(path, "rb") as f:
        e = elffile.ELFFile(f)
        t = e.get_section_by_name(name)
        rel = e.get_section_by_name(".rela" + name) or e.get_section_by_name(".rel" + name)
        word = 8 if e.elfclass == 64 else 4
        fmt = ("<" if e.little_endian else ">") + ("Q" if word == 8 else "I")
        symtab = e.get_section_by_name(".symtab")
        out = {}
        for r in rel.iter_relocations():
            sym = symtab.get_symbol(r["r_info_sym"])
            add = r["r_addend"] if r.is_RELA() else struct.unpack_from(fmt, t.data(), r["r_offset"])[0]
            out[r["r_offset"] // word] = (e.get_section(sym["st_shndx"]).name, sym["st_value"] + add)
        return [out[k] for k in range(t["sh_size"] // word)], word


@pytest.mark.parametrize("target", ["mipsel", "mips64el"])      # REL and RELA
def test_every_bad_entry_of_an_object_table(target, tmp_path):
    from test_audit import copy_entry, move_entry, point_into_data, recorded_tree, shrink
    obj = recorded_tree(tmp_path, target) / "basic.o"
    slots, w = table_slots(obj)
    n = len(slots)
    assert all(sec == ".text" for sec, _ in slots) and n > 8
    labels = objdump_labels(obj, target)
    insns = {off: i for (sec, off), i in objdump_insns(obj, target).items() if sec == ".text"}

    def fn_at(off):
        name, d = labels[(".text", off & ~3)]
        d += off & 3
        return (name, d), f" in {name}" + (f"+{d:#x}" if d else "")
    move_entry(obj, 1, 4)
    copy_entry(obj, 0, 2)
    data = point_into_data(obj, 3)
    move_entry(obj, 4, 2)
    move_entry(obj, 5, 0x100000)
    shrink(obj)
    o = [off for _, off in slots]
    fn, text = fn_at(o[1] + 4)
    want = [Finding(WARNING, "bad-target", f"__mcount_loc entry (__mcount_loc+{w:#x}) points at "
                    f"`{insns[o[1] + 4]}`{text}, not at a call to _mcount", ".text", o[1] + 4, *fn),
            Finding(WARNING, "duplicate", f"duplicate __mcount_loc entry (__mcount_loc+{2 * w:#x};"
                    " also __mcount_loc+0x0)", ".text", o[0]),
            Finding(WARNING, "not-executable", f"__mcount_loc entry (__mcount_loc+{3 * w:#x}) "
                    f"points into {data}, which is not an executable section", data, 0)]
    fn, text = fn_at(o[4] + 2)
    want.append(Finding(WARNING, "bad-target", f"__mcount_loc entry (__mcount_loc+{4 * w:#x}) "
                        f"points at `a misaligned address`{text}, not at a call to _mcount",
                        ".text", o[4] + 2, *fn))
    want.append(Finding(WARNING, "bad-target", "entry points outside its section "
                        f"(.text+{o[5] + 0x100000:#x})", "__mcount_loc", 5 * w))
    for k in (1, 2, 3, 4, 5, n - 1):
        fn, text = fn_at(o[k])
        want.append(Finding(WARNING, "missing", f"call to _mcount{text} has no __mcount_loc entry",
                            ".text", o[k], *fn))
    r = audit.audit_file(str(obj))
    assert r.findings == want
    assert r.data["entries"] == n - 1 and r.data["tables"] == {"__mcount_loc": n - 1}
    assert r.data["states"] == {"long-call lui": n - 6}       # slots 0 and 6 .. n-2
    assert r.data["sections"] == {".text": n - 3, data: 1}   # all but 3 (data), 5 (outside)
                                                             # and the dropped last one


@pytest.mark.parametrize("target", ["mipsel", "mips64el"])
def test_table_word_without_relocation(target, tmp_path):
    """The relocation section one entry short: the last word resolves to nothing, and its
    call has no entry."""
    from test_audit import edit, recorded_tree, table_slot
    obj = recorded_tree(tmp_path, target) / "basic.o"
    slots, w = table_slots(obj)
    elf, t, rel = table_slot(obj)
    so, fmt, shent = (20, "I", 40) if elf.bits == 32 else (32, "Q", 64)
    edit(obj, elf.shoff + rel.index * shent + so, fmt, lambda v: v - rel.entsize)
    n = len(slots)
    fn = objdump_labels(obj, target)[slots[-1]]
    r = audit.audit_file(str(obj))
    assert r.findings == [
        Finding(WARNING, "unresolved", "entry has no relocation", "__mcount_loc", (n - 1) * w),
        Finding(WARNING, "missing", f"call to _mcount in {fn[0]}" + (f"+{fn[1]:#x}" if fn[1] else "")
                + " has no __mcount_loc entry", *slots[-1], *fn)]
    assert r.data["entries"] == n


def test_unrecorded_objects_counted_like_the_reference(tmp_path):
    """No table: one finding with the number of calls the reference records in the same
    object; and with the one call the kernel cannot patch, its reason."""
    from conftest import recorded_sites, run_reference
    for rel, tail in (("mipsel/kernel/basic.o", ""),
                      ("shapes/gcc-mipsel-micromips-one.o",
                       "; 1 of them the kernel cannot patch (microMIPS `jal _mcount` (arch/mips/"
                       "kernel/ftrace.c writes MIPS32 words only; build without -mmicromips))")):
        obj, ref = tmp_path / "x.o", tmp_path / "ref.o"
        shutil.copyfile(FIXTURES / rel, obj)
        shutil.copyfile(FIXTURES / rel, ref)
        assert run_reference(ref).returncode == 0
        k = len(recorded_sites(ref))
        r = audit.audit_file(str(obj))
        assert r.findings == [Finding(WARNING, "not-recorded", f"{k} call{'s' * (k != 1)} to "
                                      f"_mcount but no __mcount_loc (not recorded){tail}")], rel


# ---------------------------------------------------------------- linked words, one by one
# Hand-derived encodings (MIPS32 manual): jal = 3 << 26 | target >> 2; `move at,ra` as GCC
# writes it: or at,ra,zero; lui v1 / addiu v1,v1 / jalr v1; b 1f = beq zero,zero,+4.
PC = 0x80100000
MOVE, NOP, LUI_V1, ADDIU_V1, JALR_V1 = 0x03E00825, 0, 0x3C030000, 0x24630000, 0x0060F809
OTHER = 0x27BDFFF8                              # addiu sp,sp,-8


def jal(target):
    return 0x0C000000 | (target & 0x0FFFFFFF) >> 2


def state(words, at, mcount=None, callers=(), r6=False):
    """audit's state of the word ``at`` (an index) of ``words`` placed at PC."""
    def word(o):
        return words[o // 4] if 0 <= o < 4 * len(words) and not o & 3 else None
    return audit._linked_state(word, 4 * at, PC + 4 * at, 32, mcount, set(callers), 8, r6)


MCOUNT, CALLER = 0x80200000, 0x80300000
LINKED_WORDS = [
    # (id, words, index, mcount known, state)
    ("jal-mcount", [MOVE, jal(MCOUNT), NOP], 1, True, "jal _mcount"),
    ("jal-elsewhere", [MOVE, jal(0x80400000), NOP], 1, True, ""),
    ("jal-caller", [MOVE, jal(CALLER), NOP], 1, True, "jal ftrace_caller"),
    ("jal-after-move-no-symbol", [MOVE, jal(0x80400000), NOP], 1, False, "jal _mcount"),
    ("jal-no-move-no-symbol", [OTHER, jal(0x80400000), NOP], 1, False, ""),
    ("long-call", [LUI_V1, ADDIU_V1, MOVE, JALR_V1, NOP], 0, False, "long-call lui"),
    ("lui-v1-then-other", [LUI_V1, OTHER, MOVE, JALR_V1, NOP], 0, False, ""),
    ("lui-v1-last-word", [OTHER, LUI_V1], 1, False, ""),
    ("address-load", [LUI_V1, ADDIU_V1, MOVE, OTHER, OTHER, OTHER], 0, False, ""),
    ("b1f-nop", [0x10000004, NOP, MOVE, JALR_V1, NOP], 0, False, "b 1f (disabled)"),
    ("b1f-addiu", [0x10000004, ADDIU_V1, MOVE, JALR_V1, NOP], 0, False, "b 1f (disabled)"),
    ("b1f-other", [0x10000004, OTHER], 0, False, ""),
    ("b1f-last-word", [OTHER, 0x10000004], 1, False, ""),
    ("nop-after-move", [MOVE, NOP, OTHER], 1, False, "nop (disabled)"),
    ("nop-in-delay-slot", [MOVE, jal(MCOUNT), NOP, OTHER], 2, True, ""),
    ("nop-after-long-call", [MOVE, JALR_V1, NOP, OTHER], 2, False, ""),
    ("two-nops", [OTHER, NOP, NOP, OTHER], 1, False, "nop pad"),
    ("one-nop", [OTHER, NOP, OTHER, OTHER], 1, False, ""),
    ("three-nops", [OTHER, NOP, NOP, NOP], 1, False, "nop pad"),
    ("pad-init", [0x3C018010, NOP, 0x24080000], 0, False, "pad init"),   # lui at; nop; li t0,0
    ("pad-redirect", [0x3C018010, 0x24210040, 0x00200008], 0, False, "pad redirect"),  # jr at
    ("other", [OTHER, OTHER], 0, False, ""),
]


@pytest.mark.parametrize("name,words,at,known,want", LINKED_WORDS, ids=[c[0] for c in LINKED_WORDS])
def test_linked_word_states(name, words, at, known, want):
    assert state(words, at, MCOUNT if known else None, [CALLER]) == want


def test_r6_redirect_pad_needs_the_r6_jr():
    """R6 removed SPECIAL/JR (funct 8); its `jr at` is `jalr zero,at` (MIPS32 R6 manual)."""
    pre_r6, r6_jr = 0x00200008, 0x00200009
    for jr, r6, want in ((pre_r6, False, "pad redirect"), (pre_r6, True, ""),
                         (r6_jr, True, "pad redirect"), (r6_jr, False, "pad redirect")):
        assert state([0x3C018010, 0x24210040, jr], 0, r6=r6) == want, (hex(jr), r6)


# ---------------------------------------------------------------- System.map
def test_system_map_read_as_nm_writes_it(tmp_path):
    """`nm -n` lines (binutils prints 32-bit MIPS addresses sign-extended): T/t/W/i are
    functions, other defined types objects; A/a (absolute) and U/w/v (undefined) are left
    out; an odd (microMIPS) address keeps its bit; blank lines are skipped; bytes that are no
    UTF-8 are replaced, not fatal."""
    m = tmp_path / "System.map"
    m.write_bytes(b"ffffffff80100000 T _text\n\nffffffff80100010 t local_fn\n"
                  b"ffffffff80100020 W weak_fn\nffffffff80100030 i ifunc\n"
                  b"ffffffff80100041 T mm_fn\nffffffff80200000 D some_data\n"
                  b"ffffffff80200010 b bss_obj\n0000000000000010 A abs_sym\n"
                  b"0000000000000020 a local_abs\n0000000000000000 w weak_undef\n"
                  b"0000000000000000 v weak_obj\n0000000000000000 U undef\n"
                  b"ffffffff80100050 T bad\xffname\n")
    F, O = 2, 1                                             # STT_FUNC, STT_OBJECT (gABI)
    got = audit.read_system_map(str(m), 32)
    assert got == [("_text", 0x80100000, F, 1), ("local_fn", 0x80100010, F, 1),
                   ("weak_fn", 0x80100020, F, 1), ("ifunc", 0x80100030, F, 1),
                   ("mm_fn", 0x80100041, F, 1), ("some_data", 0x80200000, O, 1),
                   ("bss_obj", 0x80200010, O, 1), ("bad\ufffdname", 0x80100050, F, 1)]
    assert audit.read_system_map(str(m), 64)[0].value == 0xffffffff80100000


def test_system_map_errors(tmp_path):
    from recordpatch.errors import RecordpatchError
    m = tmp_path / "System.map"
    long = "ffffffff80100000 T " + "x" * 80
    m.write_text("ffffffff80100000 T ok\n\nffffffff80100000\n")
    with pytest.raises(RecordpatchError) as e:
        audit.read_system_map(str(m), 32)
    assert str(e.value) == f"{m}:3: not a System.map line (ADDRESS TYPE NAME): 'ffffffff80100000'"
    m.write_text(f"zz T ok\n{long}\n")
    with pytest.raises(RecordpatchError) as e:
        audit.read_system_map(str(m), 32)
    assert str(e.value) == f"{m}:1: not a System.map line (ADDRESS TYPE NAME): 'zz T ok'"
    m.write_text(f"{long}\nnothex {long}\n")
    with pytest.raises(RecordpatchError) as e:
        audit.read_system_map(str(m), 32)
    assert str(e.value) == f"{m}:2: not a System.map line (ADDRESS TYPE NAME): {('nothex ' + long)[:60]!r}"
    m.write_text("0000000000000010 A abs_sym\n0000000000000000 w weak\n")
    with pytest.raises(RecordpatchError) as e:
        audit.read_system_map(str(m), 32)
    assert str(e.value) == f"{m}: no symbols in this System.map"


# ---------------------------------------------------------------- patchable entries
GCC = "GCC: (Debian 12.2.0-14) 12.2.0"


def pfe_pads(path):
    """[(section, offset, function)] of each __patchable_function_entries word: the pad,
    and the function that starts 3 nops after it (GCC PR99217's shape; pyelftools)."""
    elffile = need_module("elftools.elf.elffile")
    with open(path, "rb") as f:
        e = elffile.ELFFile(f)
        funcs = {(e.get_section(s["st_shndx"]).name, s["st_value"]): s.name
                 for s in e.get_section_by_name(".symtab").iter_symbols()
                 if s["st_info"]["type"] == "STT_FUNC"}
    return [(sec, off, funcs[(sec, off + 12)])
            for sec, off in table_slots(path, "__patchable_function_entries")[0]]


@pytest.mark.parametrize("flavour", ["pfe3", "pfe3-fs"])
def test_pr99217_findings_at_each_pad(flavour, tmp_path):
    """GCC 12's 3-nop pads all before the entry: one defect finding per pad, at the pad, in
    the function after it; with -ffunction-sections also GCC's table linked to one section
    (SHF_LINK_ORDER). A finished module (ld -r with .gnu.linkonce.this_module, as
    scripts/Makefile.modfinal links it) keeps the defect but has no link-order finding."""
    src = FIXTURES / "mipsel" / flavour / "patchable.o"
    pads = pfe_pads(src)
    pr = [Finding(WARNING, "defect", f"all 3 nops of {fn}'s pad in {sec} stand before its "
                  "entry point, so callers never run them (GCC PR99217; `recordpatch record "
                  f"--repair` moves the entry) [{GCC}]", sec, off, fn) for sec, off, fn in pads]
    r = audit.audit_file(str(src))
    assert r.data["tables"] == {"__patchable_function_entries": len(pads)} and len(pads) == 6
    assert r.data["states"] == {"3-nop pad": 6}
    assert [f for f in r.findings if "PR99217" in f.message] == pr
    order = [f for f in r.findings if "PR99217" not in f.message]
    ids = [d["id"] for d in r.data["defects"]]
    if flavour == "pfe3":
        assert order == [] and ids == ["PR99217"]
        return
    assert ids == ["PR99217", "SHF_LINK_ORDER"]
    linked = r.data["defects"][1]["functions"]
    assert [(f.kind, f.function) for f in order] == [("defect", fn) for fn in linked]
    assert all(fn in f.message and f.section for f, fn in zip(order, linked))
    mod = gas(tmp_path / "this_module.o", '\t.section .gnu.linkonce.this_module,"aw"\n\t.space 64\n')
    ko = tmp_path / "m.ko"
    subprocess.run([cross("mipsel", "ld"), "-r", "-o", str(ko), str(src), str(mod)], check=True)
    r = audit.audit_file(str(ko))
    assert [d["id"] for d in r.data["defects"]] == ["PR99217", "SHF_LINK_ORDER"]
    assert [f.kind for f in r.findings] == ["defect"] * 6 and all("PR99217" in f.message
                                                                  for f in r.findings)


# ---------------------------------------------------------------- an instruction in a message
J_TARGET = 0x80200000                           # jal/j: (pc + 4) & 0xf0000000 | imm26 << 2
INSN_TEXTS = [
    # (word, pc, names, text): targets by hand; names only where a jump goes there
    (jal(J_TARGET), PC, {J_TARGET: "_mcount"}, "jal _mcount"),
    (jal(J_TARGET), PC, {0x80300000: "other"}, "jal 0x80200000"),
    (jal(J_TARGET), PC, None, "jal 0x80200000"),
    (0x08000000 | (J_TARGET & 0x0FFFFFFF) >> 2, PC, {J_TARGET: "tgt"}, "j tgt"),
    (0x10000003, PC, {PC + 16: "lbl"}, "b lbl"),                 # beq zero,zero,+3 words
    (0x10000003, PC, None, "b 0x80100010"),
    (0x0C000000, 0, None, "jal (relocated)"),                    # an object's unrelocated jal
    (0x0C000000, 0, {0: "sym"}, "jal sym"),
    (0x0C000000, 4, None, "jal 0x0"),
    (OTHER, PC, {29: "sp_named"}, "addiu sp,sp,-8"),             # names are jump targets only
    (0xFC000000, PC, None, ".word 0xfc000000"),                  # opcode 63: nothing MIPS32
]


@pytest.mark.parametrize("w,pc,names,text", INSN_TEXTS, ids=[c[3] for c in INSN_TEXTS])
def test_instruction_as_a_finding_names_it(w, pc, names, text):
    from recordpatch.arch.encode import Target
    assert audit.insn_text(w, pc, Target("o32", True, False), names) == text


def test_pr99217_in_a_linked_image_with_micromips_pads(tmp_path):
    """testdata/src/pfe_isa.c linked: MIPS and microMIPS functions, every pad (GCC 12) before
    its function. Each table word (pyelftools; the ISA bit marks a microMIPS pad) has no
    function at it and the next function symbol right after its 3 nops: one PR99217
    finding per pad, whichever ISA, as the object's own audit finds."""
    elffile = need_module("elftools.elf.elffile")
    obj = tmp_path / "pfe_isa.o"
    shutil.copyfile(FIXTURES / "mipsel" / "pfe-mm" / "pfe_isa.o", obj)
    exe = link("mipsel", [obj], tmp_path / "pfe_isa")
    with open(exe, "rb") as f:
        e = elffile.ELFFile(f)
        t = e.get_section_by_name("__patchable_function_entries")
        entries = struct.unpack(f"<{t['sh_size'] // 4}I", t.data())
        text = e.get_section_by_name(".text")["sh_addr"]
        funcs = sorted((s["st_value"] & ~1, s.name) for s in e.get_section_by_name(".symtab")
                       .iter_symbols() if s["st_info"]["type"] == "STT_FUNC")
    want = []
    for a in entries:
        pad = a & ~1
        assert pad not in dict(funcs)
        fn = next(n for v, n in funcs if v > pad)
        want.append(Finding(WARNING, "defect", f"all 3 nops of {fn}'s pad stand before its "
                            "entry point, so callers never run them (GCC PR99217; `recordpatch "
                            f"record --repair` moves the entry) [{GCC}]", ".text", pad - text,
                            fn))
    r = audit.audit_file(str(exe))
    assert r.findings == want and len(want) == 3
    assert r.data["defects"] == [{"id": "PR99217", "compiler": GCC,
                                  "functions": [f.function for f in want]}]
    micro = sum(a & 1 for a in entries)
    assert r.data["states"] == {"3-nop pad": 3 - micro, "nop pad (microMIPS)": micro} and micro


@pytest.mark.parametrize("target", ["mipsel", "mipsr6"])
def test_patched_pads_keep_their_pr99217(target, tmp_path):
    """GCC 12's pads in a linked image, patched into the design's states by hand (lui at;
    jalr at,at / nop; li t0,1 / 0: 3 words; the redirect lui at; addiu at,at; jr at; nop: 4
    words): each pad is still before its function, which starts right after the pad's words
    (pyelftools), so each keeps its PR99217 finding. R6 removed SPECIAL/JR: there the
    redirect's `jr at` is `jalr zero,at`, and the pre-R6 word is no state."""
    elffile = need_module("elftools.elf.elffile")
    r6 = target == "mipsr6"
    lui_at, li_t0 = 0x3C018011, 0x24080000
    jr_at, old_jr = (0x00200009, 0x00200008) if r6 else (0x00200008, None)
    images = {}
    for flavour, pads in (("pfe3", [(lui_at, 0x00200809, li_t0 | 1), (lui_at, 0, li_t0)]),
                          ("pfe4", [(lui_at, 0x24210040, jr_at, 0)]
                           + ([(lui_at, 0x24210040, old_jr, 0)] if r6 else []))):
        obj = tmp_path / f"{flavour}.o"
        shutil.copyfile(FIXTURES / target / flavour / "patchable.o", obj)
        exe = link(target, [obj], tmp_path / flavour)
        with open(exe, "rb") as f:
            e = elffile.ELFFile(f)
            end = "<" if e.little_endian else ">"
            t = e.get_section_by_name("__patchable_function_entries")
            entries = struct.unpack(f"{end}{t['sh_size'] // 4}I", t.data())
            text = e.get_section_by_name(".text")
            funcs = {s["st_value"]: s.name for s in e.get_section_by_name(".symtab").iter_symbols()
                     if s["st_info"]["type"] == "STT_FUNC"}
        buf = bytearray(exe.read_bytes())
        for a, words in zip(entries, pads):
            struct.pack_into(f"{end}{len(words)}I", buf, text["sh_offset"] + a - text["sh_addr"],
                             *words)
        exe.write_bytes(bytes(buf))
        images[flavour] = (exe, entries, funcs, text["sh_addr"])
    exe, entries, funcs, base = images["pfe3"]
    r = audit.audit_file(str(exe))
    assert r.data["states"] == {"pad call": 1, "pad init": 1, "3-nop pad": 4}
    assert [(f.kind, f.section, f.offset, f.function) for f in r.findings] == [
        ("defect", ".text", a - base, funcs[a + 12]) for a in entries]
    exe, entries, funcs, base = images["pfe4"]
    r = audit.audit_file(str(exe))
    n_old = 1 if r6 else 0
    assert r.data["states"] == {"pad redirect": 1, "4-nop pad": 5 - n_old}
    pr = [(f.kind, f.offset, f.function) for f in r.findings if f.kind == "defect"]
    assert pr == [("defect", a - base, funcs[a + 16]) for k, a in enumerate(entries)
                  if k != 1 or not r6]
    bad = [f for f in r.findings if f.kind != "defect"]
    assert [(f.kind, f.offset) for f in bad] == ([("bad-target", entries[1] - base)] if r6 else [])


# ---------------------------------------------------------------- files, walks, the summary
def elf_header_field(path, off32, off64, fmt, value):
    """Rewrite one ELF header field (gABI "ELF Header": e_type at 16 in both classes)."""
    buf = bytearray(path.read_bytes())
    end = "<" if buf[5] == 1 else ">"
    struct.pack_into(end + fmt, buf, off32 if buf[4] == 1 else off64, value)
    path.write_bytes(bytes(buf))


def test_file_level_verdicts(tmp_path):
    """What each file is, before any table is read: ELF class/endianness/type from readelf's
    reading of the same bytes; a host (x86-64, e_machine 62) object and a non-ELF file are
    errors when named and skipped in a walk; an ELF of a type no kernel file has is named."""
    from recordpatch.diag import ERROR
    from recordpatch.passes.audit import audit_file
    from recordpatch.results import FileReport
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"not an object")
    host = tmp_path / "host.o"
    (tmp_path / "h.c").write_text("int f(void) { return 1; }\n")
    subprocess.run(["gcc", "-c", "-o", str(host), str(tmp_path / "h.c")], check=True)
    assert audit_file(str(junk), walked=True) == FileReport(str(junk), "skipped", [],
                                                            {"reason": "not an ELF file"})
    assert audit_file(str(host), walked=True) == FileReport(str(host), "skipped", [],
                                                            {"reason": "not MIPS (e_machine 62)"})

    def error(path, message):
        return FileReport(str(path), "error", [Finding(ERROR, "error", message)], {"error": message})
    assert audit_file(str(junk)) == error(junk, "not an ELF file")
    assert audit_file(str(host)) == error(host, "wrong machine: e_machine 62, expected EM_MIPS (8)")
    for e_type, name in ((4, "ET_CORE"), (0xFE01, "65025")):
        odd = tmp_path / f"type{e_type}.o"
        shutil.copyfile(FIXTURES / "mips" / "kernel" / "basic.o", odd)
        elf_header_field(odd, 16, 16, "H", e_type)
        assert audit_file(str(odd)) == error(odd, f"{name} file: expected an object, a module "
                                                  "or a kernel image")
    for rel, elf_type, endian, abi in (("mips/kernel/basic.o", "ET_REL", "big", "o32"),
                                       ("mips64el/kernel/basic.o", "ET_REL", "little", "n64"),
                                       ("stripped/mipsel/vmlinux", "ET_EXEC", "little", "o32")):
        d = audit_file(str(FIXTURES / rel)).data
        assert (d["elf_type"], d["endian"], d["abi"]) == (elf_type, endian, abi), rel


def test_unexpected_failures_are_one_line(tmp_path, monkeypatch):
    """An exhausted memory or a bug while reading a file: that file's error, in one line."""
    from recordpatch.elf import reader
    from recordpatch.passes.audit import audit_file
    obj = FIXTURES / "mips" / "kernel" / "basic.o"
    for exc, message in ((MemoryError(), "out of memory reading this file"),
                         (ValueError("boom"), "internal error: ValueError: boom")):
        def fail(*a, exc=exc, **k):
            raise exc
        monkeypatch.setattr(reader, "ElfFile", fail)
        r = audit_file(str(obj))
        assert (r.path, r.status, r.data) == (str(obj), "error", {"error": message})


def test_walk_progress_and_summary(tmp_path):
    """A directory walk takes objects, modules (compressed too) and kernel images by name,
    nothing else; progress is called (done, total, path) after each file, with -j too; a
    missing path is an error; the summary counts by status."""
    from recordpatch.errors import UsageError
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    kernel = FIXTURES / "mips" / "kernel" / "basic.o"
    for name in ("a.o", "b.ko", "c.ko.xz", "d.ko.zst", "e.ko.gz", "vmlinux", "vmlinux-6.1.0",
                 "vmlinux.o", "sub/f.o", "notes.txt", "vmlinuz", "x.o.cmd", "Makefile"):
        (tree / name).write_bytes(b"junk")
    shutil.copyfile(kernel, tree / "a.o")
    picked = ["a.o", "b.ko", "c.ko.xz", "d.ko.zst", "e.ko.gz", "sub/f.o", "vmlinux",
              "vmlinux-6.1.0", "vmlinux.o"]
    assert audit.collect([str(tree)]) == ([(str(tree / p), True) for p in picked], [])
    assert audit.collect([str(tree / "notes.txt"), str(tree / "nope")]) == (
        [(str(tree / "notes.txt"), False)], [str(tree / "nope")])
    with pytest.raises(UsageError) as e:
        audit.audit([str(tree)], jobs=0)
    assert str(e.value) == "-j needs a positive number"
    for jobs in (1, 2):
        calls = []
        rep = audit.audit([str(tree), str(tree / "nope")], jobs=jobs,
                          progress=lambda *a: calls.append(a))
        assert calls == [(k + 1, len(picked), str(tree / p)) for k, p in enumerate(picked)]
        statuses = [r.status for r in rep.files]
        assert statuses == ["findings"] + ["skipped"] * 8 + ["error"]
        assert rep.files[-1].data == {"error": "cannot open: No such file or directory"}
        assert rep.summary == {"files": 10, "clean": 0, "findings": 1, "errors": 1, "skipped": 8,
                               "entries": 0, "finding_count": 1}
    recorded = tmp_path / "r.o"
    shutil.copyfile(kernel, recorded)
    assert run_ours("record", recorded).returncode == 0
    rep = audit.audit([str(recorded), str(tree / "a.o")])
    n = len(table_slots(recorded)[0])
    assert rep.summary == {"files": 2, "clean": 1, "findings": 1, "errors": 0, "skipped": 0,
                           "entries": n, "finding_count": 1}


def test_calls_the_reference_drops(tmp_path):
    """recordmcount's own table of testdata/src/fsections.c (n64, one section per function)
    lacks a call whose offset is 4 more than the last relocation of the section before (its
    +4 filter for `lui %hi/%lo` pairs is not reset per section): each call that GNU as
    relocated against _mcount (R_MIPS_26, pyelftools) and the reference left out is missing,
    with that explanation, in the function objdump names."""
    from conftest import recorded_sites, run_reference
    elffile = need_module("elftools.elf.elffile")
    ref = tmp_path / "fsections.o"
    shutil.copyfile(FIXTURES / "mips64" / "fsections" / "fsections.o", ref)
    calls = set()
    with open(ref, "rb") as f:
        e = elffile.ELFFile(f)
        symtab = e.get_section_by_name(".symtab")
        for s in e.iter_sections():
            if s["sh_type"] == "SHT_RELA" and e.get_section(s["sh_info"]).name.startswith(".text"):
                calls |= {(e.get_section(s["sh_info"]).name, r["r_offset"])
                          for r in s.iter_relocations() if r["r_info_type"] == 4
                          and symtab.get_symbol(r["r_info_sym"]).name == "_mcount"}
    assert run_reference(ref).returncode == 0
    dropped = sorted(calls - {(sec, off) for _, sec, off in recorded_sites(ref)})
    assert dropped
    labels = objdump_labels(ref, "mips64")
    want = []
    for sec, off in dropped:
        name, d = labels[(sec, off)]
        want.append(Finding(WARNING, "missing", f"call to _mcount in {name}" + (f"+{d:#x}" if d else "")
                            + " has no __mcount_loc entry (recordmcount drops it, in Linux 6.1 and "
                            "6.12 alike: its +4 filter carries over from the previous section)",
                            sec, off, name, d))
    assert audit.audit_file(str(ref)).findings == want


@pytest.mark.parametrize("target", ["mips", "mips64el"])
def test_more_bad_entries_of_an_object_table(target, tmp_path):
    """Kernel flavour (`jal _mcount`): an entry at another `jal` (unrelocated in an object),
    at .text's last word, 2 bytes before .text's end; a symbol whose section index is the
    section count (a corrupt symbol table); and a table whose size is no multiple of a word
    (one unresolved finding about the table, and its cut last word lost)."""
    from test_audit import edit, move_entry, recorded_tree, table_slot
    obj = recorded_tree(tmp_path, target, "kernel") / "basic.o"
    slots, w = table_slots(obj)
    n = len(slots)
    o = [off for _, off in slots]
    insns = {off: i for (sec, off), i in objdump_insns(obj, target).items() if sec == ".text"}
    labels = objdump_labels(obj, target)
    secs, _ = sections(obj)
    size = secs[".text"][1]
    other_jal = next(a for a in sorted(insns) if insns[a].startswith("jal") and a not in o)
    assert insns[size - 4] == "nop"
    move_entry(obj, 1, other_jal - o[1])
    move_entry(obj, 2, size - 4 - o[2])
    move_entry(obj, 3, size - 2 - o[3])
    elf, t, rel = table_slot(obj)
    # entry 4 relocated against symbol 1 (the FILE symbol), whose st_shndx becomes e_shnum
    elffile = need_module("elftools.elf.elffile")
    with open(obj, "rb") as f:
        st = elffile.ELFFile(f).get_section_by_name(".symtab")
        sym_at = st["sh_offset"] + st["sh_entsize"]
    edit(obj, sym_at + (14 if elf.bits == 32 else 6), "H", lambda v: elf.shnum)
    k = next(i for i, r in enumerate(elf.relocations(rel)) if r.offset == 4 * w)
    at = rel.offset + k * rel.entsize
    if elf.bits == 32:
        edit(obj, at + 4, "I", lambda v: (1 << 8) | (v & 0xFF))
    else:              # n64 r_info: r_sym (32 bits), r_ssym, r_type3, r_type2, r_type
        edit(obj, at + 8, "I", lambda v: 1)
    edit(obj, elf.shoff + t.index * (40 if elf.bits == 32 else 64) + (20 if elf.bits == 32 else 32),
         "I" if elf.bits == 32 else "Q", lambda v: v - 2)

    def fn_at(off):
        name, d = labels[(".text", off & ~3)]
        d += off & 3
        return (name, d), f" in {name}" + (f"+{d:#x}" if d else "")
    r = audit.audit_file(str(obj))
    want = [Finding(WARNING, "unresolved", f"__mcount_loc size {n * w - 2} is not a multiple of {w}",
                    "__mcount_loc", None)]
    for slot, off, text in ((1, other_jal, "jal (relocated)"), (2, size - 4, "nop")):
        fn, where = fn_at(off)
        want.append(Finding(WARNING, "bad-target", f"__mcount_loc entry (__mcount_loc+{slot * w:#x}) "
                            f"points at `{text}`{where}, not at a call to _mcount", ".text", off, *fn))
    want.append(Finding(WARNING, "bad-target", f"entry points outside its section (.text+{size - 2:#x})",
                        "__mcount_loc", 3 * w))
    assert r.findings[:4] == want
    assert r.findings[4].kind == "bad-target" and r.findings[4].section == "__mcount_loc"
    assert r.findings[4].message.startswith(f"entry points outside its section ({elf.shnum}+0x")
    missing = [(f.kind, f.section, f.offset) for f in r.findings[5:]]
    assert missing == [("missing", ".text", o[k]) for k in (1, 2, 3, 4, n - 1)]
    assert r.data["entries"] == n - 1
    assert r.data["states"] == {"jal _mcount": n - 5}


def test_pads_listed_in_mcount_loc(tmp_path):
    """`record --repair --table mcount_loc`: the pads are listed in __mcount_loc too (what a
    kernel built with -fpatchable-function-entry holds between __start_mcount_loc and
    __stop_mcount_loc); each counted once per table. (microMIPS pads cannot be repaired,
    so no such table lists them.)"""
    for rel in ("mipsel/pfe3/patchable.o", "mipsel/pfe3-1/patchable.o"):
        obj = tmp_path / rel.replace("/", "_")
        shutil.copyfile(FIXTURES / rel, obj)
        assert run_ours("record", "--repair", "--table", "mcount_loc", obj).returncode == 0
        ends = [off for _, off in table_slots(obj, "__patchable_function_entries")[0]]
        n, micro = len(ends), sum(off & 1 for off in ends)
        r = audit.audit_file(str(obj))
        want = {"3-nop pad": n - micro, "3-nop pad (__mcount_loc)": n - micro}
        assert (r.status, r.data["states"]) == ("clean", want), rel
        assert r.data["tables"] == {"__mcount_loc": n, "__patchable_function_entries": n}
        assert n == 6 and micro == 0


# ---------------------------------------------------------------- more linked images
def test_jumps_named_in_an_image_without_ftrace_caller(image, tmp_path):
    """_mcount alone (no ftrace_caller, as the -pg mcount of a kernel without dynamic
    ftrace): a `j _mcount` at an entry is named for _mcount; a `jal` to an address no
    symbol has is named by its address; a word no MIPS32 instruction has, as a `.word`
    (hand-derived encodings)."""
    mc = gas(tmp_path / "mcount.o", "\t.text\n\t.globl _mcount\n\t.type _mcount,@function\n"
                                 "_mcount:\n\tjr $31\n\tnop\n")
    objs = [image.parent / n for n in ("basic.o", "sections.o")]
    exe = link("mipsel", objs, tmp_path / "vmlinux", [str(mc)])
    secs, _ = sections(exe)
    table, _ = linked_table(exe)
    mcount = symbol_value(exe, "_mcount")
    assert symbol_value(exe, "ftrace_caller") is None
    by_addr = {a: lab for (_, a), lab in objdump_labels(exe, "mipsel").items()}
    nowhere = table[0] + 8                             # inside a function: no symbol there
    assert by_addr[nowhere][1] != 0
    buf = bytearray(exe.read_bytes())
    text = secs[".text"]
    struct.pack_into("<I", buf, text[3] + table[1] - text[0], 0x08000000 | (mcount & 0x0FFFFFFF) >> 2)
    struct.pack_into("<I", buf, text[3] + table[2] - text[0], jal(nowhere))
    struct.pack_into("<I", buf, text[3] + table[3] - text[0], 0xFC000000)   # opcode 63: none
    exe.write_bytes(bytes(buf))
    r = audit.audit_file(str(exe))
    got = {f.offset + text[0]: f.message for f in r.findings if f.kind == "bad-target"}
    assert "`j _mcount`" in got[table[1]] and f"`jal {nowhere:#x}`" in got[table[2]]
    assert "`.word 0xfc000000`" in got[table[3]]
    assert len(r.findings) == 3


def test_micromips_pads_and_pads_that_are_not_pr99217(tmp_path):
    """Linked: every pad of testdata/src/patchable.c in microMIPS (-mmicromips), all before
    their functions (6 PR99217 findings); the 3,1 pads (2 nops before the entry, one after:
    GCC's -fpatchable-function-entry=3,1: one nop before the entry, pyelftools puts each
    function 4 bytes after its table word) are no PR99217; without a .comment the finding names no compiler."""
    mm = tmp_path / "mm.o"
    shutil.copyfile(FIXTURES / "mipsel" / "pfe-mmall" / "patchable.o", mm)
    r = audit.audit_file(str(link("mipsel", [mm], tmp_path / "mm")))
    assert r.data["states"] == {"nop pad (microMIPS)": 6}
    assert [f.kind for f in r.findings] == ["defect"] * 6
    one = tmp_path / "one.o"
    shutil.copyfile(FIXTURES / "mipsel" / "pfe3" / "patchable.o", one)
    assert run_ours("record", "--repair", one).returncode == 0
    exe = link("mipsel", [one], tmp_path / "one")
    (a, *_), toff = linked_table(exe, "__patchable_function_entries")
    buf = bytearray(exe.read_bytes())
    assert symbol_at(exe, a) and not symbol_at(exe, a + 4) and not symbol_at(exe, a + 12)
    struct.pack_into("<I", buf, toff, a + 4)          # the entry moved into its pad
    exe.write_bytes(bytes(buf))
    r = audit.audit_file(str(exe))
    assert (r.status, r.findings, r.data["defects"]) == ("clean", [], [])
    assert r.data["states"] == {"2-nop pad": 1, "3-nop pad": 5}
    bare = tmp_path / "bare.o"
    subprocess.run([cross("mipsel", "objcopy"), "-R", ".comment",
                    str(FIXTURES / "mipsel" / "pfe3" / "patchable.o"), str(bare)], check=True)
    r = audit.audit_file(str(link("mipsel", [bare], tmp_path / "bare")))
    assert len(r.findings) == 6 and all(f.message.endswith("moves the entry)") for f in r.findings)


def symbol_at(path, value):
    elffile = need_module("elftools.elf.elffile")
    with open(path, "rb") as f:
        return [s.name for s in elffile.ELFFile(f).get_section_by_name(".symtab").iter_symbols()
                if s["st_value"] == value and s["st_info"]["type"] == "STT_FUNC"]


def test_long_call_with_its_jalr_four_words_on():
    """GCC's long call with -mmcount-ra-address and one more word: the jalr v1 is the 4th
    word after the addiu, the last the window takes."""
    words = [LUI_V1, ADDIU_V1, MOVE, OTHER, OTHER, JALR_V1, NOP]
    assert state(words, 0) == "long-call lui"
    assert state(words[:2] + [OTHER] + words[2:], 0) == ""


@pytest.mark.parametrize("case", ["at-start", "at-end", "start-only"])
def test_entry_range_edges(image, tmp_path, case):
    """A call exactly at __entry_text_start is in the range; one exactly at
    __entry_text_end is not; a range with no end symbol is no range. The call is
    handle_syscall's (objdump), its entry removed; a call later in .text whose entry is
    also removed is reported in every case."""
    labels = {a: lab for (_, a), lab in objdump_labels(image, "mipsel").items()}
    sys_call = next(a for a, (n, d) in labels.items() if n == "handle_syscall"
                    and insns_by_address(image, "mipsel")[a].startswith("jal"))
    d = sys_call - next(a for a, (n, off) in labels.items() if n == "handle_syscall" and off == 0)
    syms = {"at-start": f"__entry_text_start = handle_syscall + {d}; "
                        f"__entry_text_end = handle_syscall + {d + 4};",
            "at-end": f"__entry_text_start = handle_syscall; __entry_text_end = handle_syscall + {d};",
            "start-only": f"__entry_text_start = handle_syscall + {d};"}[case]
    script = tmp_path / "kernel.lds"
    script.write_text("SECTIONS { .text 0x80100000 : { *(.entry.text) *(.text) "
                      f"{syms} }} }}\n")
    objs = [image.parent / n for n in ("basic.o", "sections.o")]
    exe = link("mipsel", objs, tmp_path / "vmlinux",
               [str(FIXTURES / "mipsel" / "kernel" / "mcount_def.o")], ["-T", str(script)])
    secs, _ = sections(exe)
    table, toff = linked_table(exe)
    buf = bytearray(exe.read_bytes())
    sys_call = symbol_value(exe, "handle_syscall") + d
    later = max(a for a in table if a < secs[".text"][0] + secs[".text"][1])
    assert sys_call not in table and later > sys_call
    struct.pack_into("<I", buf, toff + 4 * table.index(later), 0)
    exe.write_bytes(bytes(buf))
    missing = sorted(f.offset + secs[".text"][0] for f in audit.audit_file(str(exe)).findings
                     if f.kind == "missing")
    assert missing == ([later] if case == "at-start" else [sys_call, later])


def test_entry_zero_outside_its_section(tmp_path):
    """The first entry pointing past its section: the finding is at the table's offset 0."""
    from test_audit import move_entry, recorded_tree
    obj = recorded_tree(tmp_path, "mipsel", "kernel") / "basic.o"
    move_entry(obj, 0, 0x100000)
    f = audit.audit_file(str(obj)).findings[0]
    assert (f.kind, f.section, f.offset) == ("bad-target", "__mcount_loc", 0)


def test_trampoline_findings_are_warnings(tmp_path):
    """An object defining ftrace_regs_caller at 4-byte alignment: `check`'s diagnosis as an
    audit warning; an object that only references it has no trampoline to check."""
    from recordpatch.diag import WARNING as W
    tramp = gas(tmp_path / "tramp.o", "\t.text\n\tnop\n\t.globl ftrace_regs_caller\n"
                                   "ftrace_regs_caller:\n\tjr $31\n\tnop\n")
    r = audit.audit_file(str(tramp))
    assert {(f.level, f.kind) for f in r.findings} == {(W, "trampoline")} and r.data["trampoline"]
    user = gas(tmp_path / "user.o", "\t.text\n\tla $2, ftrace_regs_caller\n\tjr $31\n\tnop\n")
    r = audit.audit_file(str(user))
    assert (r.findings, r.data["trampoline"]) == ([], [])


def test_table_counts_are_integers():
    import json
    r = audit.audit_file(str(FIXTURES / "mipsel" / "pfe3" / "patchable.o"))
    assert json.dumps(r.data["tables"]) == '{"__patchable_function_entries": 6}'


def test_patchable_table_faults_keep_their_kind(tmp_path):
    """A __patchable_function_entries word pointing past its section: the pad table's own
    finding (patchable.plan's) keeps its kind in audit."""
    from test_audit import edit
    obj = tmp_path / "patchable.o"
    shutil.copyfile(FIXTURES / "mipsel" / "pfe3" / "patchable.o", obj)
    elffile = need_module("elftools.elf.elffile")
    with open(obj, "rb") as f:
        t = elffile.ELFFile(f).get_section_by_name("__patchable_function_entries")
        off = t["sh_offset"]
    edit(obj, off, "I", lambda v: v + 0x100000)          # REL: the addend is the word
    kinds = [f.kind for f in audit.audit_file(str(obj)).findings if f.section == "__patchable_function_entries"]
    assert kinds == ["bad-target"]


def test_jal_named_in_a_64bit_image(tmp_path):
    """n64 linked at the kernel's 0xffffffff80100000 (CKSEG0, sign-extended): an entry at a
    `jal` to another function names that function (jal targets are 64-bit there)."""
    from test_audit import recorded_tree
    d = recorded_tree(tmp_path, "mips64", "kernel")
    objs = [d / "basic.o", d / "sections.o"]
    exe = link("mips64", objs, tmp_path / "vmlinux",
               [str(FIXTURES / "mips64" / "kernel" / "mcount_def.o")], ["-Ttext=0xffffffff80100000", "--noinhibit-exec"])   # printk &c. stay at 0x80100000: out of reach, kept
    secs, _ = sections(exe)
    assert secs[".text"][0] == 0xffffffff80100000
    table, toff = linked_table(exe)
    buf = bytearray(exe.read_bytes())
    insns = insns_by_address(exe, "mips64")
    labels = {a: lab for (_, a), lab in objdump_labels(exe, "mips64").items()}
    other = next(a for a in sorted(insns) if insns[a].startswith("jal ") and a not in table
                 and labels.get(int(insns[a].split()[1], 16), ("", 1))[1] == 0)
    callee = labels[int(insns[other].split()[1], 16)][0]
    struct.pack_into(">Q", buf, toff, other)
    exe.write_bytes(bytes(buf))
    bad = [f for f in audit.audit_file(str(exe)).findings if f.kind == "bad-target"]
    assert len(bad) == 1 and f"`jal {callee}`" in bad[0].message
