#!/bin/bash
# recordpatch kernel build cost (issue 14): what recording costs a whole kernel build.
# One configured tree of its own ($WORK/cost-<arch>-<version>, configured as kernel/e2e.sh
# configures its trees), built from clean with `make vmlinux modules` three ways:
#
#   ref     the reference recordmcount as scripts/recordmcount (kernel/e2e.sh's REF_TOOL: 6.1
#           Debian's linux-kbuild-6.1 binary, 6.12 the tree's own build), once per -pg object
#   dropin  recordpatch's scripts/recordmcount shim in its place, once per -pg object
#   hook    kernel/recordpatch-vmlinux-hook-<version>.patch applied, RECORDPATCH=recordpatch:
#           no object recorded, vmlinux.o once, each .ko once
#
# RUNS rounds with the variants interleaved and the order reversed every other round (ref
# dropin hook, hook dropin ref, ...), so that a steady drift of the machine weighs on all three
# alike. Each build: `make clean`, then `make -jJOBS
# vmlinux modules` under /usr/bin/time (wall, and user + system CPU of make and everything it
# ran). The hook's recorder calls are also timed one by one (RECORDPATCH under /usr/bin/time).
# Then, outside the builds, the per-object recorders alone, on the objects kernel/e2e.sh kept
# unrecorded for the same configuration (its corpus, and the module corpus if STEPS=modules ran):
# each recorded by each tool, one process per object, one at a time, under /usr/bin/time; the
# same loop running /bin/true shows what a process costs by itself; and the hook's recorder
# alone on vmlinux.o and the .ko files of the same configuration (tables stripped; kernel/e2e.sh
# keeps them).
#
#   KERNEL_VERSION=6.12 kernel/build-cost.sh           6.12 mipsel, RUNS=2
#   E2E_ARCH=mips64 RUNS=3 kernel/build-cost.sh        6.1 mips64
#   make kernel-cost KERNEL_VERSION=6.12 [KERNEL_E2E_ARCH=...] [COST_RUNS=2]
#   make kernel-cost ... COST_RUNS=0                   only the recorders alone, and the summary
# Results: $WORK/cost-<arch>-<version>.results/ (times.tsv, summary.txt); ~17 min per build
# on 2 cores (6.12 mipsel), so ~1 h 45 min for RUNS=2.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
MAIN=$(dirname "$HERE")
RUNS=${RUNS:-2}
JOBS=${JOBS:-2}
VARIANTS=${VARIANTS:-ref dropin hook}
ACCT=${ACCT:-0}   # 1: process accounting (accton, package acct) per build: CPU by command
RECORDPATCH=${RECORDPATCH:-$MAIN/.venv/bin/recordpatch}
SHIM=$MAIN/scripts/recordmcount
# shellcheck source=kernel/e2e-common.sh
. "$HERE/e2e-common.sh"   # target, version, K, REF_TOOL, CROSS_COMPILE, hook_patch
[ "$E2E_TOOLCHAIN" = gcc ] ||
    { echo "kernel-cost builds with GCC only (the reference cannot record clang's objects)" >&2; exit 2; }
KE=$K                                              # kernel/e2e.sh's names: corpus-KE, out-KE
K=$E2E_ARCH-$KERNEL_VERSION$SFX
TREE=$WORK/cost-$K                                 # a tree of its own
RES=$TREE.results
log() { printf '== [cost %s %s] %s\n' "$K" "$(date +%T)" "$*"; }
mk() { make -C "$TREE" -j"$JOBS" "$@"; }

recorder() {  # install what Kbuild runs as scripts/recordmcount (a fresh file: Kbuild keeps it)
    case $1 in
    ref|hook) cp "$REF_TOOL" "$TREE/scripts/recordmcount" ;;
    dropin) printf '#!/bin/sh\nexec %s "$@"\n' "$SHIM" > "$TREE/scripts/recordmcount" ;;
    esac
    chmod +x "$TREE/scripts/recordmcount"
}

