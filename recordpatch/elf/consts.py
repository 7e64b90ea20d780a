"""ELF constants used by recordpatch (System V gABI, 2013 draft, chapter 4).

Only the values this project reads or writes are listed; machine-specific
relocation types live with their architecture (``recordpatch.arch``).
"""

ELFMAG = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
EV_CURRENT = 1

ET_REL, ET_EXEC, ET_DYN = 1, 2, 3
ET_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}

EM_MIPS = 8

# Special section indexes (gABI "Sections", figure 4-7).
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2
SHN_XINDEX = 0xFFFF

# Section types.
SHT_NULL = 0
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_RELA = 4
SHT_NOBITS = 8
SHT_REL = 9
SHT_GROUP = 17
SHT_SYMTAB_SHNDX = 18
# LLVM's address-significance table: ULEB128 symbol indexes (LLVM docs, "Extensions").
SHT_LLVM_ADDRSIG = 0x6FFF4C03

# Section flags.
SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_LINK_ORDER = 0x80

# Symbol binding and type (st_info).
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4
