"""Findings: what a pass found, as data. Each carries its kind, decided where it was
found (never recovered from the message text), and its location as fields."""

from __future__ import annotations

from .tuples import named

ERROR, WARNING, NOTE = "error", "warning", "note"

#: C0 controls and DEL, escaped: names come from the file (a symbol called "f\nFILE: error:"
#: must not forge a second diagnostic line) or the command line (a file name with a newline).
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def one_line(text: str) -> str:
    """``text`` with control characters escaped as \\xNN: a diagnostic is always one line."""
    return text.translate(_CONTROLS)


class Finding(named("Finding", "level kind message section offset function func_offset",
                    defaults=("", None, "", None))):
    """level: ERROR / WARNING / NOTE; kind: a short tag ("pad-size", "pr99217", ...)
    that callers branch on; section/offset: where in the file (a table slot, a code
    address), function/func_offset: the function it is in or about (func_offset None: the
    finding is about the function as a whole)."""
    __slots__ = ()

    @property
    def where(self) -> str:
        """The location as text: ``section+0x24``, else ``func+0x12``, else ''."""
        if self.section:
            return self.section if self.offset is None else f"{self.section}+{self.offset:#x}"
        if self.function:
            return (self.function if not self.func_offset else
                    f"{self.function}+{self.func_offset:#x}")
        return ""

    def render(self, path: str) -> str:
        loc = f"{self.where}: " if self.where else ""
        return one_line(f"{path}: {self.level}: recordpatch: {loc}{self.message}")

    def as_dict(self) -> dict:
        return {"level": self.level, "kind": self.kind, "where": self.where,
                "section": self.section, "offset": self.offset, "function": self.function,
                "func_offset": self.func_offset, "message": self.message}