build() {  # variant round
    local v=$1 r=$2 d=$RES/$1-$2 rp=()
    mkdir -p "$d"; rm -f "$d/recorder.times" "$d/acct-by-command.tsv"   # this round's only
    hook_patch revert
    if [ "$v" = hook ]; then
        hook_patch apply
        rp=(RECORDPATCH="/usr/bin/time -f %e\ %U\ %S -a -o $d/recorder.times $RECORDPATCH")
    fi
    mk -s clean
    # `make clean` deletes scripts/recordmcount and its .cmd; without the .cmd Kbuild builds
    # the C tool again over whatever is installed (every round of the runs before this fix
    # measured Kbuild's own recordmcount as "dropin"). So: the host tools first, untimed and
    # alike for every variant, then the recorder over them, newer than recordmcount.c with
    # its .cmd in place, which Kbuild keeps; checked after the build.
    mk -s scripts
    recorder "$v"
    cp -p "$TREE/scripts/recordmcount" "$d/recorder.installed"
    log "$v round $r: make vmlinux modules (log: $d/build.log)"
    if [ "$ACCT" = 1 ]; then rm -f "$d/pacct"; touch "$d/pacct"; accton "$d/pacct" >/dev/null; fi
    /usr/bin/time -f '%e %U %S' -o "$d/time.txt" \
        make -C "$TREE" -j"$JOBS" vmlinux modules "${rp[@]}" > "$d/build.log" 2>&1 ||
        { tail -20 "$d/build.log"; hook_patch revert; [ "$ACCT" = 1 ] && accton off; exit 1; }
    hook_patch revert
    [ "$ACCT" = 1 ] && accton off >/dev/null
    if ! cmp -s "$TREE/scripts/recordmcount" "$d/recorder.installed"; then
        echo "Kbuild replaced scripts/recordmcount during the $v round: not measured" >&2
        exit 1
    fi
    if [ "$ACCT" = 1 ]; then
        # CPU by command name (the kernel's process accounting: user + system, each process
        # cut to 10 ms): shows which work a round's total owes its difference to
        dump-acct "$d/pacct" | awk -F'|' '{gsub(/ +$/, "", $1); c[$1] += $3 + $4; n[$1]++}
            END {for (k in c) printf "%s\t%d\t%.2f\n", k, n[k], c[k] / 100}' |
            sort -t "$(printf '\t')" -k3,3 -g -r > "$d/acct-by-command.tsv"
        rm -f "$d/pacct"
    fi
    printf '%s\t%s\t%s\n' "$v" "$r" "$(tr ' ' '\t' < "$d/time.txt")" >> "$RES/times.tsv"
    log "$v round $r: wall user system: $(cat "$d/time.txt")" \
        "$( [ -f "$d/recorder.times" ] && awk '{n++; c += $2 + $3} END {printf "; %d recorder calls, %.2f s CPU", n, c}' "$d/recorder.times")"
}

timed_loop() {  # label scratch list tool: `tool LINE` in scratch for each line of list, one
    # process at a time, under one /usr/bin/time (exact to 10 ms in all); scratch removed after
    local label=$1 scratch=$2 list=$3 tool=$4
    # shellcheck disable=SC2016
    /usr/bin/time -f '%e %U %S' -o "$RES/alone-$label.time" \
        sh -c 'cd "$1" && while read -r args; do $2 $args >/dev/null 2>&1 || true; done < "$3"' \
        sh "$scratch" "$tool" "$list"
    rm -rf "$scratch"
    log "recorder alone, $label: $(wc -l < "$list") files: wall user system $(cat "$RES/alone-$label.time")"
}

CORPORA="$WORK/corpus-$KE:$WORK/out-$KE/ref/args.log $WORK/modcorpus-$KE:$WORK/out-$KE/modules/args.log"
alone() {  # tool label: record every kept object, one process each, one at a time
    local tool=$1 label=$2 scratch=$RES/alone c
    rm -rf "$scratch"; mkdir -p "$scratch"; : > "$RES/args.log"
    for c in $CORPORA; do
        [ -d "${c%%:*}" ] && [ -f "${c#*:}" ] || continue
        cp -r "${c%%:*}/." "$scratch/"; cat "${c#*:}" >> "$RES/args.log"
    done
    timed_loop "$label" "$scratch" "$RES/args.log" "$tool"
}

