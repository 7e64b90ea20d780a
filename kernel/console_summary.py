#!/usr/bin/env python3
"""kernel-e2e: summarise the ftrace start-up self-tests in a kernel console log.

    console_summary.py console.log

Prints `ftrace: allocating ...`, every `Testing ...` line of the tracer self-tests with its
verdict (the verdict may come lines later, after interleaved driver messages; the
`(a b c d e)` hit counters of the dynamic-ftrace ops tests vary from boot to boot and are
dropped), a count of the trace-event tests per verdict (listing any that did not pass),
and how the boot ended.
"""
import re
import sys

VERDICT = re.compile(r"\b(PASSED|OK|FAILED|FAILED!|SKIPPED)\s*$")


def main(path: str) -> int:
    lines = [re.sub(r"^\[\s*[0-9.]+\]\s?", "", l.rstrip("\r\n"))
             for l in open(path, encoding="utf-8", errors="replace")]
    out, events, bad_events, i = [], {}, [], 0
    end = "no panic line (timeout?)"
    while i < len(lines):
        l = lines[i]
        if l.startswith("ftrace: alloc"):
            out.append(l)
        elif l.startswith("Kernel panic"):
            end = l
        elif l.startswith("Testing "):
            head, verdict = l, None
            m = VERDICT.search(l)
            if m:
                verdict, head = m.group(1), l[:m.start()]
            else:  # verdict on a later line, after counters or other messages
                for j in range(i + 1, min(i + 60, len(lines))):
                    if lines[j].startswith("Testing "):
                        break
                    m = VERDICT.search(lines[j])
                    if m:
                        verdict = m.group(1)
                        break
            head = head.rstrip().rstrip(":").rstrip()
            verdict = verdict or "NO VERDICT"
            if head.startswith("Testing event"):
                events[verdict] = events.get(verdict, 0) + 1
                if verdict != "OK":
                    bad_events.append(f"{head}: {verdict}")
            else:
                out.append(f"{head}: {verdict}")
        i += 1
    out.append("trace event tests: " + ", ".join(f"{n} {v}" for v, n in sorted(events.items())))
    out.extend(bad_events)
    out.append("end: " + end)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
