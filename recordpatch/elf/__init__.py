"""Everything that reads or writes ELF bytes lives in this package."""
