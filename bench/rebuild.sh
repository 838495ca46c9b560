#!/bin/bash
# Benchmark: a rebuild of real DKMS modules for two kernels, the stock way
# against dkms-hook, side by side in one run.
#
#   (a) stock: `dkms add` each module, one `dkms install --no-depmod` per
#       module x kernel, one at a time, then depmod per kernel (bench/stock.sh,
#       what Arch's own dkms hook does);
#   (b) dkms-hook: `dkms-hook --root R` (no command: bring every kernel up to
#       date), which runs the same dkms calls in parallel.
#
# Each run starts from a fresh copy of one template root: the module sources
# (real Debian `-dkms` sources, extracted by tests/setup.sh), two kernels whose
# `build` links to the machine's real headers (the two newest
# /usr/src/linux-headers-6.1.0-*-amd64) and an empty dkms tree. The variants
# alternate (a b, b a, ...). Per run and as medians it prints the floor, both
# walls and their ratios to the floor. The floor is what no schedule on these
# cores can beat: max(the longest single build, the stock CPU work / cores),
# where the longest single build is the stock way's longest `dkms install` of
# one pair (its per-call times, make at dkms's default -j, are in its log) and
# the CPU work is the stock run's user+sys of every child. Goal: dkms-hook's
# wall <= 1.05 x the floor. Every run must end with every module installed for
# every kernel, and `dkms status` of the two variants must be the same.
#
# The default set is the seven small sources that tests/setup.sh extracts and
# two large ones that `tests/setup.sh --bench` adds: jool (jool-dkms, about 70
# C files, one long parallel make and two short serial ones) and dahdi (about
# 100 C files; its MAKE is a subshell of two makes that dkms gives no -j: one
# long serial step).
#
# The whole run happens in a private mount namespace: tmpfs over the roots
# and over /var/lib/dkms (dkms 3.0.10 keeps its signing key there whatever
# trees it is given), an overlay over /lib/modules; the machine is left as it
# was. Logs of every run are kept in a directory printed at the end.
#
# Usage (as root, after `cargo build --release` and `tests/setup.sh`):
#   bench/rebuild.sh [-n RUNS] [MODULE...]
#     -n RUNS   runs of each variant (default 3)
#     MODULE    source directory prefixes under tests/.cache/sources/usr/src
#               (default: the seven small ones and the two large ones above)
#   DKMS_HOOK=PATH      the binary (default target/release/dkms-hook)
#   DKMS_HOOK_ARGS=...  extra arguments for dkms-hook, e.g. "-j 3"
#   DKMS=PATH           the dkms both ways run (default: dkms, from PATH), e.g.
#                       tests/.cache/dkms-3.4.3/dkms, which tests/setup.sh builds
#
# dkms 3.4 signs nothing in a chroot unless told, and counts this script's
# private mount namespace as one: both ways run with try_sign_modules=true in
# their environment, so every dkms version signs, as on a live system.
set -euo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sources=$repo/tests/.cache/sources/usr/src
bin=${DKMS_HOOK:-$repo/target/release/dkms-hook}
dkms=${DKMS:-dkms}
# A path for both ways: dkms-hook takes DKMS_HOOK_DKMS as a path, not a name.
if [[ $dkms == */* ]]; then dkms=$(realpath "$dkms"); else dkms=$(command -v "$dkms" || echo "$dkms"); fi
# The same dkms for both ways: bench/stock.sh reads DKMS, dkms-hook DKMS_HOOK_DKMS.
export DKMS=$dkms DKMS_HOOK_DKMS=$dkms try_sign_modules=true

die() {
    echo "bench/rebuild.sh: $*" >&2
    exit 2
}

# Outside the namespace: check, make the scratch and log directories, and run
# this script again inside a private mount namespace.
if [[ ${1:-} != --in-namespace ]]; then
    ((EUID == 0)) || die "must run as root (dkms installs modules; everything stays in a sandbox)"
    command -v "$dkms" >/dev/null || die "$dkms: not found: run tests/setup.sh as root"
    [[ -x $bin ]] || die "$bin: not found: run cargo build --release first"
    [[ -d $sources ]] || die "$sources: not found: run tests/setup.sh as root first"
    scratch=$(mktemp -d /tmp/dkms-hook-rebuild.XXXXXX)
    logs=$(mktemp -d /tmp/dkms-hook-rebuild-logs.XXXXXX)
    trap 'rmdir "$scratch"' EXIT
    status=0
    unshare -m --propagation private bash "${BASH_SOURCE[0]}" --in-namespace "$scratch" "$logs" "$@" ||
        status=$?
    exit "$status"
fi
scratch=$2 logs=$3
shift 3

runs=3
while getopts n: opt; do
    case $opt in
    n) runs=$OPTARG ;;
    *) die "usage: bench/rebuild.sh [-n RUNS] [MODULE...]" ;;
    esac
done
shift $((OPTIND - 1))
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "-n $runs: not a positive number"
wanted=("$@")
if ((!${#wanted[@]})); then
    wanted=(acpi-call v4l2loopback vpoll gost-crypto tp_smapi dm-writeboost ddcci jool-dkms dahdi)
    for big in jool-dkms dahdi; do
        compgen -G "$sources/$big-[0-9]*/dkms.conf" >/dev/null ||
            die "$sources/$big-*: no such module source: run tests/setup.sh --bench as root (the large sources are for the benchmarks only)"
    done
fi

# The sandbox. Mounts vanish with the namespace.
mount -t tmpfs tmpfs "$scratch"
mkdir -p /var/lib/dkms "$scratch/upper" "$scratch/work" "$scratch/roots"
for dir in /var/lib/dkms /var/lib/shim-signed; do
    [[ -d $dir ]] && mount -t tmpfs -o mode=0755 tmpfs "$dir"
done
# dkms 3.0.10 runs depmod on /lib/modules unless --no-depmod: catch any write.
modules_dir=$(readlink -f /lib/modules)
if [[ -d $modules_dir ]]; then
    mount -t overlay overlay \
        -o "lowerdir=$modules_dir,upperdir=$scratch/upper,workdir=$scratch/work" "$modules_dir"
fi
# The signing key dkms would make on its first build: made once here, so
# neither variant pays for it. The stock way's dkms looks for it in
# /var/lib/dkms; dkms-hook, under --root, points dkms at the root's
# var/lib/dkms (the template's copy below).
if command -v openssl >/dev/null; then
    openssl req -new -x509 -nodes -days 36500 -subj "/CN=DKMS module signing key" \
        -newkey rsa:2048 -keyout /var/lib/dkms/mok.key \
        -outform DER -out /var/lib/dkms/mok.pub >/dev/null 2>&1
fi

# The two newest kernels with Debian headers.
mapfile -t kernels < <(compgen -G '/usr/src/linux-headers-6.1.0-*-amd64' |
    sed 's|^/usr/src/linux-headers-||' | sort -V | tail -n 2)
((${#kernels[@]} == 2)) || die "need the headers of two kernels in /usr/src/linux-headers-6.1.0-*-amd64"

# The template root.
template=$scratch/template
mkdir -p "$template/usr/src" "$template/var/lib/dkms"
if [[ -f /var/lib/dkms/mok.key ]]; then cp -a /var/lib/dkms/mok.key /var/lib/dkms/mok.pub "$template/var/lib/dkms/"; fi
picked=()
for w in "${wanted[@]}"; do
    dir=$(compgen -G "$sources/$w-[0-9]*" | sort -V | tail -n 1 || true)
    [[ $dir && -f $dir/dkms.conf ]] || die "$sources/$w-*: no such module source"
    cp -a "$dir" "$template/usr/src/"
    picked+=("${dir##*/}")
done
for k in "${kernels[@]}"; do
    mkdir -p "$template/usr/lib/modules/$k"
    ln -s "/usr/src/linux-headers-$k" "$template/usr/lib/modules/$k/build"
    : >"$template/usr/lib/modules/$k/modules.order"
done
cores=$(nproc)

# Warm the page cache with the headers, so the first run is not the only one
# that reads them from disk.
for k in "${kernels[@]}"; do
    find "/usr/src/linux-headers-$k/" "/usr/src/linux-headers-${k%-amd64}-common/" -type f -print0 \
        2>/dev/null | xargs -0 cat >/dev/null 2>&1 || true
done

# `dkms status` of a root, as the referee.
dkms_status() {
    local r=$1
    "$dkms" status --sourcetree "$r/usr/src" --dkmstree "$r/var/lib/dkms" \
        --installtree "$r/usr/lib/modules" 2>&1 | sort
}

# Prefixes each line of stdin with the seconds since the first one was
# awaited, so the job lines of dkms-hook show when each job ran.
stamp() {
    local start=${EPOCHREALTIME/./} line us
    while IFS= read -r line; do
        us=$((${EPOCHREALTIME/./} - start))
        printf '%4d.%03d %s\n' $((us / 1000000)) $((us / 1000 % 1000)) "$line"
    done
}

# How full the machine was during a dkms-hook run, from its stamped job lines:
# the time before the first job started (planning), the time while at least
# min(jobs, cores) dkms calls ran, the time while fewer ran (a core idle: the
# tail), and the time after the last job (depmod, exit).
occupancy() {
    awk -v want="$1" -v wall="$2" '
        / START / { events[++n] = $1 " 1"; if (!seen) { first = $1; seen = 1 } }
        /\[ *[0-9.]+s\] \( *[0-9]+\/[0-9]+\)/ { events[++n] = $1 " -1"; last = $1 }
        END {
            running = 0; prev = first; full = 0; thin = 0
            for (i = 1; i <= n; i++) {
                split(events[i], e, " ")
                if (running >= want) full += e[1] - prev; else if (running > 0) thin += e[1] - prev
                running += e[2]; prev = e[1]
            }
            printf "planning %.2fs, %d+ jobs running %.2fs, fewer %.2fs, after the last job %.2fs\n",
                first, want, full, thin, wall - last
        }' "$3"
}

# Runs one variant on a fresh root; appends "VARIANT WALL CPU" to $results.
results=$logs/results
: >"$results"
reference=
one_run() {
    local variant=$1 i=$2 r t status=0 wall user sys
    r=$scratch/roots/$variant-$i
    cp -a "$template" "$r"
    TIMEFORMAT='%R %U %S'
    # shellcheck disable=SC2086 # DKMS_HOOK_ARGS is a list of words
    case $variant in
    stock) t=$({ time bash "$repo/bench/stock.sh" "$r" >"$logs/$variant-$i.log" 2>&1; } 2>&1) || status=$? ;;
    dkms-hook) t=$({ time "$bin" --root "$r" ${DKMS_HOOK_ARGS:-} 2>&1 | stamp >"$logs/$variant-$i.log"; } 2>&1) ||
        status=$? ;;
    esac
    if ((status)); then
        echo "bench/rebuild.sh: $variant, run $i: exit $status; its output:" >&2
        cat "$logs/$variant-$i.log" >&2
        exit 1
    fi
    read -r wall user sys <<<"$t"
    # Every module installed for every kernel, and the same status for both.
    dkms_status "$r" >"$logs/$variant-$i.status"
    local expected=$((${#picked[@]} * ${#kernels[@]}))
    local installed
    installed=$(grep -c ': installed$' "$logs/$variant-$i.status" || true)
    if ((installed != expected)) || [[ $(wc -l <"$logs/$variant-$i.status") -ne $expected ]]; then
        echo "bench/rebuild.sh: $variant, run $i: $installed of $expected pairs installed; dkms status:" >&2
        cat "$logs/$variant-$i.status" >&2
        exit 1
    fi
    if [[ -z $reference ]]; then
        reference=$logs/$variant-$i.status
    elif ! cmp -s "$reference" "$logs/$variant-$i.status"; then
        echo "bench/rebuild.sh: $variant, run $i: dkms status differs from ${reference##*/}:" >&2
        diff "$reference" "$logs/$variant-$i.status" >&2 || true
        exit 1
    fi
    rm -rf "$r"
    # The stock way's longest single install (bench/stock.sh's last line).
    local longest=-
    if [[ $variant == stock ]]; then
        longest=$(awk '/^stock longest install / { sub(/s$/, "", $NF); print $NF }' "$logs/$variant-$i.log")
        [[ $longest ]] || die "$logs/$variant-$i.log: no 'stock longest install' line"
    fi
    printf '%-9s %3d %8.2f %8.2f %8s\n' "$variant" "$i" "$wall" \
        "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" "$longest" | tee -a "$results"
}

echo "machine:  $cores CPUs, $(grep -m1 '^model name' /proc/cpuinfo | sed 's/.*: //'), $(. /etc/os-release && echo "$PRETTY_NAME")"
echo "dkms:     $("$dkms" --version 2>&1 | head -n 1) ($dkms)"
echo "kernels:  ${kernels[*]}"
echo "modules:  ${picked[*]} (${#picked[@]} x ${#kernels[@]} kernels)"
echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (before)"
echo
started=$SECONDS
printf '%-9s %3s %8s %8s %8s\n' variant run wall cpu longest
for ((i = 1; i <= runs; i++)); do
    if ((i % 2)); then order=(stock dkms-hook); else order=(dkms-hook stock); fi
    for variant in "${order[@]}"; do one_run "$variant" "$i"; done
done
echo
echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (after)"
echo

# Per run: the floor, both walls and their ratios to it; then the medians of
# each column.
awk -v n="$cores" '
    $1 == "stock" { sw[$2] = $3; sc[$2] = $4; sl[$2] = $5 }
    $1 == "dkms-hook" { hw[$2] = $3; hc[$2] = $4 }
    function median(a,   v, m, i, j, t) {
        m = 0
        for (i in a) v[++m] = a[i]
        for (i = 2; i <= m; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
        return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
    }
    END {
        printf "%-7s %8s %9s %8s | %8s %8s | %9s %8s | %10s %11s\n", "run", "longest", "cpu/" n, "floor",
            "stock", "cpu", "dkms-hook", "cpu", "hook/floor", "stock/floor"
        for (i = 1; i in sw; i++) {
            fl[i] = sl[i] > sc[i] / n ? sl[i] : sc[i] / n
            cn[i] = sc[i] / n; hr[i] = hw[i] / fl[i]; sr[i] = sw[i] / fl[i]
            printf "%-7d %7.2fs %8.2fs %7.2fs | %7.2fs %7.2fs | %8.2fs %7.2fs | %10.2f %11.2f\n", i, sl[i], cn[i],
                fl[i], sw[i], sc[i], hw[i], hc[i], hr[i], sr[i]
        }
        printf "%-7s %7.2fs %8.2fs %7.2fs | %7.2fs %7.2fs | %8.2fs %7.2fs | %10.2f %11.2f\n", "median", median(sl),
            median(cn), median(fl), median(sw), median(sc), median(hw), median(hc), median(hr), median(sr)
        printf "\nfloor = max(longest stock install of one pair, stock cpu / %d cores)\n", n
        printf "dkms-hook wall / floor: %.2f (goal <= 1.05: %s); stock wall / floor: %.2f; speed-up (stock / dkms-hook): %.2fx\n",
            median(hr), median(hr) <= 1.05 ? "met" : "NOT met", median(sr), median(sw) / median(hw)
    }' "$results"
jobs=$cores
if [[ ${DKMS_HOOK_ARGS:-} =~ (^|[[:space:]])(-j|--jobs)[[:space:]=]*([0-9]+) ]]; then jobs=${BASH_REMATCH[3]}; fi
echo
echo "dkms-hook runs (-j $jobs), how busy the machine was kept:"
for ((i = 1; i <= runs; i++)); do
    wall=$(awk -v i="$i" '$1 == "dkms-hook" && $2 == i { print $3 }' "$results")
    printf '  run %d: %s\n' "$i" "$(occupancy $((jobs < cores ? jobs : cores)) "$wall" "$logs/dkms-hook-$i.log")"
done
echo
echo "took:     $((SECONDS - started)) s for $runs run(s) of each way"
echo "logs:     $logs (per-call times of the stock way in stock-N.log, dkms-hook's output in dkms-hook-N.log)"
