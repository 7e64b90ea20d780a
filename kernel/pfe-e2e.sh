#!/bin/bash
# recordpatch kernel-e2e for -fpatchable-function-entry kernels (docs/kernel-pfe.md).
#
# Builds Debian's linux-source-6.1 for MIPS Malta with our patch series kernel/pfe/0*.patch
# (MIPS_FTRACE_PATCHABLE_ENTRY: DYNAMIC_FTRACE_WITH_REGS on 3-nop pads) and the recordpatch
# Kbuild hook kernel/pfe/recordpatch-pfe-hook.patch (RECORDPATCH=...: every object repaired right
# after it is compiled, `recordpatch check vmlinux.o` before the final link), then:
#
#   build      make vmlinux modules; the wrapper keeps each object as compiled (unrepaired)
#   count      pads the compiler emitted into the objects of vmlinux (readelf on vmlinux.o) and
#              the table the linked vmlinux holds (System.map), independently of recordpatch
#   audit      recordpatch audit of vmlinux and of every .ko: must be clean
#   patch      recordpatch patch vmlinux -o vmlinux.init --state init (pre-patched image)
#   misalign   control: entry-ftrace.S with ftrace_regs_caller 4 bytes off 64 KiB: the build
#              must stop at `recordpatch check vmlinux.o`; then the tree is put back
#   norepair   control: vmlinux relinked from the unrepaired objects (GCC's pads before labels)
#   boot       qemu-system-mips*: vmlinux, vmlinux.init, norepair (FTRACE_STARTUP_TEST)
#   trace      vmlinux again with an initramfs whose /init (kernel/pfe/trace-init.c) loads dummy.ko
#              and traces dev_get_stats (built in) and dummy_get_stats64 (module) via tracefs
#   summary    one table a person can read, also in $OUT/summary.txt
#
#   E2E_ARCH=mipsel-pfe|mips64-pfe  STEPS="build count ..."  REDO="build boot"  JOBS=2
#   WORK=/work/kbuild  BOOT_TIMEOUT=900  MODULES=1
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
MAIN=$(dirname "$HERE")
WORK=${WORK:-/work/kbuild}
E2E_ARCH=${E2E_ARCH:-mipsel-pfe}
JOBS=${JOBS:-2}
STEPS=${STEPS:-build count audit patch misalign norepair boot trace summary}
REDO=${REDO:-}
MODULES=${MODULES:-1}
SRC_TAR=${SRC_TAR:-/usr/src/linux-source-6.1.tar.xz}
RECORDPATCH=${RECORDPATCH:-$MAIN/.venv/bin/recordpatch}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-900}
PY=${PY:-python3}
PFE=$HERE/pfe
export PFE_RECORDPATCH=$RECORDPATCH          # what kernel/pfe/recordpatch-wrapper runs

export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 2025' KBUILD_BUILD_VERSION=1
export KBUILD_BUILD_USER=e2e KBUILD_BUILD_HOST=recordpatch
export ARCH=mips

case $E2E_ARCH in
mipsel-pfe)
    export CROSS_COMPILE=mipsel-linux-gnu-; PKG=mipsel-linux-gnu
    CFG_EXTRA=""; CFG_CHECK_EXTRA="CPU_LITTLE_ENDIAN CPU_MIPS32_R2"
    QEMU="qemu-system-mipsel"; TIME_HINT="~25 min the first time (vmlinux + 364 modules), ~10 min for the checks and four boots" ;;
mips64-pfe)
    export CROSS_COMPILE=mips64-linux-gnuabi64-; PKG=mips64-linux-gnuabi64
    CFG_EXTRA="-d CPU_LITTLE_ENDIAN -e CPU_BIG_ENDIAN -d 32BIT -e 64BIT -d CPU_MIPS32_R2 -e CPU_MIPS64_R2"
    CFG_CHECK_EXTRA="CPU_BIG_ENDIAN 64BIT CPU_MIPS64_R2"
    QEMU="qemu-system-mips64 -cpu MIPS64R2-generic"; TIME_HINT="~30 min the first time, ~10 min for the checks and four boots" ;;
