"""recordpatch: ftrace call-site tables for MIPS ELF objects (a recordmcount replacement)."""

__version__ = "0.1.0"
