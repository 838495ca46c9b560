#!/bin/bash
# Where the time of one `dkms install` goes: in make (the module's build, the
# CLEAN command, dkms's own small makes) or in dkms itself (bash, cp, strip,
# sign-file, modinfo, ...). For bench/rebuild.sh's analysis: dkms-hook can
# only run dkms calls side by side, so the share of a call that does not use
# make's -j (and, on few cores, the length of the longest call) bounds what
# running them in parallel can gain.
#
# A `make` wrapper first in PATH times every outermost make that dkms starts
# (nested makes go straight to the real one). Runs in a private mount
# namespace with tmpfs over its root and /var/lib/dkms, like bench/rebuild.sh.
#
# Each dkms version is profiled in turn, on a fresh tree, and its own fixed
# cost per call (the mean of the calls' time outside the module's build) is
# printed after its table: the machine's dkms (Debian 12's 3.0.10), Debian
# 13's 3.2.2 and 3.4.3 when tests/setup.sh made them, or the ones given with
# -d. dkms 3.4 signs nothing in a chroot unless told, and counts this
# script's private mount namespace as one: every call runs with
# try_sign_modules=true, so every version signs, as on a live system.
#
# Usage (as root): bench/dkms-profile.sh [-j N] [-d DKMS]... [MODULE...]
#   -j N     passed to dkms install (make -jN; default: dkms's own, nproc)
#   -d DKMS  a dkms program to profile (repeatable; default: every one above)
#   MODULE   source directory prefixes under tests/.cache/sources/usr/src
#            (default: the seven bench/rebuild.sh uses); built for the newest
#            kernel with headers in /usr/src/linux-headers-6.1.0-*-amd64
set -euo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sources=$repo/tests/.cache/sources/usr/src

die() {
    echo "bench/dkms-profile.sh: $*" >&2
    exit 2
}

if [[ ${1:-} != --in-namespace ]]; then
    ((EUID == 0)) || die "must run as root"
    [[ -d $sources ]] || die "$sources: not found: run tests/setup.sh as root first"
    scratch=$(mktemp -d /tmp/dkms-hook-profile.XXXXXX)
    trap 'rmdir "$scratch"' EXIT
    status=0
    unshare -m --propagation private bash "${BASH_SOURCE[0]}" --in-namespace "$scratch" "$@" || status=$?
    exit "$status"
fi
scratch=$2
shift 2
jobs=()
programs=()
while getopts j:d: opt; do
    case $opt in
    j) jobs=(-j "$OPTARG") ;;
    d) programs+=("$(realpath "$OPTARG")") ;;
    *) die "usage: bench/dkms-profile.sh [-j N] [-d DKMS]... [MODULE...]" ;;
    esac