*) echo "E2E_ARCH must be mipsel-pfe or mips64-pfe" >&2; exit 2 ;;
esac
TREE=${TREE:-$WORK/linux-6.1-pfe}            # patched source, shared by both targets
O=$WORK/build-$E2E_ARCH                      # object tree (make O=)
OUT=$WORK/out-$E2E_ARCH                      # results
CORPUS=$WORK/pfe-corpus-$E2E_ARCH            # every repaired object as the compiler left it
REPAIRED=$WORK/pfe-repaired-$E2E_ARCH        # the same objects after the repair
CFG_OPTS="-e FUNCTION_TRACER -e DYNAMIC_FTRACE -e FUNCTION_GRAPH_TRACER -e FTRACE_STARTUP_TEST -e MIPS_FTRACE_PATCHABLE_ENTRY"
CFG_CHECK="FUNCTION_TRACER DYNAMIC_FTRACE FUNCTION_GRAPH_TRACER FTRACE_STARTUP_TEST MIPS_FTRACE_PATCHABLE_ENTRY DYNAMIC_FTRACE_WITH_REGS FTRACE_MCOUNT_USE_PATCHABLE_FUNCTION_ENTRY $CFG_CHECK_EXTRA"

log() { printf '== [%s %s] %s\n' "$E2E_ARCH" "$(date +%T)" "$*"; }
want() { case " $STEPS " in *" $1 "*) return 0 ;; esac; return 1; }
redo() { case " $REDO " in *" $1 "*) return 0 ;; esac; return 1; }
kmake() { make -C "$TREE" O="$O" -j"$JOBS" "$@"; }
WRAP="$PFE/recordpatch-wrapper"

# recordpatch's sources: a repair made by other sources is redone (from the corpus).
rp_version() {
    (cd "$MAIN" && find recordpatch -type f -name '*.py' | sort | xargs sha256sum | sha256sum | cut -c1-16)
}

# --- set-up: packages, source tree, configuration ------------------------------------------------
setup() {
    local pkgs=(make xz-utils bc flex bison libssl-dev libelf-dev cpio time python3
                linux-source-6.1 qemu-system-mips ipxe-qemu seabios gcc-$PKG binutils-$PKG) p
    # shellcheck source=kernel/e2e-setup.sh
    . "$HERE/e2e-setup.sh"
    e2e_install "${pkgs[@]}"
    [ -x "$RECORDPATCH" ] || make -C "$MAIN" venv >/dev/null
    local patches=("$PFE"/0*.patch "$PFE/recordpatch-pfe-hook.patch")
    if [ ! -f "$TREE/Makefile" ]; then
        log "extracting $SRC_TAR to $TREE and applying kernel/pfe/*.patch"
        rm -rf "$WORK/.xpfe"; mkdir -p "$WORK/.xpfe" && tar -C "$WORK/.xpfe" -xJf "$SRC_TAR"
        mv "$WORK/.xpfe/linux-source-6.1" "$TREE" && rmdir "$WORK/.xpfe"
        for p in "${patches[@]}"; do patch -d "$TREE" -p1 -s < "$p"; done
    fi
    for p in "${patches[@]}"; do   # every patch applied (the tree may be older than a patch)
        patch -d "$TREE" -p1 -R --dry-run -s -f < "$p" >/dev/null 2>&1 ||
            { echo "$TREE does not carry $(basename "$p"): remove the tree to re-extract" >&2; exit 1; }
    done
    mkdir -p "$O" "$OUT"
    local ok=1 o
    for o in $CFG_CHECK; do grep -q "^CONFIG_$o=y" "$O/.config" 2>/dev/null || ok=0; done
    if [ $ok = 0 ]; then
        log "configuring malta_defconfig + ftrace + MIPS_FTRACE_PATCHABLE_ENTRY"
        kmake -s malta_defconfig
        # shellcheck disable=SC2086
        "$TREE/scripts/config" --file "$O/.config" $CFG_EXTRA $CFG_OPTS
        kmake -s olddefconfig
        for o in $CFG_CHECK; do
            grep -q "^CONFIG_$o=y" "$O/.config" || { echo "CONFIG_$o not set" >&2; exit 1; }
        done
        ! grep -q '^CONFIG_FTRACE_MCOUNT_USE_RECORDMCOUNT=y' "$O/.config" ||
            { echo "recordmcount still in use" >&2; exit 1; }
    fi
}

