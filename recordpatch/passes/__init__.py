"""Passes: read an ELF model, return edits and diagnostics; never touch files themselves."""
