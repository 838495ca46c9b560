#!/bin/bash
# Benchmark: `dkms-hook status` against `dkms status` on the same trees.
#
# Builds a synthetic but realistic dkms tree in a temporary root: MODULES module versions (one
# dkms.conf each, like a packaged module's) built and installed for each of KERNELS kernels,
# so MODULES x KERNELS installed pairs (100 x 6 = 600 by default), every pair with its own copy
# of one real module built against the machine's kernel headers, the kernel-K-ARCH links, the
# make logs and the installed copies under usr/lib/modules/K/updates/dkms. Then times both
# commands (hyperfine when installed, else bash's `time`), checks that their outputs are
# identical line for line, and prints the ratio (goal, issue 18: at least 200x).
#
# Usage: bench/status.sh [MODULES [KERNELS]]
# BENCH_ONLY_BUILD=1 builds the tree, keeps it and stops (for profiling).
# DKMS=/path/to/dkms compares with another dkms script (e.g. a newer one extracted from its
# package; dkms-hook then finds it first in PATH and follows its format).
# BENCH_DKMS_RUNS=N times dkms status N times (default 3).   (run as root or not: status changes nothing)
# Needs: dkms, make, gcc and the headers of one kernel (/lib/modules/K/build or
# /usr/src/linux-headers-K).
set -euo pipefail

modules=${1:-100}
kernels=${2:-6}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/dkms-hook-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
src=$root/usr/src
dkms_tree=$root/var/lib/dkms
install_tree=$root/usr/lib/modules
mkdir -p "$src" "$dkms_tree" "$install_tree"

die() {
    echo "bench/status.sh: $*" >&2
    exit 1
}
dkms=${DKMS:-$(command -v dkms)} || die "dkms is not installed"
[[ -x $dkms ]] || die "$dkms: not executable"
PATH="$(dirname "$dkms"):$PATH"
export PATH

# One real module, built once with the kernel's own build system.
headers=
for d in /lib/modules/*/build /usr/src/linux-headers-*; do
    if [[ -f $d/Makefile && -d $d/include ]]; then
        headers=$d
        break
    fi
done
[[ $headers ]] || die "no kernel headers found (/lib/modules/K/build or /usr/src/linux-headers-K)"
cp -r "$repo/tests/fixtures/dkmshook-plain-1.0" "$work/module"
make -s -C "$headers" M="$work/module" modules >"$work/make.log" 2>&1 ||
    die "building the sample module against $headers failed: see $(cat "$work/make.log")"
ko=$work/module/dkmshook_plain.ko
[[ -f $ko ]] || die "$ko: not built"

# Kernel release names in the style of the machine's (they need no headers for status).
kernel_names=()
for ((k = 0; k < kernels; k++)); do
    kernel_names+=("6.1.0-$((40 + k))-amd64")
done

echo "building the tree: $modules module versions x $kernels kernels, $(stat -c %s "$ko") bytes per module"
for ((m = 1; m <= modules; m++)); do
    name=$(printf 'bench-mod%03d' "$m")
    kname=${name//-/_}
    version="1.$((m % 7)).$m"
    dir=$src/$name-$version
    mkdir -p "$dir"
    cat >"$dir/dkms.conf" <<EOF
PACKAGE_NAME="$name"
PACKAGE_VERSION="$version"
BUILT_MODULE_NAME[0]="$kname"
DEST_MODULE_LOCATION[0]="/updates/dkms"
MAKE[0]="make -C \${kernel_source_dir} M=\${dkms_tree}/\${PACKAGE_NAME}/\${PACKAGE_VERSION}/build modules"
CLEAN="make -C \${kernel_source_dir} M=\${dkms_tree}/\${PACKAGE_NAME}/\${PACKAGE_VERSION}/build clean"
AUTOINSTALL="yes"
EOF
    echo "obj-m := $kname.o" >"$dir/Makefile"
    mkdir -p "$dkms_tree/$name/$version/build"
    ln -s "$dir" "$dkms_tree/$name/$version/source"
    for kernel in "${kernel_names[@]}"; do
        pair=$dkms_tree/$name/$version/$kernel/x86_64
        mkdir -p "$pair/module" "$pair/log" "$install_tree/$kernel/updates/dkms"
        cp "$ko" "$pair/module/$kname.ko"
        echo "DKMS make.log for $name/$version for kernel $kernel (x86_64)" >"$pair/log/make.log"
        ln -s "$version/$kernel/x86_64" "$dkms_tree/$name/kernel-$kernel-x86_64"
        cp "$ko" "$install_tree/$kernel/updates/dkms/$kname.ko"
    done
done
for kernel in "${kernel_names[@]}"; do
    : >"$install_tree/$kernel/modules.order"
done

if [[ ${BENCH_ONLY_BUILD-} ]]; then
    trap - EXIT
    echo "tree kept: $root"
    exit 0
fi

echo "building dkms-hook (release)"
(cd "$repo" && cargo build --release --quiet)
hook=$repo/target/release/dkms-hook

dkms_cmd=("$dkms" status --sourcetree "$src" --dkmstree "$dkms_tree" --installtree "$install_tree")
hook_cmd=("$hook" --root "$root" status)

"${dkms_cmd[@]}" >"$work/dkms.out" 2>"$work/dkms.err"
"${hook_cmd[@]}" >"$work/hook.out"
if ! cmp -s "$work/dkms.out" "$work/hook.out"; then
    diff -u "$work/dkms.out" "$work/hook.out" | head -40 >&2
    die "outputs differ (above: dkms status, then dkms-hook status)"
fi
lines=$(wc -l <"$work/dkms.out")
installed=$(grep -c ': installed$' "$work/dkms.out" || true)
echo "outputs identical: $lines lines, $installed installed pairs"

quote() {
    printf '%q ' "$@"
}
if command -v hyperfine >/dev/null; then
    # Separate runs: dkms status is slow, so fewer of them.
    hyperfine --style basic --export-json "$work/slow.json" --runs "${BENCH_DKMS_RUNS:-3}" \
        -n "dkms status" "$(quote "${dkms_cmd[@]}")" >&2
    hyperfine --style basic --export-json "$work/fast.json" --warmup 2 --runs 20 \
        -n "dkms-hook status" "$(quote "${hook_cmd[@]}")" >&2
    mean() {
        python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["results"][0]["mean"])' "$1"
    }
    slow=$(mean "$work/slow.json")
    fast=$(mean "$work/fast.json")
else
    seconds() {
        local start end
        start=$(date +%s.%N)
        "$@" >/dev/null 2>&1
        end=$(date +%s.%N)
        echo "$end - $start" | bc -l
    }
    slow=$(seconds "${dkms_cmd[@]}")
    fast=$(for _ in 1 2 3 4 5; do seconds "${hook_cmd[@]}"; done | sort -n | head -1)
fi
dkms_version=$("$dkms" --version 2>/dev/null | head -1)
printf 'machine: %s, %s cores; %s\n' "$(. /etc/os-release && echo "$PRETTY_NAME")" "$(nproc)" "$dkms_version"
awk -v s="$slow" -v f="$fast" 'BEGIN {
    printf "dkms status:      %8.3f s\ndkms-hook status: %8.3f s\nratio:            %8.1fx\n", s, f, s / f
}'
