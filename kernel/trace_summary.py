#!/usr/bin/env python3
"""kernel-e2e trace boot: did ftrace, driven through tracefs, trace a built-in and a module
function through their repaired pads?

    trace_summary.py console.log

Reads what kernel/pfe/trace-init.c printed between its `---- begin X ----` / `---- end X ----`
markers and counts, in the `function` tracer's output, the lines `dev_get_stats <-…` (built-in)
and `dummy_get_stats64 <-dev_get_stats` (module, called by the built-in), and in the
`function_graph` output the entries of both functions. Prints those lines and counts; the last
line is the verdict. Exit 0 only if every tracefs step succeeded and both functions were traced
by both tracers.
"""
import re
import sys

BUILTIN, MODULE = "dev_get_stats", "dummy_get_stats64"


def sections(text):
    """{tag: [lines]} of every begin/end block; console lines lose their printk timestamps."""
    out, tag = {}, None
    for raw in text.splitlines():
        line = re.sub(r"^\[[ 0-9.]*\] ", "", raw.rstrip("\r"))
        m = re.match(r"trace-init: ---- (begin|end) (.+) ----$", line)
        if m:
            tag = m.group(2) if m.group(1) == "begin" else None
            if tag:
                out[tag] = []
        elif tag:
            out[tag].append(line)
    return out


def function_hits(lines, name, caller=None):
    """Lines of the function tracer: `task-pid [cpu] flags ts: name <-caller+0x...`."""
    pat = re.compile(rf":\s+{re.escape(name)} <-(\S+)")
    return [l for l in lines if (m := pat.search(l)) and (caller is None or m.group(1).startswith(caller))]


def graph_hits(lines, name):
    """Lines of function_graph: `cpu) duration | name() {` or `name();` (a leaf); a module
    function is printed as `name [module]()`."""
    pat = re.compile(rf"\|\s+{re.escape(name)}(?: \[\w+\])?\(\)(;| \{{)")
    return [l for l in lines if pat.search(l)]


def main(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    steps = re.findall(r"trace-init: (.+): (ok|FAILED.*)$", text, re.M)
    failed = [f"{what}: {verdict}" for what, verdict in steps if verdict != "ok"]
    sec = sections(text)
    fn, graph = sec.get("trace function", []), sec.get("trace function_graph", [])
    counts = {
        "function " + BUILTIN: function_hits(fn, BUILTIN),
        "function " + MODULE: function_hits(fn, MODULE, caller=BUILTIN),
        "function_graph " + BUILTIN: graph_hits(graph, BUILTIN),
        "function_graph " + MODULE: graph_hits(graph, MODULE),
    }
    print(f"tracefs steps: {len(steps)}, failed: {len(failed)}")
    for f in failed:
        print("  " + f)
    print("set_ftrace_filter: " + " ".join(sec.get("set_ftrace_filter", ["(not printed)"])))
    for tag in ("enabled_functions function", "enabled_functions function_graph"):
        print(f"{tag}:")
        for l in sec.get(tag, ["(not printed)"]):
            print("  " + l.strip())
    for what, hits in counts.items():
        print(f"{what}: {len(hits)} line(s)")
        for l in hits[:2]:
            print("  " + l.strip())
    ok = bool(steps) and not failed and all(counts.values()) and "trace-init: done, 0 failure(s)" in text
    missing = [w for w, h in counts.items() if not h]
    if not steps:
        print("verdict: FAILED: /init never ran (no trace-init lines in the console)")
    elif ok:
        print(f"verdict: OK: {BUILTIN} (built in) and {MODULE} (module) traced by function and function_graph")
    else:
        print("verdict: FAILED: " + ", ".join(missing + failed or ["trace-init did not finish"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
