#!/usr/bin/env python3
"""kernel-e2e: read the ftrace table of linked vmlinux images and compare them.

    mcount_table.py show VMLINUX                 count + address digest of the table
    mcount_table.py compare REF OTHER [OTHER...] table and whole-file comparison against REF
    mcount_table.py objdiff REFDIR DIR FILE...     per-object: identical | padding-only | table
    mcount_table.py kodiff REFDIR DIR FILE...      per file: the same call sites (section+offset)?

The table is the data between the symbols __start_mcount_loc and __stop_mcount_loc (one
address-sized word per call site, as ftrace_init() reads it).  Two tables are compared as
sorted address lists (ftrace sorts them at boot; MIPS has no build-time sort) and, so that a
different section layout cannot hide or fake a difference, as sorted "function+offset" lists.
Standard library only.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import struct
import sys


class Elf:
    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            self.data = f.read()
        d = self.data
        if d[:4] != b"\x7fELF":
            raise SystemExit(f"{path}: not ELF")
        self.is64 = d[4] == 2
        self.end = "<" if d[5] == 1 else ">"
        e = self.end
        if self.is64:
            (self.shoff,) = struct.unpack_from(e + "Q", d, 0x28)
            self.shentsize, self.shnum, self.shstrndx = struct.unpack_from(e + "HHH", d, 0x3A)
        else:
            (self.shoff,) = struct.unpack_from(e + "I", d, 0x20)
            self.shentsize, self.shnum, self.shstrndx = struct.unpack_from(e + "HHH", d, 0x2E)
        self.sections = []
        for i in range(self.shnum):
            o = self.shoff + i * self.shentsize
            if self.is64:
                name, typ, flags, addr, off, size, link, info, align, entsize = struct.unpack_from(
                    e + "IIQQQQIIQQ", d, o)
            else:
                name, typ, flags, addr, off, size, link, info, align, entsize = struct.unpack_from(
                    e + "IIIIIIIIII", d, o)
            self.sections.append(dict(name_off=name, type=typ, flags=flags, addr=addr, offset=off,
                                      size=size, link=link, info=info, align=align, entsize=entsize))
        strtab = self.sections[self.shstrndx]
        for s in self.sections:
            s["name"] = self._str(strtab, s["name_off"])

    def _str(self, strsec, off):
        start = strsec["offset"] + off
        return self.data[start:self.data.index(b"\0", start)].decode("latin-1")

    def symbols(self):
        for s in self.sections:
            if s["type"] != 2:  # SHT_SYMTAB
                continue
            strsec = self.sections[s["link"]]
            fmt, n = (self.end + "IBBHQQ", 24) if self.is64 else (self.end + "IIIBBH", 16)
            for i in range(s["size"] // n):
                o = s["offset"] + i * n
                if self.is64:
                    name, info, other, shndx, value, size = struct.unpack_from(fmt, self.data, o)
                else:
                    name, value, size, info, other, shndx = struct.unpack_from(fmt, self.data, o)
                yield self._str(strsec, name), value, size, info & 0xF, shndx

    def read_addr(self, addr: int, size: int) -> bytes:
        for s in self.sections:
            if s["type"] == 1 and s["addr"] <= addr and addr + size <= s["addr"] + s["size"]:
                o = s["offset"] + addr - s["addr"]
                return self.data[o:o + size]
        raise SystemExit(f"{self.path}: no PROGBITS section holds {addr:#x}+{size}")


def table(path: str) -> dict:
    elf = Elf(path)
    syms = {}
    funcs = []
    for name, value, size, typ, shndx in elf.symbols():
        if name in ("__start_mcount_loc", "__stop_mcount_loc"):
            syms[name] = value
        if typ == 2 and shndx != 0:  # STT_FUNC, defined
            funcs.append((value, name))
    start, stop = syms["__start_mcount_loc"], syms["__stop_mcount_loc"]
    word = 8 if elf.is64 else 4
    raw = elf.read_addr(start, stop - start) if stop > start else b""
    addrs = list(struct.unpack(f"{elf.end}{len(raw) // word}{'Q' if word == 8 else 'I'}", raw))
    funcs.sort()
    fvals = [v for v, _ in funcs]
    named = []
    for a in addrs:
        i = bisect.bisect_right(fvals, a) - 1
        named.append(f"{funcs[i][1]}+{a - fvals[i]:#x}" if i >= 0 else f"?{a:#x}")
    sorted_addrs = sorted(addrs)
    return {
        "path": path,
        "sha256": hashlib.sha256(elf.data).hexdigest(),
        "size": len(elf.data),
        "table_start": f"{start:#x}",
        "count": len(addrs),
        "unique": len(set(addrs)),
        "in_order": addrs == sorted_addrs,
        "addr_digest": hashlib.sha256(repr(sorted_addrs).encode()).hexdigest()[:16],
        "sym_digest": hashlib.sha256(repr(sorted(named)).encode()).hexdigest()[:16],
        "table_digest": hashlib.sha256(raw).hexdigest()[:16],
        "_addrs": addrs,
        "_named": named,
        "_elf": elf,
    }


def public(t: dict) -> dict:
    return {k: v for k, v in t.items() if not k.startswith("_")}


def section_diff(a: Elf, b: Elf, table_range=None) -> list:
    """Per section: moved, resized, or how many bytes differ (for the section holding the
    ftrace table, also how many of those lie outside [__start_mcount_loc, __stop_mcount_loc)
    of either file)."""
    out = []
    sa = {s["name"]: s for s in a.sections}
    sb = {s["name"]: s for s in b.sections}
    for name in list(sa) + [n for n in sb if n not in sa]:
        x, y = sa.get(name), sb.get(name)
        if x is None or y is None:
            out.append(f"{name or '(null)'}: only in {'other' if x is None else 'ref'}")
            continue
        bx = a.data[x["offset"]:x["offset"] + x["size"]] if x["type"] != 8 else b""
        by = b.data[y["offset"]:y["offset"] + y["size"]] if y["type"] != 8 else b""
        notes = []
        if x["addr"] != y["addr"]:
            notes.append(f"addr {x['addr']:#x} -> {y['addr']:#x}")
        if x["size"] != y["size"]:
            notes.append(f"size {x['size']:#x} -> {y['size']:#x}")
        if bx != by:
            diff = [i for i, (p, q) in enumerate(zip(bx, by)) if p != q]
            nd = len(diff) + abs(len(bx) - len(by))
            note = f"{nd} bytes differ"
            if table_range and x["addr"] <= table_range[0] < x["addr"] + x["size"]:
                lo, hi = table_range
                outside = [i for i in diff if not lo <= x["addr"] + i < hi]
                note += f" ({len(outside)} outside the ftrace table)"
            notes.append(note)
        if notes:
            out.append(f"{name}: " + ", ".join(notes))
    return out


def compare(ref: str, others: list) -> int:
    r = table(ref)
    results = {"ref": public(r), "others": []}
    bad = 0
    for o in others:
        t = table(o)
        same_addrs = sorted(t["_addrs"]) == sorted(r["_addrs"])
        same_named = sorted(t["_named"]) == sorted(r["_named"])
        res = public(t)
        res.update(same_count=t["count"] == r["count"], same_addresses=same_addrs,
                   same_functions=same_named, same_table_bytes=t["table_digest"] == r["table_digest"],
                   byte_identical=t["sha256"] == r["sha256"])
        if not same_named:
            ra, ta = set(r["_named"]), set(t["_named"])
            res["only_in_ref"] = sorted(ra - ta)[:20]
            res["only_in_other"] = sorted(ta - ra)[:20]
        if not res["byte_identical"]:
            lo = min(int(r["table_start"], 16), int(t["table_start"], 16))
            hi = lo + 4 * max(r["count"], t["count"]) * (2 if r["_elf"].is64 else 1)
            res["section_diff"] = section_diff(r["_elf"], t["_elf"], (lo, hi))
        bad |= not (res["same_count"] and same_named)
        results["others"].append(res)
    json.dump(results, sys.stdout, indent=1)
    print()
    return 1 if bad else 0


# --------------------------------------------------------------------------- objects
def table_entries(path: str):
    """(elf, symtab section, st_name, st_info, st_shndx, st_value, addend) per __mcount_loc entry of a
    relocatable object, read from its relocation section (nothing if there is none)."""
    elf = Elf(path)
    d, e = elf.data, elf.end
    idx = {s["name"]: i for i, s in enumerate(elf.sections)}
    if "__mcount_loc" not in idx:
        return
    tab = idx["__mcount_loc"]
    rel = next((i for i, s in enumerate(elf.sections) if s["type"] in (4, 9) and s["info"] == tab), None)
    if rel is None:
        return
    rs = elf.sections[rel]
    symsec = elf.sections[rs["link"]]
    tdata = elf.sections[tab]
    rela = rs["type"] == 4
    n = (24 if rela else 16) if elf.is64 else (12 if rela else 8)
    for k in range(rs["size"] // n):
        o = rs["offset"] + k * n
        if elf.is64:  # MIPS n64: r_sym is the first 32-bit field of r_info
            r_off, = struct.unpack_from(e + "Q", d, o)
            sym, = struct.unpack_from(e + "I", d, o + 8)
            add = struct.unpack_from(e + "q", d, o + 16)[0] if rela else \
                struct.unpack_from(e + "Q", d, tdata["offset"] + r_off)[0]
            name, info, _, shndx, value = struct.unpack_from(
                e + "IBBHQ", d, symsec["offset"] + sym * 24)
        else:
            r_off, rinfo = struct.unpack_from(e + "II", d, o)
            sym = rinfo >> 8
            add = struct.unpack_from(e + "i", d, o + 8)[0] if rela else \
                struct.unpack_from(e + "I", d, tdata["offset"] + r_off)[0]
            name, value, _, info, _, shndx = struct.unpack_from(
                e + "IIIBBH", d, symsec["offset"] + sym * 16)
        yield elf, symsec, name, info, shndx, value, add


def mcount_entries(path: str) -> list:
    """The __mcount_loc entries of a relocatable object as 'symbol+addend' strings."""
    out = []
    for elf, symsec, name, info, shndx, _, add in table_entries(path):
        sname = elf._str(elf.sections[symsec["link"]], name)
        if (info & 0xF) == 3 and shndx < len(elf.sections):  # STT_SECTION
            sname = elf.sections[shndx]["name"]
        out.append(f"{sname}+{add:#x}")
    return out


def resolved_sites(path: str) -> list:
    """The __mcount_loc entries of a relocatable as 'section+offset' (symbol value + addend),
    so that two tables expressed against different symbols still compare."""
    out = []
    for elf, _, _, _, shndx, value, add in table_entries(path):
        name = elf.sections[shndx]["name"] if shndx < len(elf.sections) else f"shndx{shndx}"
        out.append(f"{name}+{(value + add) & ((1 << (64 if elf.is64 else 32)) - 1):#x}")
    return sorted(out)


def kodiff(refdir: str, mydir: str, files: list) -> int:
    """Linked modules: the reference's table (per-object tables merged by ld -r) against
    recordpatch's (the whole .ko recorded at once), as sets of resolved call sites."""
    import os
    same = differ = 0
    total = 0
    for f in files:
        ra = resolved_sites(os.path.join(refdir, f))
        rb = resolved_sites(os.path.join(mydir, f))
        total += len(rb)
        if ra == rb:
            same += 1
            continue
        differ += 1
        extra = sorted(set(rb) - set(ra))
        missing = sorted(set(ra) - set(rb))
        print(f"{f}: reference {len(ra)} entries, recordpatch {len(rb)}; only recordpatch: "
              f"{extra[:6]}; only reference: {missing[:6]}")
    print(f"summary: {same} same call sites, {differ} differ (of {len(files)} modules, "
          f"{total} entries recorded)")
    return 0


