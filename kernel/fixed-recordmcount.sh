#!/bin/bash
# Build the kernel's scripts/recordmcount from Debian's linux-source-VERSION with
# kernel/patches/recordmcount-VERSION.patch applied (the +4 filter kept within one section),
# the way Kbuild builds it as a host program (one gcc call, Kbuild's KBUILD_HOSTCFLAGS), and
# print the binary's path. No kernel build: only scripts/recordmcount.[ch] are extracted.
#
#   kernel/fixed-recordmcount.sh 6.1|6.12 [OUTDIR]     OUTDIR default: build/recordmcount-fixed/VERSION
#   ORIG=1 ...   also build the unpatched tool as OUTDIR/recordmcount-orig (a control)
#   SRC_TAR=...  the source tarball (default /usr/src/linux-source-VERSION.tar.xz)
#
# The result is reused while the patch and the tarball are unchanged (OUTDIR/stamp).
# Exit 1 with one line on stderr if the tarball is missing or the patch does not apply.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
V=${1:?usage: fixed-recordmcount.sh VERSION [OUTDIR]}
OUT=${2:-$(dirname "$HERE")/build/recordmcount-fixed/$V}
SRC_TAR=${SRC_TAR:-/usr/src/linux-source-$V.tar.xz}
PATCH=$HERE/patches/recordmcount-$V.patch
# scripts/Makefile: hostprogs recordmcount; top Makefile: KBUILD_USERHOSTCFLAGS + HOST_LFS_CFLAGS
CFLAGS="-Wall -Wmissing-prototypes -Wstrict-prototypes -O2 -fomit-frame-pointer -std=gnu11 $(getconf LFS_CFLAGS 2>/dev/null || true)"

[ -f "$PATCH" ] || { echo "fixed-recordmcount.sh: no patch for $V ($PATCH)" >&2; exit 1; }
[ -f "$SRC_TAR" ] || { echo "fixed-recordmcount.sh: $SRC_TAR missing (apt-get install linux-source-$V)" >&2; exit 1; }
stamp="$(sha256sum "$PATCH" | cut -c1-64) $(stat -c '%s %Y' "$SRC_TAR") $SRC_TAR ORIG=${ORIG:-0} $CFLAGS"
if [ -x "$OUT/recordmcount" ] && [ "$(cat "$OUT/stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$OUT/recordmcount"; exit 0
fi
rm -rf "$OUT"; mkdir -p "$OUT/src"
tar -xJf "$SRC_TAR" -C "$OUT/src" --strip-components=1 --occurrence=1 \
    "linux-source-$V/scripts/recordmcount.c" "linux-source-$V/scripts/recordmcount.h"
build() {  # output name: one gcc call, as Kbuild's hostprogs rule
    gcc $CFLAGS -I "$OUT/src/scripts" -o "$OUT/$1" "$OUT/src/scripts/recordmcount.c" 2> "$OUT/$1.warnings"
}
if [ "${ORIG:-0}" = 1 ]; then build recordmcount-orig; fi
patch -d "$OUT/src" -p1 -s --no-backup-if-mismatch < "$PATCH" ||
    { echo "fixed-recordmcount.sh: $PATCH does not apply to $SRC_TAR" >&2; exit 1; }
build recordmcount
echo "$stamp" > "$OUT/stamp"
echo "$OUT/recordmcount"
