#!/bin/bash
# The stock way of bringing every kernel up to date, as Arch's own dkms hook
# does it, for bench/rebuild.sh to compare dkms-hook against: in the trees
# under ROOT (ROOT/usr/src, ROOT/var/lib/dkms, ROOT/usr/lib/modules), `dkms
# add` every module source, then one `dkms install --no-depmod` per module x
# kernel, one at a time, then `depmod` once per kernel. Prints one line per
# call with its wall and CPU time (user+sys, children included), so the
# per-module cost of a serial rebuild can be read off, and last the longest
# install of one pair (`stock longest install M/V K wall S`). Exits non-zero
# at the first failing call: a benchmark of a failed build means nothing.
#
# Usage: bench/stock.sh ROOT   (as root; see bench/rebuild.sh for the sandbox)
#   DKMS=PATH   the dkms program (default: dkms, from PATH)
set -euo pipefail
dkms=${DKMS:-dkms}

root=${1:?usage: bench/stock.sh ROOT}
src=$root/usr/src
dkms_tree=$root/var/lib/dkms
install_tree=$root/usr/lib/modules
trees=(--sourcetree "$src" --dkmstree "$dkms_tree" --installtree "$install_tree")

# Module sources (NAME VERSION) from their dkms.conf, and kernels with headers.
modules=()
for conf in "$src"/*/dkms.conf; do
    # dkms.conf is bash: let bash read the name and version, as dkms does.
    nv=$(cd "${conf%/*}" && bash -c '. ./dkms.conf >/dev/null 2>&1; echo "$PACKAGE_NAME $PACKAGE_VERSION"')
    modules+=("$nv")
done
kernels=()
for dir in "$install_tree"/*/; do
    dir=${dir%/}
    [[ -f $dir/build/Makefile ]] && kernels+=("${dir##*/}")
done
((${#modules[@]} && ${#kernels[@]})) || {
    echo "bench/stock.sh: $root: no module sources or no kernels with headers" >&2
    exit 2
}

# Runs a command with its output in OUT; prints LABEL, wall and CPU seconds.
TIMEFORMAT='%R %U %S'
timed() {
    local label=$1 t status=0
    shift
    t=$({ time "$@" >"$out" 2>&1; } 2>&1) || status=$?
    if ((status)); then
        echo "bench/stock.sh: $label: exit $status" >&2
        cat "$out" >&2
        exit 1
    fi
    read -r wall user sys <<<"$t"
    printf 'stock %-40s wall %6.2fs cpu %6.2fs\n' "$label" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" |
        tee -a "$calls"
}
out=$(mktemp)
calls=$(mktemp)
trap 'rm -f "$out" "$calls"' EXIT

for nv in "${modules[@]}"; do
    read -r m v <<<"$nv"
    timed "add $m/$v" "$dkms" add -m "$m" -v "$v" "${trees[@]}"
done
for k in "${kernels[@]}"; do
    for nv in "${modules[@]}"; do
        read -r m v <<<"$nv"
        # dkms 3.0.10 looks for headers in /lib/modules/K/build unless told.
        timed "install $m/$v $k" "$dkms" install --no-depmod -m "$m" -v "$v" -k "$k" "${trees[@]}" \
            --kernelsourcedir "$install_tree/$k/build"
    done
done
for k in "${kernels[@]}"; do
    timed "depmod $k" depmod -a -b "$root/usr" "$k"
done
# The longest single pair: no schedule can end before it (bench/rebuild.sh's
# floor).
awk '$2 == "install" { w = $(NF - 2) + 0; if (w > max) { max = w; pair = $3 " " $4 } }
    END { printf "stock longest install %s wall %.2fs\n", pair, max }' "$calls"