targets() { echo vmlinux; [ "$MODULES" = 1 ] && echo modules; return 0; }
objects() { sed -n 's/^record --repair //p' "$OUT/args.log" | sort -u; }

# --- build ---------------------------------------------------------------------------------------
step_build() {
    local v
    v=$(rp_version)
    log "build: make $(targets | tr '\n' ' ')(log $OUT/build.log)"
    local t0=$SECONDS
    PFE_CORPUS=$CORPUS PFE_ARGLOG=$OUT/args.log PFE_TIMES=$OUT/repair-times.log \
        /usr/bin/time -f "%e %U %S" -o "$OUT/build.time" \
        make -C "$TREE" O="$O" -j"$JOBS" $(targets) RECORDPATCH="$WRAP" > "$OUT/build.log" 2>&1 ||
        { tail -30 "$OUT/build.log"; exit 1; }
    log "build: $((SECONDS - t0)) s (wall, user, sys: $(cat "$OUT/build.time"))"
    echo "$(date -u +%FT%TZ) $(cat "$OUT/build.time") objects-compiled=$(grep -c -E '^  CC ' "$OUT/build.log" || true)" \
        >> "$OUT/build-history.txt"
    if [ -f "$OUT/rp-version" ] && [ "$(cat "$OUT/rp-version")" != "$v" ] || redo repair; then
        log "build: recordpatch changed since the objects were repaired: repairing all again"
        (cd "$CORPUS" && objects | xargs cp --parents -t "$O")
        : > "$OUT/repair-times.log"
        (cd "$O" && objects | PFE_TIMES=$OUT/repair-times.log \
            xargs -P "$JOBS" -n 1 "$WRAP" record --repair) > "$OUT/rerepair.log" 2>&1
        make -C "$TREE" O="$O" -j"$JOBS" $(targets) RECORDPATCH="$WRAP" >> "$OUT/build.log" 2>&1 ||
            { tail -30 "$OUT/build.log"; exit 1; }
    fi
    echo "$v" > "$OUT/rp-version"
    rm -rf "$REPAIRED"; mkdir -p "$REPAIRED"
    (cd "$O" && objects | xargs cp --parents -t "$REPAIRED")
    mkdir -p "$OUT/pfe"
    cp "$O/vmlinux" "$O/vmlinux.o" "$O/System.map" "$OUT/pfe/"
    (cd "$O" && find . -name '*.ko' | sort) > "$OUT/modules.list"
    log "build: $(objects | wc -l) objects repaired, $(wc -l < "$OUT/modules.list") modules"
}

# --- count ---------------------------------------------------------------------------------------
step_count() {
    # Pads the compiler listed for the objects of vmlinux: relocations of every
    # __patchable_function_entries section of vmlinux.o (binutils, not recordpatch).
    local pads sm start stop word
    pads=$(${CROSS_COMPILE}readelf -rW "$OUT/pfe/vmlinux.o" |
        awk '/^Relocation section/ {on = /__patchable_function_entries/} on && /^[0-9a-f]+ / {n++} END {print n + 0}')
    word=$([ "$E2E_ARCH" = mips64-pfe ] && echo 8 || echo 4)
    start=$(awk '$3 == "__start_mcount_loc" {print $1}' "$OUT/pfe/System.map")
    stop=$(awk '$3 == "__stop_mcount_loc" {print $1}' "$OUT/pfe/System.map")
    echo "pads_in_objects=$pads" > "$OUT/count.txt"
    echo "table_entries=$(( (0x$stop - 0x$start) / word ))" >> "$OUT/count.txt"
    log "count: $(tr '\n' ' ' < "$OUT/count.txt")"
}