def in_padding(path: str, offsets: list) -> bool:
    """True if no offset lies in the ELF header, the section header table or a section."""
    elf = Elf(path)
    ehsize = 64 if elf.is64 else 52
    spans = [(0, ehsize), (elf.shoff, elf.shoff + elf.shentsize * elf.shnum)]
    spans += [(s["offset"], s["offset"] + s["size"]) for s in elf.sections if s["type"] != 8]
    return not any(a <= o < b for o in offsets for a, b in spans)


def objdiff(refdir: str, mydir: str, files: list) -> int:
    import os
    counts = {"identical": 0, "padding-only": 0, "table": 0, "other": 0}
    for f in files:
        a = open(os.path.join(refdir, f), "rb").read()
        b = open(os.path.join(mydir, f), "rb").read()
        if a == b:
            counts["identical"] += 1
            continue
        if len(a) == len(b):
            offs = [i for i in range(len(a)) if a[i] != b[i]]
            if in_padding(os.path.join(mydir, f), offs):
                counts["padding-only"] += 1
                print(f"{f}: padding-only: {len(offs)} byte(s) between sections differ "
                      + " ".join(f"{o:#x}:{a[o]:#04x}->{b[o]:#04x}" for o in offs[:4]))
                continue
        ra, rb = mcount_entries(os.path.join(refdir, f)), mcount_entries(os.path.join(mydir, f))
        if ra != rb:
            counts["table"] += 1
            extra = [x for x in rb if x not in ra]
            missing = [x for x in ra if x not in rb]
            print(f"{f}: table: reference {len(ra)} entries, recordpatch {len(rb)}; "
                  f"only recordpatch: {extra[:6]}; only reference: {missing[:6]}")
        else:
            counts["other"] += 1
            print(f"{f}: other: same table entries, files differ ({len(a)} vs {len(b)} bytes)")
    print("summary: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + f" (of {len(files)})")
    return 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "show":
        for p in argv[1:]:
            print(json.dumps(public(table(p))))
        return 0
    if len(argv) >= 3 and argv[0] == "objdiff":
        return objdiff(argv[1], argv[2], argv[3:])
    if len(argv) >= 3 and argv[0] == "kodiff":
        return kodiff(argv[1], argv[2], argv[3:])
    if len(argv) >= 3 and argv[0] == "compare":
        return compare(argv[1], argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
