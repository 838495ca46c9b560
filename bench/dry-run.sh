#!/bin/bash
# Benchmark: `dkms-hook --dry-run` (plan a full "bring every kernel up to
# date", print it, change nothing) on a synthetic system of NAMES x 2 module
# versions (100 by default) and KERNELS kernels (6 by default). Goal (issue 18): under
# 0.25 s.
#
# The planner's work is what is measured: every dkms.conf evaluated with bash
# for every kernel, BUILD_EXCLUSIVE_* decided per kernel, BUILD_DEPENDS
# ordered, the dkms tree read to see what is already installed. So the
# synthetic system has all of that, and no compiler is needed:
#   - kernels 6.1.0-50-amd64 ... : `build/Makefile` and a `build/.config`
#     (odd and even kernels differ in one option), an empty modules.order;
#   - module sources bench-dry-NN-1.0 and -2.0 with dkms.conf files in the
#     style of real ones: PACKAGE_NAME/VERSION, BUILT_MODULE_NAME, MAKE,
#     AUTOINSTALL (not on every tenth), BUILD_DEPENDS (every fifth on the one
#     before), BUILD_EXCLUSIVE_KERNEL / _KERNEL_MIN / _CONFIG on some, and bash
#     logic reading the kernel's .config (like Debian's ddcci and
#     v4l2loopback) on others;
#   - dkms tree state: every 1.0 registered and installed for the first half
#     of the kernels (module files in the dkms tree and the install tree, the
#     kernel-K-ARCH links), half of the 2.0s installed there too, the other
#     2.0s only registered.
# The run must exit 0 and leave the root byte-identical. Timed with hyperfine
# when it is installed (median of 20 runs after 3 warm-ups), else the median
# of 10 runs timed with bash.
#
# Usage: bench/dry-run.sh [NAMES [KERNELS]]   (root not needed)
#   DKMS_HOOK=PATH   the binary (default target/release/dkms-hook; build it
#                    first with cargo build --release)
#   KEEP=1           keep the synthetic root (its path is printed)
set -euo pipefail
export LC_ALL=C

names=${1:-50}
nkernels=${2:-6}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${DKMS_HOOK:-$repo/target/release/dkms-hook}

die() {
    echo "bench/dry-run.sh: $*" >&2
    exit 2
}
[[ -x $bin ]] || die "$bin: not found: run cargo build --release first"
(($# <= 2)) || die "usage: bench/dry-run.sh [NAMES [KERNELS]]"
[[ $names =~ ^[1-9][0-9]{0,3}$ && $nkernels =~ ^[1-9][0-9]{0,1}$ ]] ||
    die "usage: bench/dry-run.sh [NAMES [KERNELS]] (NAMES 1-9999, KERNELS 1-99)"

work=$(mktemp -d "${TMPDIR:-/tmp}/dkms-hook-dry-run.XXXXXX")
if [[ ${KEEP:-} ]]; then
    echo "bench/dry-run.sh: keeping $work"
else
    trap 'rm -rf "$work"' EXIT
fi
root=$work/root
src=$root/usr/src
dkms_tree=$root/var/lib/dkms
install_tree=$root/usr/lib/modules
arch=$(uname -m)

# Kernels.
kernels=()
for ((k = 0; k < nkernels; k++)); do
    kernel="6.1.0-$((50 + k))-amd64"
    kernels+=("$kernel")
    build=$install_tree/$kernel/build
    mkdir -p "$build"
    printf '# synthetic kernel headers: the planner only checks that this exists\n' >"$build/Makefile"
    {
        echo "CONFIG_MODULES=y"
        echo "CONFIG_I2C=y"
        echo "CONFIG_VIDEO_DEV=m"
        ((k % 2)) && echo "CONFIG_BACKLIGHT_CLASS_DEVICE=y" || echo "# CONFIG_BACKLIGHT_CLASS_DEVICE is not set"
    } >"$build/.config"
    : >"$install_tree/$kernel/modules.order"
done
half=$(((nkernels + 1) / 2))

# Module sources, and what the dkms tree already has of them.
for ((n = 1; n <= names; n++)); do
    name=$(printf 'bench-dry-%02d' "$n")
    kname=$(printf 'bench_dry_%02d' "$n")
    for version in 1.0 2.0; do
        dir=$src/$name-$version
        mkdir -p "$dir"
        {
            echo "PACKAGE_NAME=\"$name\""
            echo "PACKAGE_VERSION=\"$version\""
            echo "BUILT_MODULE_NAME[0]=\"$kname\""
            echo "DEST_MODULE_LOCATION[0]=\"/updates/dkms\""
            echo 'MAKE[0]="make -C ${kernel_source_dir} M=${dkms_tree}/${PACKAGE_NAME}/${PACKAGE_VERSION}/build modules"'
            echo 'CLEAN="make -C ${kernel_source_dir} M=${dkms_tree}/${PACKAGE_NAME}/${PACKAGE_VERSION}/build clean"'
            ((n % 10)) && echo 'AUTOINSTALL="yes"'
            ((n % 5 == 0)) && printf 'BUILD_DEPENDS[0]="bench-dry-%02d"\n' "$((n - 1))"
            case $((n % 7)) in
            1) echo 'BUILD_EXCLUSIVE_KERNEL="^6\.1\.0-5[0-3]-"' ;;
            2) echo 'BUILD_EXCLUSIVE_KERNEL_MIN="5.10"' ;;
            3) echo 'BUILD_EXCLUSIVE_CONFIG="CONFIG_I2C !CONFIG_BROKEN"' ;;
            4) cat <<'EOF'