# --- audit, patch --------------------------------------------------------------------------------
step_audit() {
    local rc=0
    "$RECORDPATCH" audit "$OUT/pfe/vmlinux" > "$OUT/audit-vmlinux.txt" 2>&1 || rc=$?
    echo "rc=$rc" >> "$OUT/audit-vmlinux.txt"
    log "audit vmlinux: exit $rc: $(grep -v '^rc=' "$OUT/audit-vmlinux.txt" | tail -1)"
    if [ -s "$OUT/modules.list" ]; then
        rc=0
        (cd "$O" && xargs "$RECORDPATCH" audit -j "$JOBS" < "$OUT/modules.list") \
            > "$OUT/audit-modules.txt" 2>&1 || rc=$?
        echo "rc=$rc" >> "$OUT/audit-modules.txt"
        log "audit modules: exit $rc: $(grep -v '^rc=' "$OUT/audit-modules.txt" | tail -1)"
    fi
}

step_patch() {
    mkdir -p "$OUT/init"
    "$RECORDPATCH" patch "$OUT/pfe/vmlinux" -o "$OUT/init/vmlinux" --state init \
        > "$OUT/init/patch.log" 2>&1 || { cat "$OUT/init/patch.log"; exit 1; }
    log "patch: $(tail -1 "$OUT/init/patch.log")"
}

# --- controls ------------------------------------------------------------------------------------
step_misalign() {
    local s=$TREE/arch/mips/kernel/entry-ftrace.S d=$OUT/misalign rc=0
    mkdir -p "$d"
    cp -p "$s" "$d/entry-ftrace.S.orig"
    trap 'cp "$d/entry-ftrace.S.orig" "$s"; touch "$s"' EXIT
    # one nop between the .align 16 and the label: ftrace_regs_caller at 64 KiB + 4
    sed -i 's/^\t\.align\t16$/\t.align\t16\n\tnop/' "$s"
    ! cmp -s "$s" "$d/entry-ftrace.S.orig" || { echo "misalign: no .align 16 line in $s" >&2; exit 1; }
    log "misalign: make vmlinux with ftrace_regs_caller 4 bytes past 64 KiB (must fail)"
    make -C "$TREE" O="$O" -j"$JOBS" vmlinux RECORDPATCH="$WRAP" > "$d/build.log" 2>&1 || rc=$?
    echo "rc=$rc" > "$d/result.txt"
    grep -E 'recordpatch|Error' "$d/build.log" >> "$d/result.txt" || true
    cp "$d/entry-ftrace.S.orig" "$s"; touch "$s"; trap - EXIT
    log "misalign: exit $rc; $(grep -m1 'recordpatch' "$d/build.log" || echo 'no recordpatch message')"
    log "misalign: rebuilding the aligned vmlinux"
    make -C "$TREE" O="$O" -j"$JOBS" vmlinux RECORDPATCH="$WRAP" > "$d/rebuild.log" 2>&1 ||
        { tail -20 "$d/rebuild.log"; exit 1; }
    cmp -s "$O/vmlinux" "$OUT/pfe/vmlinux" && log "misalign: rebuilt vmlinux is byte-identical" ||
        log "misalign: WARNING: rebuilt vmlinux differs from $OUT/pfe/vmlinux"
    [ "$rc" != 0 ] || { echo "the misaligned build did not fail" >&2; exit 1; }
}

step_norepair() {
    local d=$OUT/norepair
    mkdir -p "$d"
    log "norepair: vmlinux linked from the objects as GCC left them (pads before the labels)"
    (cd "$CORPUS" && objects | xargs cp --parents -t "$O")
    make -C "$TREE" O="$O" -j"$JOBS" vmlinux > "$d/build.log" 2>&1 || { tail -20 "$d/build.log"; exit 1; }
    cp "$O/vmlinux" "$O/System.map" "$d/"
    (cd "$REPAIRED" && objects | xargs cp --parents -t "$O")
    make -C "$TREE" O="$O" -j"$JOBS" vmlinux RECORDPATCH="$WRAP" > "$d/relink.log" 2>&1 ||
        { tail -20 "$d/relink.log"; exit 1; }
    cmp -s "$O/vmlinux" "$OUT/pfe/vmlinux" && log "norepair: repaired vmlinux restored (byte-identical)" ||
        log "norepair: WARNING: restored vmlinux differs from $OUT/pfe/vmlinux"
}

