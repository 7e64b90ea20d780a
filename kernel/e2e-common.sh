# shellcheck shell=bash
# What kernel/e2e.sh and kernel/build-cost.sh share, written once: the target and version
# switches, the names a (version, target, toolchain) keeps in WORK, the reference recordmcount,
# the cross toolchain and the malta configuration of each target, and the hook patch.
# Sourced after HERE (this directory) is set; reads E2E_ARCH, KERNEL_VERSION, E2E_TOOLCHAIN,
# E2E_DCE, WORK, TREE, REF_TOOL from the environment (defaults below).

WORK=${WORK:-/work/kbuild}
E2E_ARCH=${E2E_ARCH:-mipsel}
KERNEL_VERSION=${KERNEL_VERSION:-6.1}
E2E_TOOLCHAIN=${E2E_TOOLCHAIN:-gcc}
E2E_DCE=${E2E_DCE:-0}
case $E2E_TOOLCHAIN in
gcc)  SFX=""; MKFLAGS=""; [ "$E2E_DCE" = 1 ] && SFX=-dce ;;
llvm) SFX=-llvm; MKFLAGS="LLVM=1"; E2E_DCE=1 ;;
*) echo "E2E_TOOLCHAIN must be gcc or llvm" >&2; exit 2 ;;
esac
# K names everything this (version, target) keeps in WORK; 6.1 keeps the names it always had.
# The reference: 6.1 Debian's linux-kbuild-6.1 binary; 6.12 the tree's own scripts/recordmcount
# as `make scripts` built it (kernel/e2e.sh saves it as recordmcount-built-K).
case $KERNEL_VERSION in
6.1)  K=$E2E_ARCH$SFX
      REF_TOOL=${REF_TOOL:-/usr/lib/linux-kbuild-6.1/scripts/recordmcount} ;;
6.12) K=$E2E_ARCH-6.12$SFX
      REF_TOOL=${REF_TOOL:-$WORK/recordmcount-built-$K} ;;
*) echo "KERNEL_VERSION must be 6.1 or 6.12" >&2; exit 2 ;;
esac
HOOK_PATCH=$HERE/recordpatch-vmlinux-hook-$KERNEL_VERSION.patch

# Reproducible build stamps, so that variants can be byte-identical.
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 2025' KBUILD_BUILD_VERSION=1
export KBUILD_BUILD_USER=e2e KBUILD_BUILD_HOST=recordpatch
export ARCH=mips

case $E2E_ARCH in
mipsel)
    export CROSS_COMPILE=mipsel-linux-gnu-
    TREE=${TREE:-$WORK/linux-$KERNEL_VERSION$SFX}
    CFG_EXTRA=""; CFG_CHECK_EXTRA="CPU_LITTLE_ENDIAN CPU_MIPS32_R2"
    QEMU="qemu-system-mipsel"; BOOT=${BOOT:-1} ;;
mips64)
    export CROSS_COMPILE=mips64-linux-gnuabi64-
    TREE=${TREE:-$WORK/linux-$KERNEL_VERSION-mips64$SFX}
    CFG_EXTRA="-d CPU_LITTLE_ENDIAN -e CPU_BIG_ENDIAN -d 32BIT -e 64BIT -d CPU_MIPS32_R2 -e CPU_MIPS64_R2"
    CFG_CHECK_EXTRA="CPU_BIG_ENDIAN 64BIT CPU_MIPS64_R2"
    QEMU="qemu-system-mips64 -cpu MIPS64R2-generic"; BOOT=${BOOT:-1} ;;
mipsr6)
    export CROSS_COMPILE=mipsisa32r6-linux-gnu-
    TREE=${TREE:-$WORK/linux-$KERNEL_VERSION-mipsr6$SFX}
    CFG_EXTRA="-d CPU_LITTLE_ENDIAN -e CPU_BIG_ENDIAN -d CPU_MIPS32_R2 -e CPU_MIPS32_R6"
    CFG_CHECK_EXTRA="CPU_BIG_ENDIAN CPU_MIPS32_R6"
    QEMU="qemu-system-mips -cpu mips32r6-generic"; BOOT=${BOOT:-1} ;;
*) echo "E2E_ARCH must be mipsel, mips64 or mipsr6" >&2; exit 2 ;;
esac

hook_patch() {  # apply|revert the RECORDPATCH hook in TREE, idempotently
    if [ "$1" = apply ]; then
        patch -d "$TREE" -p1 -R --dry-run -s -f < "$HOOK_PATCH" >/dev/null 2>&1 ||
            patch -d "$TREE" -p1 -s < "$HOOK_PATCH"
    elif patch -d "$TREE" -p1 -R --dry-run -s -f < "$HOOK_PATCH" >/dev/null 2>&1; then
        patch -d "$TREE" -p1 -R -s < "$HOOK_PATCH"
    fi
}