done
if ((!${#programs[@]})); then
    programs=("$(command -v dkms)")
    for p in "$repo/tests/.cache/dkms-trixie/usr/sbin/dkms" "$repo/tests/.cache/dkms-3.4.3/dkms"; do
        if [[ -x $p ]]; then programs+=("$p"); fi
    done
fi
export try_sign_modules=true
shift $((OPTIND - 1))
wanted=("$@")
((${#wanted[@]})) || wanted=(acpi-call v4l2loopback vpoll gost-crypto tp_smapi dm-writeboost ddcci)

mount -t tmpfs tmpfs "$scratch"
mkdir -p /var/lib/dkms
mount -t tmpfs -o mode=0755 tmpfs /var/lib/dkms
if [[ -d /var/lib/shim-signed ]]; then mount -t tmpfs tmpfs /var/lib/shim-signed; fi
openssl req -new -x509 -nodes -days 36500 -subj "/CN=DKMS module signing key" \
    -newkey rsa:2048 -keyout /var/lib/dkms/mok.key -outform DER -out /var/lib/dkms/mok.pub >/dev/null 2>&1
kernel=$(compgen -G '/usr/src/linux-headers-6.1.0-*-amd64' | sed 's|^/usr/src/linux-headers-||' |
    sort -V | tail -n 1)
[[ $kernel ]] || die "no /usr/src/linux-headers-6.1.0-*-amd64"

mkdir -p "$scratch/bin"
real_make=$(command -v make)
cat >"$scratch/bin/make" <<EOF
#!/bin/bash
# Times the outermost make; nested ones run the real make directly.
if [[ \${PROFILE_IN_MAKE:-} ]]; then exec $real_make "\$@"; fi
export PROFILE_IN_MAKE=1
kind=other
case " \$* " in
*" clean "*) kind=clean ;;
*" -j"[0-9]*) kind=build ;;
esac
TIMEFORMAT="\$kind %R %U %S"
{ time $real_make "\$@" 2>&3; } 3>&2 2>>"$scratch/makes"
EOF
chmod +x "$scratch/bin/make"

# Profiles one dkms program: one install per module on a fresh tree, then its
# fixed cost per call.
profile() {
    local dkms=$1 root=$scratch/root-$2 w dir nv m v t wall user sys trees
    mkdir -p "$root/usr/src" "$root/var/lib/dkms" "$root/usr/lib/modules/$kernel"
    ln -s "/usr/src/linux-headers-$kernel" "$root/usr/lib/modules/$kernel/build"
    : >"$scratch/own"
    echo "$("$dkms" --version 2>&1 | head -n 1) ($dkms)"
    printf '%-28s %7s %7s | %7s %7s | %7s %7s | %7s %7s | %6s\n' "dkms install (kernel $kernel)" \
        wall cpu build cpu clean cpu other cpu "bash+"
    TIMEFORMAT='%R %U %S'
    for w in "${wanted[@]}"; do
        dir=$(compgen -G "$sources/$w-[0-9]*" | sort -V | tail -n 1 || true)
        [[ $dir ]] || die "$sources/$w-*: no such module source"
        cp -a "$dir" "$root/usr/src/"
        nv=$(cd "$dir" && bash -c '. ./dkms.conf >/dev/null 2>&1; echo "$PACKAGE_NAME $PACKAGE_VERSION"')
        read -r m v <<<"$nv"
        trees=(--sourcetree "$root/usr/src" --dkmstree "$root/var/lib/dkms" --installtree "$root/usr/lib/modules")
        "$dkms" add -m "$m" -v "$v" "${trees[@]}" >/dev/null 2>&1
        : >"$scratch/makes"
        t=$({ time PATH="$scratch/bin:$PATH" "$dkms" install --no-depmod -m "$m" -v "$v" -k "$kernel" \
            "${trees[@]}" --kernelsourcedir "$root/usr/lib/modules/$kernel/build" "${jobs[@]}" \
            >"$scratch/out" 2>&1; } 2>&1) || {
            cat "$scratch/out" >&2
            die "dkms install $m/$v failed"
        }
        read -r wall user sys <<<"$t"
        awk -v name="$m/$v" -v wall="$wall" -v cpu="$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" '
            { w[$1] += $2; c[$1] += $3 + $4; total += $2 }
            END {
                printf "%-28s %7.2f %7.2f | %7.2f %7.2f | %7.2f %7.2f | %7.2f %7.2f | %5.0f%%\n", name, wall, cpu,
                    w["build"], c["build"], w["clean"], c["clean"], w["other"], c["other"],
                    100 * (wall - w["build"]) / wall
                print wall - w["build"] >>own
            }' own="$scratch/own" "$scratch/makes"
    done
    awk '{ s += $1 } END { printf "own time per call (outside the module build): %.2f s, mean of %d calls\n\n", s / NR, NR }' \
        "$scratch/own"
}

for i in "${!programs[@]}"; do profile "${programs[$i]}" "$i"; done
echo "wall/cpu: the whole dkms call (seconds); build: the module's MAKE; clean: its CLEAN;"
echo "other: dkms's own makes (reading CC from .kernelvariables); bash+: share of the call's wall"
echo "outside the module's build (clean, dkms's bash, strip, sign-file, copies), which make -j cannot shorten."
