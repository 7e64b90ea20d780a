"""Architecture rules. Only MIPS for now (``mips.py``)."""