hook_alone() {  # the hook's own work without a build: vmlinux.o and each .ko, one process each
    local scratch=$RES/hook-alone vo=$WORK/vmlinux-$KE-notable.o kos=$WORK/modko-notable-$KE
    if [ ! -f "$vo" ] || [ ! -d "$kos" ]; then
        log "no $vo or $kos (make kernel-e2e and STEPS=modules first): no hook-alone times"
        return
    fi
    rm -rf "$scratch"; mkdir -p "$scratch"
    cp "$vo" "$scratch/vmlinux.o"; cp -r "$kos/." "$scratch/"
    (cd "$scratch" && { echo vmlinux.o; find . -name '*.ko' | sort; }) > "$RES/hook-alone.list"
    timed_loop hook "$scratch" "$RES/hook-alone.list" "$RECORDPATCH"
}

summary() {
    "${PY:-python3}" - "$RES" <<'EOF'
import statistics as st, sys
from pathlib import Path
res = Path(sys.argv[1])
rows = [l.split("\t") for l in (res / "times.tsv").read_text().splitlines() if l]
by = {}
for v, r, wall, user, sys_ in rows:
    by.setdefault(v, []).append((float(wall), float(user) + float(sys_)))
out = ["variant  runs  wall s (each)             CPU s (each)              CPU mean  vs ref"]
ref = st.mean(c for _, c in by["ref"]) if "ref" in by else None
for v, xs in by.items():
    cpu = st.mean(c for _, c in xs)
    rel = f"{100 * (cpu - ref) / ref:+.2f} %" if ref else "-"
    out.append(f"{v:<8} {len(xs):>4}  {' '.join(f'{w:.1f}' for w, _ in xs):<25} "
               f"{' '.join(f'{c:.1f}' for _, c in xs):<25} {cpu:8.1f}  {rel}")
    if len(xs) > 1:
        cs = [c for _, c in xs]
        out.append(f"{'':<8} CPU spread between runs: {max(cs) - min(cs):.1f} s "
                   f"({100 * (max(cs) - min(cs)) / st.mean(cs):.2f} %)")
for f in sorted(res.glob("hook-*/recorder.times")):
    t = [list(map(float, l.split())) for l in f.read_text().splitlines() if l.strip()]
    out.append(f"{f.parent.name}: {len(t)} recorder calls, {sum(a for a, _, _ in t):.2f} s wall, "
               f"{sum(b + c for _, b, c in t):.2f} s CPU")
def lines(name):
    f = res / name
    return sum(1 for _ in f.open()) if f.exists() else 0
def cpu(label):
    f = res / f"alone-{label}.time"
    if not f.exists():
        return None
    _, user, sys_ = map(float, f.read_text().split())
    return user + sys_
# one /usr/bin/time around each whole loop: exact to 10 ms in all (the per-call times above
# are each cut to 10 ms by GNU time's output, so their sum runs low)
n, base = lines("args.log"), cpu("baseline")
per = f"; /bin/true in the same loop {1000 * base / n:.2f} ms per process" if base and n else ""
for label, count in (("reference", n), ("recordpatch", n), ("hook", lines("hook-alone.list"))):
    c = cpu(label)
    if c is not None and count:
        what = "files (vmlinux.o, each .ko)" if label == "hook" else "objects"
        out.append(f"recorder alone, {label}: {count} {what}, {c:.2f} s CPU, "
                   f"{1000 * c / count:.2f} ms per process{per}")
acct = {}
for f in sorted(res.glob("*-*/acct-by-command.tsv")):
    acct[f.parent.name] = {c: float(t) for c, _, t in
                           (l.split("\t") for l in f.read_text().splitlines() if l)}
if acct:
    rounds = sorted(acct)
    top = sorted({c for r in rounds for c, _ in sorted(acct[r].items(), key=lambda x: -x[1])[:8]}
                 | {"recordmcount", "recordpatch", "python3", "python"},
                 key=lambda c: -max(acct[r].get(c, 0) for r in rounds))
    out.append("CPU s by command (process accounting, each process cut to 10 ms):")
    out.append(f"{'command':<16}" + "".join(f"{r:>12}" for r in rounds))
    for c in top:
        out.append(f"{c:<16}" + "".join(f"{acct[r].get(c, 0):>12.2f}" for r in rounds))
    out.append(f"{'all':<16}" + "".join(f"{sum(acct[r].values()):>12.2f}" for r in rounds))
    # cc1 is the same compilations in every variant: its CPU tracks the machine's speed in
    # that round. Each round's total (GNU time) scaled to the mean cc1 CPU: the drift taken out.
    tot = {f"{v}-{r}": float(u) + float(s_) for v, r, _, u, s_ in rows}
    cc1 = {r: acct[r]["cc1"] for r in rounds if "cc1" in acct[r] and r in tot}
    if cc1:
        m = st.mean(cc1.values())
        norm = {r: tot[r] * m / cc1[r] for r in cc1}
        out.append(f"CPU s scaled by each round's cc1 CPU (mean cc1 {m:.1f} s): " +
                   ", ".join(f"{r} {norm[r]:.1f}" for r in sorted(norm)))
        refs = [norm[r] for r in norm if r.startswith("ref-")]
        for v in ("dropin", "hook"):
            xs = [norm[r] for r in norm if r.startswith(v + "-")]
            if refs and xs:
                d = st.mean(xs) - st.mean(refs)
                out.append(f"  {v} - ref, scaled: {d:+.1f} s ({100 * d / st.mean(refs):+.2f} %)")
print("\n".join(out))
EOF
}

