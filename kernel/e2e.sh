#!/bin/bash
# recordpatch kernel-e2e: build Debian's linux-source-6.1 (or 6.12) for MIPS three ways and compare.
#
#   ref  real recordmcount per object, via a wrapper that first copies every object, unrecorded,
#        into the corpus (the object cache for the other variants). The reference: for 6.1 Debian's
#        linux-kbuild-6.1 binary; for 6.12 the tree's own scripts/recordmcount as `make scripts`
#        built it (Debian ships 6.12's only as linux-kbuild-6.12.<upload>+deb12, a name that
#        changes with every upload; docs/kernel-e2e.md)
#   B    recordpatch as the per-object drop-in: corpus objects put back, scripts/recordmcount
#        (recordpatch's shim) run on each with the arguments Kbuild used, then `make vmlinux`
#        (archives and links only; nothing is recompiled)
#   C    the whole-kernel hook: corpus objects put back unrecorded, kernel/recordpatch-vmlinux-hook-
#        <version>.patch applied, `make vmlinux RECORDPATCH=recordpatch` (records vmlinux.o once,
#        links vmlinux from it)
#
# Control links (relinks only, ~20 s each), to explain every byte that differs:
#   B-refobj  B's objects, except the reference's output for the objects whose table differs
#   ref-vmo   reference-recorded objects, linked from vmlinux.o the way C links (hook patch,
#             RECORDPATCH=true: nothing recorded at vmlinux.o)
#   B-vmo     recordpatch-recorded objects, linked from vmlinux.o the same way
#   B-quirks  B with RECORDPATCH_REFERENCE_QUIRKS=1 (recordpatch reproduces the reference's lost calls)
# then compares the ftrace tables and whole files, and boots ref, B and C in QEMU (malta).
# Re-runnable: the tree, the reference build and the corpus are reused when present; steps whose
# results exist (and, for B, C and the controls, were made by the same recordpatch sources) are
# skipped unless named in REDO (e.g. REDO="B C boot"; REDO=ref rebuilds all).
#
#   kernel/e2e.sh                     mipsel (malta_defconfig), all steps
#   E2E_ARCH=mips64 kernel/e2e.sh     mips64 big-endian n64 (malta_defconfig + 64BIT, MIPS64R2)
#   E2E_ARCH=mipsr6 kernel/e2e.sh     o32 big-endian MIPS32 release 6 (malta_defconfig + CPU_MIPS32_R6)
#   KERNEL_VERSION=6.12 kernel/e2e.sh Linux 6.12 (linux-source-6.12), any E2E_ARCH; its own trees
#                                     and results ($WORK/linux-6.12*, $WORK/out-<arch>-6.12, ...)
#   STEPS="ref B"  BOOT=0  JOBS=2  WORK=/work/kbuild  BOOT_TIMEOUT=900
#   STEPS=fixedref                    the reference with kernel/patches/recordmcount-*.patch on every
#                                     object, against recordpatch's (needs B; modules too if built)
# First it installs what the variant needs with apt-get (kernel/e2e-setup.sh: E2E_SETUP=0 skips,
# E2E_SETUP_DRYRUN=1 only prints, E2E_SETUP_ONLY=1 stops after it) and says how long it will take.
# E2E_CONFIGURE_ONLY=1 stops once the tree is extracted, configured and has the wrapper (no compile).
#
#   E2E_TOOLCHAIN=llvm kernel/e2e.sh  clang, lld and the LLVM tools (`make LLVM=1`, Debian's clang 14)
#                                     with dead-code elimination (LD_DEAD_CODE_DATA_ELIMINATION:
#                                     -ffunction-sections -fdata-sections, --gc-sections). The
#                                     reference rejects objects there ("Cannot find symbol for
#                                     section"), so ref compiles everything with make -k, keeps the
#                                     corpus and links no vmlinux; B and C are compared with each
#                                     other and with GNU objdump (kernel/calls_check.py). Own trees
#                                     and results: K gets "-llvm" ($WORK/linux-6.1-llvm, out-mipsel-llvm)
#   E2E_DCE=1 kernel/e2e.sh           GCC with the same dead-code elimination ("-dce"), to compare
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
MAIN=$(dirname "$HERE")
JOBS=${JOBS:-2}
STEPS=${STEPS:-ref B C controls quirks compare boot}   # also: modules (not in the default)
REDO=${REDO:-}
# shellcheck source=kernel/e2e-common.sh
. "$HERE/e2e-common.sh"   # target, version, K, REF_TOOL, TREE, hook_patch
SRC_TAR=${SRC_TAR:-/usr/src/linux-source-$KERNEL_VERSION.tar.xz}
RECORDPATCH=${RECORDPATCH:-$MAIN/.venv/bin/recordpatch}
SHIM=${SHIM:-$MAIN/scripts/recordmcount}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-900}
PY=${PY:-python3}

