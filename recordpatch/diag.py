"""Diagnostics: what a pass found, rendered objtool-style for people and as dicts for JSON."""

from __future__ import annotations

import sys

from .tuples import named

ERROR, WARNING, NOTE = "error", "warning", "note"

#: C0 controls and DEL, escaped: names come from the file (a symbol called "f\nFILE: error:"
#: must not forge a second diagnostic line) or the command line (a file name with a newline).
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def one_line(text: str) -> str:
    """``text`` with control characters escaped as \\xNN: a diagnostic is always one line."""
    return text.translate(_CONTROLS)


class Diagnostic(named("Diagnostic", "level message where", defaults=("",))):
    __slots__ = ()
    # level: ERROR / WARNING / NOTE
    # where: "func+0x12" or ".text+0x24"; empty for whole-file messages

    def render(self, path: str) -> str:
        loc = f"{self.where}: " if self.where else ""
        return one_line(f"{path}: {self.level}: recordpatch: {loc}{self.message}")

    def as_dict(self) -> dict:
        return {"level": self.level, "where": self.where, "message": self.message}


def emit(path: str, diags, stream=None, min_level: str = NOTE) -> None:
    """Print diagnostics on stderr; notes only when asked for (min_level=NOTE)."""
    stream = stream or sys.stderr
    order = {ERROR: 0, WARNING: 1, NOTE: 2}
    for d in diags:
        if order[d.level] <= order[min_level]:
            print(d.render(path), file=stream)