# --- the tree: extracted and configured by kernel/e2e.sh's own set-up, in a directory of its own
if [ ! -f "$TREE/.config" ]; then
    log "configuring $TREE with kernel/e2e.sh (E2E_CONFIGURE_ONLY=1)"
    TREE=$TREE WORK=$WORK E2E_ARCH=$E2E_ARCH KERNEL_VERSION=$KERNEL_VERSION E2E_DCE=$E2E_DCE E2E_SETUP=0 \
        E2E_CONFIGURE_ONLY=1 bash "$HERE/e2e.sh"
fi
[ -x "$REF_TOOL" ] || { echo "the reference $REF_TOOL is missing" >&2; exit 1; }
if [ "$ACCT" = 1 ] && ! command -v accton >/dev/null; then
    log "ACCT=1: installing acct (accton, dump-acct)"
    $( [ "$(id -u)" = 0 ] || echo sudo ) apt-get install -y --no-install-recommends acct >/dev/null
    accton off >/dev/null 2>&1 || true   # the package may switch accounting on for the system
fi
mkdir -p "$RES"
# A run with builds replaces the last run's results (copy them first to keep them); RUNS=0:
# no builds, the recorders alone again and the summary of the builds already timed.
if [ "$RUNS" -gt 0 ]; then rm -rf "${RES:?}"/*; : > "$RES/times.tsv"; fi
log "$RUNS rounds of: $VARIANTS (each a clean make -j$JOBS vmlinux modules)"
ORDER=$VARIANTS
for r in $(seq 1 "$RUNS"); do
    for v in $ORDER; do build "$v" "$r"; done
    ORDER=$(printf '%s\n' $ORDER | tac | tr '\n' ' ')
done
if [ -d "$WORK/corpus-$KE" ]; then
    alone /bin/true baseline   # a process per object: what every recorder pays before its work
    alone "$REF_TOOL" reference
    alone "$SHIM" recordpatch
    hook_alone
else
    log "no $WORK/corpus-$KE (make kernel-e2e for this target first): no recorder-alone times"
fi
summary | tee "$RES/summary.txt"