CORPUS=$WORK/corpus-$K          # unrecorded copies of every object Kbuild recorded
REFREC=$WORK/refrec-$K          # the same, recorded by the reference (one process each)
RPREC=$WORK/rprec-$K            # the same, recorded by recordpatch's shim (variant B)
RPQREC=$WORK/rpqrec-$K          # the same, recorded with RECORDPATCH_REFERENCE_QUIRKS=1
OUT=$WORK/out-$K                # ref/ B/ C/: vmlinux, vmlinux.o, System.map, logs
MODCORPUS=$WORK/modcorpus-$K    # module objects as compiled, before recording (step modules)
FINDINGS=$WORK/findings
CFG_OPTS="-e FUNCTION_TRACER -e DYNAMIC_FTRACE -e FUNCTION_GRAPH_TRACER -e FTRACE_STARTUP_TEST"
CFG_CHECK="FUNCTION_TRACER DYNAMIC_FTRACE FUNCTION_GRAPH_TRACER FTRACE_STARTUP_TEST FTRACE_MCOUNT_USE_RECORDMCOUNT $CFG_CHECK_EXTRA"
if [ "$E2E_DCE" = 1 ]; then
    # MIPS selects HAVE_LD_DEAD_CODE_DATA_ELIMINATION (arch/mips/Kconfig); the option itself
    # depends on EXPERT (init/Kconfig)
    CFG_OPTS="$CFG_OPTS -e EXPERT -e LD_DEAD_CODE_DATA_ELIMINATION"
    CFG_CHECK="$CFG_CHECK LD_DEAD_CODE_DATA_ELIMINATION"
fi
[ "$E2E_TOOLCHAIN" = llvm ] && CFG_CHECK="$CFG_CHECK CC_IS_CLANG LD_IS_LLD AS_IS_LLVM"

# Results of B, C and the controls are reused only if recordpatch's code is unchanged since:
# its sources, hashed (a commit that changes only docs or tests keeps them). The stamp also
# names the commit, for the reader.
rp_version() {
    (cd "$MAIN" && find recordpatch scripts/recordmcount -type f \( -name '*.py' -o -name recordmcount \) |
         sort | xargs sha256sum | sha256sum | sed 's/ .*//; s/^/sources /')
}
RP_VERSION=$(rp_version)
fresh() {  # variant dir, REDO word: reuse it?
    [ -f "$OUT/$1/vmlinux" ] && ! redo "$2" &&
        [ "$(grep '^sources ' "$OUT/$1/recordpatch-version.txt" 2>/dev/null)" = "$RP_VERSION" ]
}
stamp() {
    { (cd "$MAIN" && git log -1 --format='commit %H' 2>/dev/null); echo "$RP_VERSION"; } \
        > "$OUT/$1/recordpatch-version.txt"
    [ "$(rp_version)" = "$RP_VERSION" ] ||
        log "WARNING: recordpatch's sources changed during this run; $1 may mix versions (rerun with REDO)"
}

log() { printf '== [%s %s] %s\n' "$K" "$(date +%T)" "$*"; }
want() { case " $STEPS " in *" $1 "*) return 0 ;; esac; return 1; }
redo() { case " $REDO " in *" $1 "*) return 0 ;; esac; return 1; }
# shellcheck disable=SC2086
mk() { make -C "$TREE" -j"$JOBS" $MKFLAGS "$@"; }

# --- tree, configuration, the wrapper -------------------------------------------------------
setup_tree() {
    if [ ! -f "$TREE/Makefile" ]; then
        log "extracting $SRC_TAR to $TREE"
        mkdir -p "$WORK/.x" && tar -C "$WORK/.x" -xJf "$SRC_TAR"
        mv "$WORK/.x/linux-source-$KERNEL_VERSION" "$TREE" && rmdir "$WORK/.x"
    fi
    local ok=1 o
    for o in $CFG_CHECK; do grep -q "^CONFIG_$o=y" "$TREE/.config" 2>/dev/null || ok=0; done
    if [ $ok = 0 ]; then
        log "configuring malta_defconfig + ftrace options"
        mk -s malta_defconfig
        # shellcheck disable=SC2086
        (cd "$TREE" && ./scripts/config $CFG_EXTRA $CFG_OPTS)
        mk -s olddefconfig
        for o in $CFG_CHECK; do
            grep -q "^CONFIG_$o=y" "$TREE/.config" || { echo "CONFIG_$o not set" >&2; exit 1; }
        done
    fi
    local built=$WORK/recordmcount-built-$K   # the tree's own build (6.12's reference)
    if ! cmp -s "$HERE/recordmcount-wrapper" "$TREE/scripts/recordmcount" ||
        { [ "$REF_TOOL" = "$built" ] && [ ! -x "$built" ]; }; then
        log "make scripts, then scripts/recordmcount := kernel/recordmcount-wrapper"
        # the wrapper in place but the saved build gone: let Kbuild build the real one again
        rm -f "$TREE/scripts/recordmcount"
        mk -s scripts
        if file "$TREE/scripts/recordmcount" | grep -q ELF; then
            cp -p "$TREE/scripts/recordmcount" "$built"
        fi
        # newer than recordmcount.c and its .cmd unchanged: Kbuild will not rebuild it
        cp "$HERE/recordmcount-wrapper" "$TREE/scripts/recordmcount"
    fi
    [ -x "$REF_TOOL" ] || { echo "the reference $REF_TOOL is missing" >&2; exit 1; }
    log "reference recordmcount: $REF_TOOL"
}

