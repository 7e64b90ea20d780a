"""Diagnostics: what a pass found, rendered objtool-style for people and as dicts for JSON."""

from __future__ import annotations

import sys
from collections import namedtuple

ERROR, WARNING, NOTE = "error", "warning", "note"


class Diagnostic(namedtuple("Diagnostic", "level message where", defaults=("",))):
    __slots__ = ()
    # level: ERROR / WARNING / NOTE
    # where: "func+0x12" or ".text+0x24"; empty for whole-file messages

    def render(self, path: str) -> str:
        loc = f"{self.where}: " if self.where else ""
        return f"{path}: {self.level}: recordpatch: {loc}{self.message}"

    def as_dict(self) -> dict:
        return {"level": self.level, "where": self.where, "message": self.message}


def emit(path: str, diags, stream=None, min_level: str = NOTE) -> None:
    """Print diagnostics on stderr; notes only when asked for (min_level=NOTE)."""
    stream = stream or sys.stderr
    order = {ERROR: 0, WARNING: 1, NOTE: 2}
    for d in diags:
        if order[d.level] <= order[min_level]:
            print(d.render(path), file=stream)
