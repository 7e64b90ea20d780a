"""Error types and the exit codes they map to.

Every failure a user can cause is one of these: a pass turns a RecordpatchError into that
file's error finding, render.py prints it as one ``FILE: error: recordpatch: message`` line;
a UsageError (a pass's own check of its options) is one line and exit 2. Anything else is a
bug.
"""

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


class RecordpatchError(Exception):
    """A failure about one input file: reported, counted, exit status 1."""

    exit_code = EXIT_FAIL


class ElfError(RecordpatchError):
    """The bytes are not an ELF file we can read safely (malformed or truncated)."""


class UnsupportedError(RecordpatchError):
    """A well-formed ELF file that recordpatch does not handle (machine, ABI, type)."""


class UsageError(Exception):
    """Bad command line: exit status 2."""

    exit_code = EXIT_USAGE
