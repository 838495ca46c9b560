#!/bin/bash
# The picture in the user guide (docs/user-guide.md) and in bench/README.md: a real run of
# dkms-hook with --timings, and a screenshot of the page by headless Chromium.
#
# Three real Debian module sources (acpi-call, v4l2loopback, vpoll, extracted by tests/setup.sh)
# and the fixture that fails to compile (dkmshook-broken), for the two newest kernels with
# headers, two jobs at a time, on a fresh root in a private mount namespace (tmpfs over
# /var/lib/dkms, an overlay over /lib/modules, as bench/rebuild.sh does): the machine is left as
# it was.
#
# Usage (as root, after `cargo build` and `tests/setup.sh`):
#   bench/timings.sh [OUT.png]     (default bench/timings.png; the page goes beside it, .html)
#   DKMS_HOOK=PATH   the binary (default target/debug/dkms-hook)
set -euo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${DKMS_HOOK:-$repo/target/debug/dkms-hook}

die() {
    echo "bench/timings.sh: $*" >&2
    exit 2
}

if [[ ${1:-} != --in-namespace ]]; then
    png=$(realpath -m "${1:-$repo/bench/timings.png}")
    page=${png%.png}.html
    ((EUID == 0)) || die "must run as root (dkms installs modules; everything stays in a sandbox)"
    [[ -x $bin ]] || die "$bin: not found: run cargo build first"
    command -v chromium >/dev/null || die "chromium: not found (apt-get install chromium)"
    scratch=$(mktemp -d /tmp/dkms-hook-timings.XXXXXX)
    trap 'rmdir "$scratch"' EXIT
    unshare -m --propagation private bash "${BASH_SOURCE[0]}" --in-namespace "$scratch" "$page"
    # Chromium outside the namespace, as an ordinary browser would open the page.
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --window-size=1160,480 --screenshot="$png" "file://$page" 2>/dev/null
    echo "bench/timings.sh: $page, $png ($(stat -c %s "$png") bytes)"
    exit 0
fi
scratch=$2 page=$3

mount -t tmpfs tmpfs "$scratch"
mkdir -p /var/lib/dkms "$scratch/upper" "$scratch/work" "$scratch/root"
for dir in /var/lib/dkms /var/lib/shim-signed; do
    [[ -d $dir ]] && mount -t tmpfs -o mode=0755 tmpfs "$dir"
done
modules_dir=$(readlink -f /lib/modules)
if [[ -d $modules_dir ]]; then
    mount -t overlay overlay \
        -o "lowerdir=$modules_dir,upperdir=$scratch/upper,workdir=$scratch/work" "$modules_dir"
fi

mapfile -t kernels < <(compgen -G '/usr/src/linux-headers-6.1.0-*-amd64' |
    sed 's|^/usr/src/linux-headers-||' | sort -V | tail -n 2)
((${#kernels[@]} == 2)) || die "need the headers of two kernels"

root=$scratch/root
mkdir -p "$root/usr/src" "$root/var/lib/dkms"
sources=$repo/tests/.cache/sources/usr/src
for m in acpi-call v4l2loopback vpoll; do
    dir=$(compgen -G "$sources/$m-[0-9]*" | sort -V | tail -n 1) || die "$m: run tests/setup.sh"
    cp -a "$dir" "$root/usr/src/"
done
cp -a "$repo/tests/fixtures/dkmshook-broken-1.0" "$root/usr/src/"
for k in "${kernels[@]}"; do
    mkdir -p "$root/usr/lib/modules/$k"
    ln -s "/usr/src/linux-headers-$k" "$root/usr/lib/modules/$k/build"
    : >"$root/usr/lib/modules/$k/modules.order"
done
# The broken fixture fails on purpose: exit 1 is the expected end.
"$bin" --root "$root" -j 2 --timings "$page" || (($? == 1))