check_wrapper() {  # Kbuild must not have replaced the wrapper
    cmp -s "$HERE/recordmcount-wrapper" "$TREE/scripts/recordmcount" ||
        { echo "scripts/recordmcount is no longer the wrapper" >&2; exit 1; }
}

save_outputs() {  # $1: variant dir
    cp "$TREE/vmlinux" "$TREE/vmlinux.o" "$TREE/System.map" "$1/"
}

copy_objects() {  # every .o under $1 into $2, at the same relative paths
    (cd "$1" && find . -name '*.o' -print0 | xargs -0 cp --parents -t "$2")
}

record_with_reference() {  # in dir $1, the reference on each object, arguments as in log $2
    (cd "$1" && tr '\n' '\0' < "$2" | xargs -0 -P "$JOBS" -n 1 sh -c 'exec $0 $1' "$REF_TOOL")
}

# Put every corpus object back into the tree, unrecorded (newer than its sources and .cmd, so
# Kbuild does not recompile it; the archives and the links are redone).
restore_corpus() {
    copy_objects "$CORPUS" "$TREE"
}

built_lines() {  # compile steps in a build log that are not part of every link
    # (the kallsyms objects: .tmp_vmlinux.kallsyms1.o in 6.1, .tmp_vmlinux1.kallsyms.o in 6.12)
    grep -E '^  (CC|AS)\b' "$1" |
        grep -v -E 'init/version-timestamp.o|\.vmlinux\.export\.o|\.tmp_vmlinux[^ ]*kallsyms[^ ]*\.o' || true
}