if ! grep -q "^CONFIG_BACKLIGHT_CLASS_DEVICE=[ym]$" "$kernel_source_dir/.config" 2>/dev/null ; then
  echo "BACKLIGHT_CLASS_DEVICE disabled in this kernel, not building module." >&2
  BUILD_EXCLUSIVE_ARCH="^do_not_build$"
fi
EOF
                ;;
            5) cat <<'EOF'
if [ -f $kernel_source_dir/.config ]; then
    . $kernel_source_dir/.config
    if [ "${CONFIG_VIDEO_DEV:-n}" = "n" ]; then
        BUILD_EXCLUSIVE_KERNEL="REQUIRES CONFIG_VIDEO_DEV"
    fi
fi
EOF
                ;;
            esac
        } >"$dir/dkms.conf"
        echo "obj-m := $kname.o" >"$dir/Makefile"
        # 1.0 everywhere, and 2.0 for odd names, are registered and installed
        # on the first half of the kernels; other 2.0s are only registered.
        if [[ $version == 2.0 ]] && ((n % 2 == 0)); then
            mkdir -p "$dkms_tree/$name/$version/build"
            ln -s "$dir" "$dkms_tree/$name/$version/source"
            continue
        fi
        mkdir -p "$dkms_tree/$name/$version/build"
        ln -s "$dir" "$dkms_tree/$name/$version/source"
        for kernel in "${kernels[@]:0:half}"; do
            pair=$dkms_tree/$name/$version/$kernel/$arch
            mkdir -p "$pair/module" "$pair/log"
            printf 'synthetic module %s %s for %s\n' "$name" "$version" "$kernel" >"$pair/module/$kname.ko"
            echo "DKMS make.log for $name-$version for kernel $kernel ($arch)" >"$pair/log/make.log"
        done
    done
    # The newest installed version owns the kernel-K-ARCH link and the
    # installed file, as dkms leaves it.
    installed=1.0
    ((n % 2)) && installed=2.0
    for kernel in "${kernels[@]:0:half}"; do
        ln -sfn "$installed/$kernel/$arch" "$dkms_tree/$name/kernel-$kernel-$arch"
        mkdir -p "$install_tree/$kernel/updates/dkms"
        cp "$dkms_tree/$name/$installed/$kernel/$arch/module/$kname.ko" "$install_tree/$kernel/updates/dkms/"
    done
done

# A listing of the root with sizes, times and contents, to check that nothing changed.
snapshot() {
    (cd "$root" && find . -printf '%p %y %m %s %T@ %l\n' | sort && find . -type f -print0 | sort -z |
        xargs -0 md5sum) | md5sum
}
before=$(snapshot)

cmd=("$bin" --root "$root" --dry-run)
status=0
"${cmd[@]}" >"$work/plan.txt" 2>&1 || status=$?
if ((status)); then
    cat "$work/plan.txt" >&2
    die "${cmd[*]}: exit $status (output above)"
fi
[[ $(snapshot) == "$before" ]] || die "--dry-run changed the root"

quote() { printf '%q ' "$@"; }
if command -v hyperfine >/dev/null; then
    timer="hyperfine (median of 20 runs, 3 warm-ups)"
    hyperfine --style basic -N --warmup 3 --runs 20 --export-json "$work/h.json" \
        -n "dkms-hook --dry-run" "$(quote "${cmd[@]}")"
    median=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["results"][0]["median"])' \
        "$work/h.json" 2>/dev/null ||
        sed -n 's/.*"median": *\([0-9.e-]*\).*/\1/p' "$work/h.json" | head -n 1)
else
    timer="bash (median of 10 runs, 1 warm-up)"
    "${cmd[@]}" >/dev/null 2>&1
    median=$(for _ in 1 2 3 4 5 6 7 8 9 10; do
        start=$EPOCHREALTIME
        "${cmd[@]}" >/dev/null 2>&1
        end=$EPOCHREALTIME
        awk -v s="$start" -v e="$end" 'BEGIN { print e - s }'
    done | sort -n | awk '{ v[NR] = $1 } END { print (v[5] + v[6]) / 2 }')
fi
[[ $(snapshot) == "$before" ]] || die "--dry-run changed the root"

jobs=$(grep -c ' for 6\.' "$work/plan.txt" || true)
echo "machine:  $(nproc) CPUs, $(grep -m1 '^model name' /proc/cpuinfo | sed 's/.*: //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "system:   $((names * 2)) module versions x $nkernels kernels; plan: $(wc -l <"$work/plan.txt") lines, $jobs of them name a kernel"
echo "          last line: $(tail -n 1 "$work/plan.txt")"
echo "timer:    $timer"
awk -v m="$median" 'BEGIN { printf "dry-run:  %.3f s  (goal < 0.25 s: %s)\n", m, (m < 0.25 ? "met" : "NOT met") }'