# --- boot ----------------------------------------------------------------------------------------
# qemu_boot STEP DIR APPEND [INITRD]: boot DIR/vmlinux (with INITRD) into DIR/console.log,
# DIR/boot.txt (exit code, seconds); a log made from the same inputs is reused unless REDO=STEP.
qemu_boot() {
    local step=$1 d=$2 append=$3 initrd=${4:-} sha t0 rc=0
    sha=$(cat "$d/vmlinux" ${initrd:+"$initrd"} | sha256sum | cut -c1-64)
    if [ -f "$d/console.log" ] && [ "$(cat "$d/console.sha" 2>/dev/null)" = "$sha" ] && ! redo "$step"; then
        log "$step: reusing $d/console.log"
        return 0
    fi
    log "$step: $QEMU -M malta $d/vmlinux${initrd:+ -initrd $initrd} (timeout $BOOT_TIMEOUT s)"
    t0=$SECONDS
    # shellcheck disable=SC2086
    timeout "$BOOT_TIMEOUT" $QEMU -M malta -m 256 -kernel "$d/vmlinux" ${initrd:+-initrd "$initrd"} \
        -nographic -no-reboot -append "$append" < /dev/null > "$d/console.log" 2>&1 || rc=$?
    echo "rc=$rc secs=$((SECONDS - t0))" > "$d/boot.txt"
    echo "$sha" > "$d/console.sha"
}

boot_one() {  # variant dir
    local d=$1
    qemu_boot boot "$d" "console=ttyS0 panic=1"
    "$PY" "$HERE/console_summary.py" "$d/console.log" > "$d/selftest.txt"
    grep -h -E 'ftrace: [0-9]+ pads|stands before its label|ftrace failed|ftrace_regs_caller at' "$d/console.log" \
        | sed 's/^\[[ 0-9.]*\] //' >> "$d/selftest.txt" || true
    log "boot: $(cat "$d/boot.txt"); $(grep -c 'PASSED' "$d/selftest.txt" || true) PASSED, $(grep -c -E 'FAILED|NO VERDICT' "$d/selftest.txt" || true) failed"
}

step_boot() {
    local v
    for v in pfe init norepair; do [ -f "$OUT/$v/vmlinux" ] && boot_one "$OUT/$v"; done
    return 0
}

# --- trace: ftrace driven through tracefs from an initramfs ---------------------------------------
# kernel/pfe/trace-init.c as /init (static, the target's cross glibc) with drivers/net/dummy.ko:
# it loads the module, filters dev_get_stats (built in) and dummy_get_stats64 (the module), runs
# the function and function_graph tracers over reads of /proc/net/dev and prints the trace.
step_trace() {
    local d=$OUT/trace ko=$O/drivers/net/dummy.ko rc=0
    mkdir -p "$d"
    [ -f "$ko" ] || { echo "trace: $ko not built (MODULES=1 builds it)" >&2; exit 1; }
    "${CROSS_COMPILE}gcc" -static -Os -Wall -o "$d/init" "$PFE/trace-init.c"
    cp "$OUT/pfe/vmlinux" "$d/vmlinux"
    printf '%s\n' 'dir /dev 0755 0 0' 'nod /dev/console 0600 0 0 c 5 1' \
        "file /init $d/init 0755 0 0" "file /dummy.ko $ko 0644 0 0" > "$d/initramfs.list"
    "$O/usr/gen_init_cpio" "$d/initramfs.list" > "$d/initramfs.cpio"
    qemu_boot trace "$d" "console=ttyS0 panic=1 rdinit=/init" "$d/initramfs.cpio"
    "$PY" "$HERE/trace_summary.py" "$d/console.log" > "$d/result.txt" || rc=$?
    log "trace: $(cat "$d/boot.txt"); $(tail -1 "$d/result.txt")"
    [ "$rc" = 0 ] || { cat "$d/result.txt" >&2; exit 1; }
}

# --- summary -------------------------------------------------------------------------------------
step_summary() {
    "$PY" "$HERE/pfe_summary.py" "$OUT" "$E2E_ARCH" | tee "$OUT/summary.txt"
}

log "kernel-e2e $E2E_ARCH: $TIME_HINT on 2 cores"
setup
want build && step_build
want count && step_count
want audit && step_audit
want patch && step_patch
want misalign && step_misalign
want norepair && step_norepair
want boot && step_boot
want trace && step_trace
want summary && step_summary
log "done; results in $OUT"