# --- ref: the one real build ----------------------------------------------------------------
step_ref() {
    local d=$OUT/ref
    if [ -f "$d/build.secs" ] && ! redo ref; then log "ref: reusing $d"; return; fi
    mkdir -p "$d"
    if [ -f "$TREE/vmlinux.o" ] || redo ref; then
        log "ref: make clean (the corpus must see every object compiled)"
        hook_patch revert
        mk -s clean
    fi
    rm -rf "$CORPUS" "$d"/*; mkdir -p "$CORPUS"
    REDO="$REDO B C controls quirks boot"   # everything downstream uses the new corpus
    check_wrapper
    log "ref: make vmlinux (log: $d/build.log)"
    local t0=$SECONDS rc=0 keep=()
    # where the reference may reject objects, compile everything anyway: the wrapper has kept
    # each object before the reference ran, and B and C record them all
    [ "$E2E_DCE" = 1 ] && keep=(-k)
    E2E_CORPUS=$CORPUS E2E_ARGLOG=$d/args.log E2E_RECORD=$REF_TOOL mk "${keep[@]}" vmlinux \
        > "$d/build.log" 2>&1 || rc=$?
    echo "$((SECONDS - t0))" > "$d/build.secs"
    # Kbuild deletes an object the recorder failed on: "*** [scripts/Makefile.build:NNN: x.o] Error 1"
    grep -o '\*\*\* \[[^]]*: [^] ]*\.o\] Error' "$d/build.log" | sed 's/.*: \(.*\.o\)\] Error/\1/' |
        sort -u > "$d/rejected.txt" || true
    if [ $rc != 0 ]; then
        if [ -s "$d/rejected.txt" ] && [ "$E2E_DCE" = 1 ] &&
           [ "$(grep -c 'Cannot find symbol for section' "$d/build.log")" -ge "$(wc -l < "$d/rejected.txt")" ]; then
            log "ref: the reference build stops: recordmcount rejected $(wc -l < "$d/rejected.txt") objects" \
                "(\"Cannot find symbol for section\"; $d/rejected.txt), so no vmlinux"
        else
            tail -20 "$d/build.log"; exit 1
        fi
    fi
    check_wrapper
    [ $rc = 0 ] && save_outputs "$d"
    log "ref: $(wc -l < "$d/args.log") objects given to the reference, $(find "$CORPUS" -name '*.o' | wc -l) in corpus, $(cat "$d/build.secs") s"
}

# --- B: recordpatch as the per-object drop-in -----------------------------------------------
record_each() {  # one process per object, the way Kbuild runs it; $1 tool, args on stdin
    local tool=$1 failed=$2
    : > "$failed"
    # shellcheck disable=SC2016
    tr '\n' '\0' | xargs -0 -P "$JOBS" -n 1 sh -c '
        out=$($0 $2 2>&1) || { rc=$?; printf "%s\trc=%s\t%s\n" "$2" "$rc" "$(echo "$out" | tr "\n" " ")" >> "$1"; }
        [ -z "$out" ] || printf "%s: %s\n" "$2" "$out"
    ' "$tool" "$failed"
}

step_B() {
    local d=$OUT/B
    if fresh B B; then log "B: reusing $d"; return; fi
    rm -rf "$d"; mkdir -p "$d"
    hook_patch revert
    check_wrapper
    log "B: restore corpus, run $SHIM on each object (args as Kbuild passed them)"
    restore_corpus
    local t0=$SECONDS
    (cd "$TREE" && record_each "$SHIM" "$d/failed.txt" < "$OUT/ref/args.log" > "$d/record.log" 2>&1)
    echo "$((SECONDS - t0))" > "$d/record.secs"
    if [ -s "$d/failed.txt" ]; then
        log "B: recordpatch FAILED on $(wc -l < "$d/failed.txt") objects (see $d/failed.txt, $FINDINGS)"
        cut -f1 "$d/failed.txt" | sed 's/^-w //' | save_findings failed
    fi
    rm -rf "$RPREC"; mkdir -p "$RPREC"
    objects | (cd "$TREE" && xargs cp --parents -t "$RPREC")
    per_object_diff "$d"
    log "B: make vmlinux (anything Kbuild records now goes through recordpatch's shim)"
    t0=$SECONDS
    E2E_ARGLOG=$d/args.log E2E_RECORD=$SHIM mk vmlinux > "$d/build.log" 2>&1 ||
        { tail -20 "$d/build.log"; exit 1; }
    echo "$((SECONDS - t0))" > "$d/build.secs"
    built_lines "$d/build.log" > "$d/recompiled.txt"
    check_wrapper
    save_outputs "$d"; stamp B
    log "B: done, recompiled: $(wc -l < "$d/recompiled.txt") files, record $(cat "$d/record.secs") s, make $(cat "$d/build.secs") s"
}

objects() { sed 's/^-w //' "$OUT/ref/args.log"; }

save_findings() {  # $1 kind; object paths on stdin: keep the unrecorded input
    local f
    while read -r f; do
        mkdir -p "$FINDINGS/$K/$1/$(dirname "$f")"; cp "$CORPUS/$f" "$FINDINGS/$K/$1/$f"
    done
}

# Each object recorded by the reference (a scratch copy, one process per object, as Kbuild runs
# it) vs by recordpatch (variant B): identical, padding-only (bytes outside every section and
# header differ), or a different table.
per_object_diff() {
    local d=$1
    log "B: per-object comparison with the reference (scratch copies in $REFREC)"
    rm -rf "$REFREC"; mkdir -p "$REFREC"
    copy_objects "$CORPUS" "$REFREC"
    record_with_reference "$REFREC" "$OUT/ref/args.log" > "$d/refrec.log" 2>&1 || true
    objects | xargs "$PY" "$HERE/mcount_table.py" objdiff "$REFREC" "$RPREC" > "$d/objdiff.txt"
    log "B: per object: $(tail -1 "$d/objdiff.txt")"
    grep -v -E '^summary|: padding-only:' "$d/objdiff.txt" | cut -d: -f1 > "$d/table-diff.txt" || true
    save_findings table < "$d/table-diff.txt"
    grep ': padding-only:' "$d/objdiff.txt" | cut -d: -f1 | save_findings padding || true
    lost_calls "$d/objdiff.txt" "$OUT/ref/rejected.txt" > "$d/lost.txt"
    log "B: $(cat "$d/lost.txt")"
}

# From an objdiff listing: what recordpatch records beyond the reference in the objects the
# reference accepted (the calls its filter loses), and in the ones it rejected.
lost_calls() {  # objdiff.txt rejected.txt
    awk -v rej="$2" '
        BEGIN { while ((getline f < rej) > 0) r[f] = 1 }
        /: table: reference [0-9]+ entries, recordpatch [0-9]+;/ {
            f = $1; sub(/:$/, "", f)
            a = $4; b = $7; sub(/;$/, "", b)
            if (f in r) { rn++; re += b } else { n++; lost += b - a }
        }
        END { printf "recordpatch records %d more call(s) than the reference in %d of the objects it accepted", lost, n
              if (rn) printf "; %d entries in the %d objects it rejected", re, rn
              printf "\n" }' "$1"
}

# --- C: the whole-kernel hook ---------------------------------------------------------------
step_C() {
    local d=$OUT/C
    if fresh C C; then log "C: reusing $d"; return; fi
    rm -rf "$d"; mkdir -p "$d"
    check_wrapper
    log "C: restore corpus (unrecorded), apply the hook patch, make vmlinux RECORDPATCH=..."
    restore_corpus
    hook_patch apply
    trap 'hook_patch revert' EXIT
    local t0=$SECONDS
    # The hook command is timed; Kbuild runs it as `$(RECORDPATCH) vmlinux.o`.
    E2E_ARGLOG=$d/args.log E2E_RECORD=$SHIM \
        mk vmlinux RECORDPATCH="/usr/bin/time -f %e -a -o $d/hook.secs $RECORDPATCH" > "$d/build.log" 2>&1 ||
        { tail -20 "$d/build.log"; exit 1; }
    echo "$((SECONDS - t0))" > "$d/build.secs"
    hook_patch revert
    trap - EXIT
    touch "$d/args.log"
    built_lines "$d/build.log" > "$d/recompiled.txt"
    check_wrapper
    save_outputs "$d"; stamp C
    log "C: done, per-object recordmcount calls: $(wc -l < "$d/args.log"), hook $(cat "$d/hook.secs") s, make $(cat "$d/build.secs") s"
}

# --- controls: relinks that explain the differences --------------------------------------------
link_variant() {  # name via-vmlinux.o(0|1) objdir [objdir2 list2]: corpus + overlays, then make vmlinux
    local name=$1 vmo=$2 dir=$3 dir2=${4:-} list2=${5:-} d=$OUT/$1
    if fresh "$name" controls; then log "$name: reusing $d"; return; fi
    rm -rf "$d"; mkdir -p "$d"
    check_wrapper
    restore_corpus
    objects | (cd "$dir" && xargs cp --parents -t "$TREE")
    if [ -n "$dir2" ] && [ -s "$list2" ]; then (cd "$dir2" && xargs cp --parents -t "$TREE") < "$list2"; fi
    local t0=$SECONDS rc=0
    if [ "$vmo" = 1 ]; then
        hook_patch apply
        E2E_ARGLOG=$d/args.log mk vmlinux RECORDPATCH=true > "$d/build.log" 2>&1 || rc=$?
        hook_patch revert
    else
        E2E_ARGLOG=$d/args.log E2E_RECORD=$SHIM mk vmlinux > "$d/build.log" 2>&1 || rc=$?
    fi
    [ $rc = 0 ] || { tail -20 "$d/build.log"; exit 1; }
    echo "$((SECONDS - t0))" > "$d/build.secs"
    built_lines "$d/build.log" > "$d/recompiled.txt"
    save_outputs "$d"; stamp "$name"
    log "$name: linked in $(cat "$d/build.secs") s"
}

step_controls() {
    if [ ! -f "$OUT/ref/vmlinux" ]; then
        log "controls: skipped (no reference vmlinux to explain differences against)"; return
    fi
    link_variant B-refobj 0 "$RPREC" "$REFREC" "$OUT/B/table-diff.txt"
    link_variant ref-vmo 1 "$REFREC"
    link_variant B-vmo 1 "$RPREC"
}

# --- quirks: recordpatch asked to reproduce the reference's table exactly ---------------------
step_quirks() {
    local d=$OUT/B-quirks
    if fresh B-quirks quirks; then log "B-quirks: reusing $d"; return; fi
    log "B-quirks: record scratch copies with RECORDPATCH_REFERENCE_QUIRKS=1 (in $RPQREC)"
    rm -rf "$RPQREC" "$d"; mkdir -p "$RPQREC"
    copy_objects "$CORPUS" "$RPQREC"
    (cd "$RPQREC" && RECORDPATCH_REFERENCE_QUIRKS=1 record_each "$SHIM" "$d.failed.txt" \
        < "$OUT/ref/args.log" > "$d.record.log" 2>&1)
    if [ -s "$d.failed.txt" ]; then
        log "B-quirks: recordpatch FAILED on $(wc -l < "$d.failed.txt") objects (see $d/failed.txt)"
        cut -f1 "$d.failed.txt" | sed 's/^-w //' | save_findings failed-quirks
    fi
    objects | xargs "$PY" "$HERE/mcount_table.py" objdiff "$REFREC" "$RPQREC" > "$d.objdiff.txt"
    log "B-quirks: per object: $(tail -1 "$d.objdiff.txt")"
    link_variant B-quirks 0 "$RPQREC"
    for f in failed.txt record.log objdiff.txt; do mv "$d.$f" "$d/$f"; done
}

# --- modules: every loadable module of the configuration ---------------------------------------
# `make modules` with the reference recording each module object (-mlong-calls: the
# lui/addiu/move/jalr sites) and the wrapper keeping the unrecorded objects. Then:
#   per object  reference vs recordpatch's shim on scratch copies (identical / padding-only / table)
#   whole .ko   each built module with its table stripped, recorded by recordpatch in one process:
#               its sites must be the reference's (the union of the per-object tables ld -r merged)
#   audit       `recordpatch audit` of the built modules (read-only; every entry a real call site)
#   hook        the same objects, unrecorded, linked again with the hook patch: Kbuild records
#               each .ko once (modules_hook)
step_modules() {
    local d=$OUT/modules
    if [ -f "$d/build.secs" ] && ! redo modules; then
        log "modules: reusing the build in $d"
    else
        # a second build must compile the module objects again, or the wrapper sees none
        if [ -d "$MODCORPUS" ]; then
            (cd "$MODCORPUS" && find . -name '*.o' -print0) | (cd "$TREE" && xargs -0 rm -f)
        fi
        rm -rf "$d" "$MODCORPUS"; mkdir -p "$d" "$MODCORPUS"
        hook_patch revert
        check_wrapper
        log "modules: make modules, recorded by the reference (log: $d/build.log)"
        local t0=$SECONDS
        E2E_CORPUS=$MODCORPUS E2E_ARGLOG=$d/args.log E2E_RECORD=$REF_TOOL mk modules \
            > "$d/build.log" 2>&1 || { tail -20 "$d/build.log"; exit 1; }
        echo "$((SECONDS - t0))" > "$d/build.secs"
        check_wrapper
        mkdir -p "$d/ko"
        (cd "$TREE" && find . -name '*.ko' -newer "$d/args.log" -print0 | xargs -0 cp --parents -t "$d/ko")
    fi
    log "modules: $(wc -l < "$d/args.log") module objects recorded in $(cat "$d/build.secs") s, $(find "$d/ko" -name '*.ko' | wc -l) modules"
    local mref=$WORK/modrefrec-$K mrp=$WORK/modrprec-$K
    rm -rf "$mref" "$mrp"; mkdir -p "$mref" "$mrp"
    copy_objects "$MODCORPUS" "$mref"
    copy_objects "$MODCORPUS" "$mrp"
    record_with_reference "$mref" "$d/args.log" > "$d/refrec.log" 2>&1 || true
    (cd "$mrp" && record_each "$SHIM" "$d/failed.txt" < "$d/args.log" > "$d/record.log" 2>&1)
    [ -s "$d/failed.txt" ] && log "modules: recordpatch FAILED on $(wc -l < "$d/failed.txt") objects ($d/failed.txt)"
    sed 's/^-w //' "$d/args.log" | xargs "$PY" "$HERE/mcount_table.py" objdiff "$mref" "$mrp" > "$d/objdiff.txt"
    log "modules: per object: $(tail -1 "$d/objdiff.txt")"
    local kon=$WORK/modko-notable-$K
    rm -rf "$kon"; mkdir -p "$kon"
    (cd "$d/ko" && find . -name '*.ko' | sort) > "$d/ko.list"
    (cd "$d/ko" && xargs cp --parents -t "$kon") < "$d/ko.list"
    (cd "$kon" && while read -r f; do   # objcopy takes one input file (a second is its output)
        ${CROSS_COMPILE}objcopy -R __mcount_loc -R .rel__mcount_loc -R .rela__mcount_loc "$f"; done) \
        < "$d/ko.list"
    local t0=$SECONDS rc=0
    (cd "$kon" && xargs "$RECORDPATCH" record < "$d/ko.list") > "$d/ko-record.log" 2>&1 || rc=$?
    log "modules: $(wc -l < "$d/ko.list") stripped .ko recorded by one recordpatch process in $((SECONDS - t0)) s (exit $rc)"
    xargs "$PY" "$HERE/mcount_table.py" kodiff "$d/ko" "$kon" < "$d/ko.list" > "$d/kodiff.txt"
    log "modules: whole .ko vs the reference's merged tables: $(tail -1 "$d/kodiff.txt")"
    rc=0
    "$RECORDPATCH" audit --json "$d/ko" > "$d/audit.json" 2> "$d/audit.err" || rc=$?
    log "modules: recordpatch audit of the built modules: exit $rc, $("$PY" -c 'import json,sys
r = json.load(open(sys.argv[1])); s = r.get("summary", r)
print(", ".join(f"{k} {v}" for k, v in s.items() if not isinstance(v, (dict, list))))' "$d/audit.json" 2>/dev/null || echo "see $d/audit.json")"
}

# The hook for modules (kernel/recordpatch-vmlinux-hook-<version>.patch, scripts/Makefile.modfinal):
# the module objects as compiled put back unrecorded, `make modules RECORDPATCH=...`; Kbuild links
# each .ko (ld -r of the module and its .mod.o) and runs `$RECORDPATCH <module>.ko` once on it.
# The wrapper logs every per-object recorder call Kbuild makes: none is expected. Each .ko's table
# is compared with the reference build's (the union of its per-object tables) and audited.
modules_hook() {
    local d=$OUT/modules h=$OUT/modules/hook
    rm -rf "$h"; mkdir -p "$h/ko"
    check_wrapper
    log "modules hook: module objects put back unrecorded, make modules RECORDPATCH=... (log: $h/build.log)"
    copy_objects "$MODCORPUS" "$TREE"
    hook_patch apply
    trap 'hook_patch revert' EXIT
    local t0=$SECONDS
    # each `$(RECORDPATCH) <module>.ko` appends "wall user system" seconds to hook.times
    E2E_ARGLOG=$h/args.log E2E_RECORD=$SHIM \
        mk modules RECORDPATCH="/usr/bin/time -f '%e %U %S' -a -o $h/hook.times $RECORDPATCH" \
        > "$h/build.log" 2>&1 || { tail -20 "$h/build.log"; exit 1; }
    echo "$((SECONDS - t0))" > "$h/build.secs"
    hook_patch revert
    trap - EXIT
    check_wrapper
    touch "$h/args.log" "$h/hook.times"
    (cd "$TREE" && xargs cp --parents -t "$h/ko") < "$d/ko.list"
    log "modules hook: per-object recordmcount calls: $(wc -l < "$h/args.log"), .ko recorded:" \
        "$(wc -l < "$h/hook.times") in $(awk '{w += $1; c += $2 + $3} END {printf "%.1f s wall, %.1f s CPU", w, c}' \
        "$h/hook.times"), make $(cat "$h/build.secs") s"
    xargs "$PY" "$HERE/mcount_table.py" kodiff "$d/ko" "$h/ko" < "$d/ko.list" > "$h/kodiff.txt"
    log "modules hook: each .ko vs the reference build's: $(tail -1 "$h/kodiff.txt")"
    local rc=0
    "$RECORDPATCH" audit --json "$h/ko" > "$h/audit.json" 2> "$h/audit.err" || rc=$?
    log "modules hook: recordpatch audit of the hook-built modules: exit $rc, $("$PY" -c 'import json,sys
s = json.load(open(sys.argv[1]))["summary"]
print(", ".join(f"{k} {v}" for k, v in s.items() if not isinstance(v, (dict, list))))' "$h/audit.json" 2>/dev/null || echo "see $h/audit.json")"
}

# --- fixedref: the reference with its +4 filter kept within one section ----------------------
# kernel/patches/recordmcount-<version>.patch applied to the kernel's own recordmcount.c, built as
# Kbuild builds it (kernel/fixed-recordmcount.sh); every corpus object recorded by it (one process
# each, Kbuild's arguments) against recordpatch's per-object output (B; and the modules' if
# STEPS=modules ran). Expected: no table difference, only the reference's padding bytes.
FIXED_REF_VERSION=${FIXED_REF_VERSION:-${KERNEL_VERSION:-6.1}}
step_fixedref() {
    local d=$OUT/fixedref tool
    mkdir -p "$d"
    tool=$(SRC_TAR=$SRC_TAR "$HERE/fixed-recordmcount.sh" "$FIXED_REF_VERSION" \
        "$WORK/recordmcount-fixed-$FIXED_REF_VERSION")
    [ -d "$RPREC" ] || { log "fixedref: no $RPREC: run step B first"; exit 1; }
    log "fixedref: $tool (kernel/patches/recordmcount-$FIXED_REF_VERSION.patch) on every object"
    local fix=$WORK/fixrec-$K
    rm -rf "$fix"; mkdir -p "$fix"
    copy_objects "$CORPUS" "$fix"
    REF_TOOL=$tool record_with_reference "$fix" "$OUT/ref/args.log" > "$d/record.log" 2>&1 || true
    objects | xargs "$PY" "$HERE/mcount_table.py" objdiff "$fix" "$RPREC" > "$d/objdiff.txt"
    log "fixedref: built-in objects, patched reference vs recordpatch: $(tail -1 "$d/objdiff.txt")"
    local mrp=$WORK/modrprec-$K margs=$OUT/modules/args.log
    if [ -d "$mrp" ] && [ -f "$margs" ]; then
        fix=$WORK/modfixrec-$K
        rm -rf "$fix"; mkdir -p "$fix"
        copy_objects "$MODCORPUS" "$fix"
        REF_TOOL=$tool record_with_reference "$fix" "$margs" > "$d/modrecord.log" 2>&1 || true
        sed 's/^-w //' "$margs" | xargs "$PY" "$HERE/mcount_table.py" objdiff "$fix" "$mrp" \
            > "$d/modobjdiff.txt"
        log "fixedref: module objects, patched reference vs recordpatch: $(tail -1 "$d/modobjdiff.txt")"
    fi
}

# --- compare, boot ----------------------------------------------------------------------------
cmp_report() {  # json file, ref, others...
    local j=$1; shift
    "$PY" "$HERE/mcount_table.py" compare "$@" > "$j" || true
    "$PY" - "$j" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
def line(t, extra=""):
    print(f"  {t['path']}: {t['count']} entries, addr digest {t['addr_digest']}, sha256 {t['sha256'][:16]}{extra}")
line(r["ref"])
for o in r["others"]:
    line(o, f"; same count {o['same_count']}, same addresses {o['same_addresses']}, same functions "
            f"{o['same_functions']}, same table bytes {o['same_table_bytes']}, byte-identical {o['byte_identical']}")
    if not o["same_functions"]:
        print(f"      only in {o['path']}: {o['only_in_other']}; only in the first: {o['only_in_ref']}")
    for s in o.get("section_diff", [])[:12]:
        print("      ", s)
EOF
}

step_compare() {
    local v others=() base=ref
    [ -f "$OUT/ref/vmlinux" ] || base=B   # the reference could not build one
    for v in B C B-refobj B-quirks; do
        [ "$v" != $base ] && [ -f "$OUT/$v/vmlinux" ] && others+=("$OUT/$v/vmlinux")
    done
    log "compare with $base: ftrace tables and whole files (-> $OUT/compare.json)"
    cmp_report "$OUT/compare.json" "$OUT/$base/vmlinux" "${others[@]}"
    # each table against every `jal _mcount` GNU objdump finds, and the weak-only sections
    for v in ref B C; do
        [ -f "$OUT/$v/vmlinux" ] || continue
        "$PY" "$HERE/calls_check.py" "$CROSS_COMPILE" "$OUT/$v/vmlinux" "$CORPUS" "$OUT/ref/args.log" \
            > "$OUT/$v/calls.txt" || true
        log "calls ($v): $(tr '\n' ' ' < "$OUT/$v/calls.txt")"
    done
    if [ -f "$OUT/B-vmo/vmlinux" ] && [ -f "$OUT/C/vmlinux" ]; then
        log "compare, all linked from vmlinux.o: B-vmo vs ref-vmo and C (-> $OUT/compare-vmo.json)"
        cmp_report "$OUT/compare-vmo.json" "$OUT/B-vmo/vmlinux" "$OUT/ref-vmo/vmlinux" "$OUT/C/vmlinux"
    fi
    [ -f "$OUT/ref/vmlinux.o" ] || return 0
    log "stripped reference vmlinux.o for benchmarks -> $WORK/vmlinux-$K-notable.o"
    ${CROSS_COMPILE}objcopy -R __mcount_loc -R .rel__mcount_loc -R .rela__mcount_loc \
        "$OUT/ref/vmlinux.o" "$WORK/vmlinux-$K-notable.o"
}

boot_one() {  # $1 variant dir
    local d=$1 sha
    sha=$(sha256sum "$d/vmlinux" | cut -c1-64)
    if [ -f "$d/console.log" ] && [ "$(cat "$d/console.sha" 2>/dev/null)" = "$sha" ] && ! redo boot; then
        log "boot: reusing $d/console.log"
    else
        log "boot: $QEMU -M malta $d/vmlinux (timeout $BOOT_TIMEOUT s)"
        local t0=$SECONDS rc=0
        # shellcheck disable=SC2086
        timeout "$BOOT_TIMEOUT" $QEMU -M malta -m 256 -kernel "$d/vmlinux" -nographic -no-reboot \
            -append "console=ttyS0 panic=1" < /dev/null > "$d/console.log" 2>&1 || rc=$?
        echo "rc=$rc secs=$((SECONDS - t0))" > "$d/boot.txt"
        echo "$sha" > "$d/console.sha"
    fi
    "$PY" "$HERE/console_summary.py" "$d/console.log" > "$d/selftest.txt"
    log "boot: $(cat "$d/boot.txt"); $(grep -c PASSED "$d/selftest.txt" || true) PASSED lines"
}

step_boot() {
    local v
    for v in ref B C; do [ -f "$OUT/$v/vmlinux" ] && boot_one "$OUT/$v"; done
    local base=ref
    [ -f "$OUT/ref/selftest.txt" ] || base=B   # no reference kernel (E2E_TOOLCHAIN=llvm)
    for v in B C; do
        [ "$v" != $base ] && [ -f "$OUT/$v/selftest.txt" ] || continue
        if diff -q "$OUT/$base/selftest.txt" "$OUT/$v/selftest.txt" >/dev/null; then
            log "boot: $v self-test lines identical to $base"
        else
            log "boot: $v self-test lines DIFFER from $base:"; diff "$OUT/$base/selftest.txt" "$OUT/$v/selftest.txt" || true
        fi
    done
}

. "$HERE/e2e-setup.sh"
e2e_setup
[ "${E2E_SETUP_ONLY:-0}" = 1 ] && exit 0
mkdir -p "$WORK" "$OUT"
setup_tree
[ "${E2E_CONFIGURE_ONLY:-0}" = 1 ] && { log "configured $TREE; stopping (E2E_CONFIGURE_ONLY=1)"; exit 0; }
want ref && step_ref
want B && step_B
want C && step_C
want controls && step_controls
want quirks && step_quirks
want compare && step_compare
want modules && { step_modules; modules_hook; }
want fixedref && step_fixedref
if want boot && [ "$BOOT" = 1 ]; then step_boot; fi
log "done; results in $OUT"
