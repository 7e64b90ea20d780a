# recordpatch kernel-e2e: install what a variant needs on a fresh Debian machine, and say how
# long it will take. Sourced by kernel/e2e.sh after E2E_ARCH has set CROSS_COMPILE and QEMU;
# uses SRC_TAR, REF_TOOL, STEPS, BOOT, KERNEL_VERSION.
#
#   E2E_SETUP=0          skip it (the Makefile's second call, after it has run once)
#   E2E_SETUP_DRYRUN=1   print the apt-get command instead of running it
# Packages are checked with dpkg-query (as .ci/run does; `dpkg -s` passes a removed package whose
# configuration files remain); only missing ones are installed.

e2e_packages() {  # the Debian packages this run needs, one per line
    local want_boot=0
    case " $STEPS " in *" boot "*) [ "${BOOT:-1}" = 1 ] && want_boot=1 ;; esac
    # the kernel's own build: host compiler, Kconfig (flex, bison), bc, certificates and
    # ELF tools (libssl-dev, libelf-dev), cpio; the script's own tools (patch, file, time)
    printf '%s\n' make gcc libc6-dev bc flex bison libssl-dev libelf-dev cpio xz-utils \
        patch file time git
    printf '%s\n' "gcc-${CROSS_COMPILE%-}" "binutils-${CROSS_COMPILE%-}"
    # E2E_TOOLCHAIN=llvm: `make LLVM=1` runs clang, ld.lld and llvm-ar/nm/objcopy/...; the GNU
    # binutils above stay the independent readers (kernel/calls_check.py)
    [ "${E2E_TOOLCHAIN:-gcc}" = llvm ] && printf '%s\n' clang lld llvm
    # /usr/src/linux-source-6.1.tar.xz comes from linux-source-6.1 (6.12: linux-source-6.12)
    case $SRC_TAR in /usr/src/linux-source-*.tar.xz)
        basename "$SRC_TAR" .tar.xz ;; esac
    # the reference recordmcount: /usr/lib/linux-kbuild-6.1/scripts/recordmcount (6.12's is
    # built from the tree by `make scripts`: no package)
    case $REF_TOOL in /usr/lib/linux-kbuild-*/scripts/recordmcount)
        echo "${REF_TOOL#/usr/lib/}" | cut -d/ -f1 ;; esac
    # qemu-system-mips has qemu-system-mips, -mipsel, -mips64 and -mips64el; the malta board
    # also loads the pcnet and cirrus ROMs, which only its recommended packages bring
    # (without them: `failed to find romfile "efi-pcnet.rom"`, then "vgabios-cirrus.bin")
    [ $want_boot = 0 ] || printf '%s\n' qemu-system-mips ipxe-qemu seabios
    # `make venv` needs a python3 with venv and ensurepip (Debian: python3-venv)
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || printf '%s\n' python3 python3-venv
}

e2e_estimate() {  # measured on 2 cores (docs/kernel-e2e.md); the first run builds the reference
    local ref mods boot
    case ${KERNEL_VERSION:-6.1}-$E2E_ARCH in
    6.1-mipsel) ref="~16 min (968 s)"; mods="~8 min (470 s)"; boot="~100 s" ;;
    6.1-mips64) ref="~16-24 min (1,434 s while sharing the cores)"; mods="~9 min (519 s)"; boot="~100 s" ;;
    6.1-mipsr6) ref="~8 min (485 s)"; mods="~7 min (404 s)"; boot="~62 s" ;;
    6.12-mipsel) ref="~10 min (615 s)"; mods="~8 min (484 s)"; boot="~87 s" ;;
    6.12-mips64) ref="~9 min (515 s)"; mods="~6 min (372 s)"; boot="~87 s" ;;
    6.12-mipsr6) ref="~8 min (487 s)"; mods="~6 min (353 s)"; boot="~51 s" ;;
    *) return 0 ;;
    esac
    [ "${E2E_TOOLCHAIN:-gcc}" = llvm ] && ref="~11 min with clang (627 s, 6.1 mipsel)"
    log "expected time on 2 cores: reference build $ref the first time (reused after);" \
        "B, C, controls, quirks ~5 min; boots $boot each (3); STEPS=modules $mods; fixedref < 1 min"
    return 0
}

e2e_setup() {
    [ "${E2E_SETUP:-1}" = 1 ] || return 0
    e2e_estimate
    # shellcheck disable=SC2046
    e2e_install $(e2e_packages | sort -u)
}

e2e_install() {  # PKG...: apt-get install the ones not installed (also kernel/pfe-e2e.sh)
    local p missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q ' installed$' || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    if [ "${E2E_SETUP_DRYRUN:-0}" = 1 ]; then
        log "setup: would run: ${sudo[*]:+${sudo[*]} }apt-get install -y --no-install-recommends ${missing[*]}"
        return 0
    fi
    if [ ${#sudo[@]} -gt 0 ] && ! command -v sudo >/dev/null; then
        echo "kernel-e2e needs: ${missing[*]} (run as root: apt-get install ${missing[*]})" >&2
        exit 1
    fi
    log "setup: apt-get install ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
