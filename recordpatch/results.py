"""What a command did, as data. Passes build these and return them; recordpatch/render.py
is the only code that turns them into text, JSON or tables, and into the exit status."""

from __future__ import annotations

from .tuples import named

#: File statuses that make the command fail (exit status 1).
FAILED = frozenset({"error", "findings", "unusable"})


class FileReport(named("FileReport", "path status findings data", defaults=((), None))):
    """One input of a command. status: a command's word for the outcome ("recorded",
    "clean", "findings", "error", "skipped", "ok", ...); findings: diag.Finding list;
    data: JSON-ready fields (integers as integers) that the command adds."""
    __slots__ = ()

    @property
    def failed(self) -> bool:
        return self.status in FAILED


class Report(named("Report", "command files summary view", defaults=(None,))):
    """A command's whole result: FileReports, a JSON-ready summary, and ``view``: how the
    text form is asked for (dry run, verbose), never part of the JSON."""
    __slots__ = ()

    @property
    def failed(self) -> bool:
        return any(f.failed for f in self.files) or bool(self.summary.get("failed"))
