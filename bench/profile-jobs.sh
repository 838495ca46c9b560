#!/bin/bash
# Job profiles for the scheduler simulation: for each module and kernel, how
# much of one `dkms install` is serial, how much make spreads over the cores,
# and how much is dkms's own time. Writes bench/profiles.tsv (or -o FILE):
#
#   module  kernel  serial_s  parallel_s  dkms_s
#
# Each pair is installed twice, each time from an empty dkms tree: with
# `dkms install -j1` and with `-j2`. Of each call it measures the wall T and
# the build's window B: from dkms's `date` into make.log, which every dkms
# version runs just before the build (3.0.10 after CLEAN, 3.2 and 3.4 before
# the patches and PRE_BUILD), to the make.log's last write, the end of MAKE
# (a `date` wrapper first in PATH takes the start, stat the end). dkms's own
# time is the rest (T - B: its bash, CLEAN, strip, sign-file, modinfo,
# copies). With B1 = s + p and B2 = s + p/2 (the parallel part halves at -j2):
#
#   parallel_s = 2 (B1 - B2), serial_s = B1 - parallel_s, dkms_s = mean(T - B)
#
# so that T1 = s + p + d and T2 = s + p/2 + d; noise that would make a part
# negative is clamped to 0. A `make` wrapper first in PATH also sums the
# outermost makes' wall (printed as "make"; B minus it is what runs outside
# make, such as a ./configure). By default every make runs as dkms starts it:
# a MAKE that does not begin with `make` gets no -j from dkms, and so its
# makes show up as serial (dahdi). With -a the wrapper gives every outermost
# make that has no -j of its own the call's -jN, as a make jobserver shared by
# the whole run would let them use the cores; the file's comment says which.
#
# Runs in a private mount namespace with tmpfs over its scratch and
# /var/lib/dkms, like bench/rebuild.sh, and with try_sign_modules=true.
#
# Usage (as root, after tests/setup.sh --bench):
#   bench/profile-jobs.sh [-a] [-o FILE] [MODULE...]
#     -a        every outermost make at the call's -jN (see above)
#     -o FILE   where to write the table (default bench/profiles.tsv)
#     MODULE    source directory prefixes under tests/.cache/sources/usr/src
#               (default: bench/rebuild.sh's nine), each on the two newest
#               kernels with headers in /usr/src/linux-headers-6.1.0-*-amd64
#   DKMS=PATH   the dkms to profile (default: dkms, from PATH)
set -euo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sources=$repo/tests/.cache/sources/usr/src
dkms=${DKMS:-dkms}
if [[ $dkms == */* ]]; then dkms=$(realpath "$dkms"); fi
export try_sign_modules=true

die() {
    echo "bench/profile-jobs.sh: $*" >&2
    exit 2
}
usage="usage: bench/profile-jobs.sh [-a] [-o FILE] [MODULE...]"

if [[ ${1:-} != --in-namespace ]]; then
    ((EUID == 0)) || die "must run as root (dkms installs modules; everything stays in a sandbox)"
    command -v "$dkms" >/dev/null || die "$dkms: not found"
    [[ -d $sources ]] || die "$sources: not found: run tests/setup.sh --bench as root first"
    out=$repo/bench/profiles.tsv
    args=("$@")
    OPTIND=1
    while getopts ao: opt; do
        case $opt in
        a) ;;
        o) out=$OPTARG ;;
        *) die "$usage" ;;
        esac
    done
    out=$(realpath -m "$out")
    scratch=$(mktemp -d /tmp/dkms-hook-profile-jobs.XXXXXX)
    trap 'rmdir "$scratch"' EXIT
    status=0
    unshare -m --propagation private bash "${BASH_SOURCE[0]}" --in-namespace "$scratch" "$out" "${args[@]}" ||
        status=$?
    exit "$status"
fi
scratch=$2 out=$3
shift 3
all_makes=
while getopts ao: opt; do
    case $opt in
    a) all_makes=1 ;;
    o) ;;
    *) die "$usage" ;;
    esac
done
shift $((OPTIND - 1))
wanted=("$@")
((${#wanted[@]})) ||
    wanted=(acpi-call v4l2loopback vpoll gost-crypto tp_smapi dm-writeboost ddcci jool-dkms dahdi)

mount -t tmpfs tmpfs "$scratch"
mkdir -p /var/lib/dkms
mount -t tmpfs -o mode=0755 tmpfs /var/lib/dkms
if [[ -d /var/lib/shim-signed ]]; then mount -t tmpfs tmpfs /var/lib/shim-signed; fi
openssl req -new -x509 -nodes -days 36500 -subj "/CN=DKMS module signing key" \
    -newkey rsa:2048 -keyout /var/lib/dkms/mok.key -outform DER -out /var/lib/dkms/mok.pub >/dev/null 2>&1
mapfile -t kernels < <(compgen -G '/usr/src/linux-headers-6.1.0-*-amd64' |
    sed 's|^/usr/src/linux-headers-||' | sort -V | tail -n 2)
((${#kernels[@]})) || die "no /usr/src/linux-headers-6.1.0-*-amd64"

# The wrappers: `date` without arguments (dkms's stamp into make.log, just
# before the build) notes the time; the outermost `make` is timed, and with
# -a given the call's -jN when it has no -j of its own.
mkdir -p "$scratch/bin"
real_make=$(command -v make) real_date=$(command -v date)
cat >"$scratch/bin/date" <<EOF
#!/bin/bash
if ((\$# == 0)); then echo "\$EPOCHREALTIME" >>"$scratch/start"; fi
exec $real_date "\$@"
EOF
cat >"$scratch/bin/make" <<EOF
#!/bin/bash
if [[ \${PROFILE_IN_MAKE:-} ]]; then exec $real_make "\$@"; fi
export PROFILE_IN_MAKE=1
extra=()
if [[ "$all_makes" && " \$* " != *" -j"* ]]; then extra=(-j"\$PROFILE_JOBS"); fi
start=\$EPOCHREALTIME
status=0
$real_make "\${extra[@]}" "\$@" || status=\$?
echo "\$start \$EPOCHREALTIME" >>"$scratch/makes"
exit "\$status"
EOF
chmod +x "$scratch/bin/date" "$scratch/bin/make"

# One `dkms install -jJOBS` of MODULE-DIR for KERNEL on a fresh tree; prints
# "T B MAKE CPU": the call's wall, the build's window, the wall of the
# outermost makes started in that window, the call's CPU (user+sys).
measure() {
    local dir=$1 kernel=$2 jobs=$3 root=$scratch/root nv m v t start end log trees wall user sys
    rm -rf "$root"
    mkdir -p "$root/usr/src" "$root/var/lib/dkms" "$root/usr/lib/modules/$kernel"
    ln -s "/usr/src/linux-headers-$kernel" "$root/usr/lib/modules/$kernel/build"
    cp -a "$dir" "$root/usr/src/"
    nv=$(cd "$dir" && bash -c '. ./dkms.conf >/dev/null 2>&1; echo "$PACKAGE_NAME $PACKAGE_VERSION"')
    read -r m v <<<"$nv"
    trees=(--sourcetree "$root/usr/src" --dkmstree "$root/var/lib/dkms" --installtree "$root/usr/lib/modules")
    "$dkms" add -m "$m" -v "$v" "${trees[@]}" >/dev/null 2>&1 || die "dkms add $m/$v failed"
    : >"$scratch/start"
    : >"$scratch/makes"
    TIMEFORMAT='%R %U %S'
    t=$({ time PATH="$scratch/bin:$PATH" PROFILE_JOBS=$jobs "$dkms" install --no-depmod -j "$jobs" -m "$m" \
        -v "$v" -k "$kernel" "${trees[@]}" --kernelsourcedir "$root/usr/lib/modules/$kernel/build" \
        >"$scratch/out" 2>&1; } 2>&1) || {
        cat "$scratch/out" >&2
        die "dkms install -j$jobs $m/$v for $kernel failed"
    }
    read -r wall user sys <<<"$t"
    start=$(head -n 1 "$scratch/start")
    log=$(compgen -G "$root/var/lib/dkms/$m/$v/$kernel/*/log/make.log" | head -n 1 || true)
    [[ $start && $log ]] || die "$m/$v for $kernel: no build window (no date stamp or no make.log)"
    end=$(stat -c %.6Y "$log")
    awk -v wall="$wall" -v cpu="$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" -v s="$start" -v e="$end" '
        $1 >= s { mk += $2 - $1 }
        END { printf "%.3f %.3f %.3f %.2f\n", wall, e - s, mk, cpu }' "$scratch/makes"
    rm -rf "$root"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg) started=$(date -u '+%Y-%m-%d %H:%M')
rows=$scratch/rows
: >"$rows"
printf '%-14s %-15s | %7s %7s %7s %7s | %7s %7s %7s %7s | %7s %7s %7s\n' module kernel T1 B1 make1 cpu1 \
    T2 B2 make2 cpu2 serial para dkms
for w in "${wanted[@]}"; do
    dir=$(compgen -G "$sources/$w-[0-9]*" | sort -V | tail -n 1 || true)
    [[ $dir && -f $dir/dkms.conf ]] || die "$sources/$w-*: no such module source (run tests/setup.sh --bench)"
    name=$(cd "$dir" && bash -c '. ./dkms.conf >/dev/null 2>&1; echo "$PACKAGE_NAME"')
    for k in "${kernels[@]}"; do
        r1=$(measure "$dir" "$k" 1) || exit 2
        r2=$(measure "$dir" "$k" 2) || exit 2
        read -r t1 b1 m1 c1 <<<"$r1"
        read -r t2 b2 m2 c2 <<<"$r2"
        awk -v name="$name" -v k="$k" -v t1="$t1" -v b1="$b1" -v m1="$m1" -v c1="$c1" \
            -v t2="$t2" -v b2="$b2" -v m2="$m2" -v c2="$c2" -v rows="$rows" 'BEGIN {
            p = 2 * (b1 - b2); if (p < 0) p = 0; if (p > b1) p = b1
            s = b1 - p
            d = ((t1 - b1) + (t2 - b2)) / 2; if (d < 0) d = 0
            printf "%-14s %-15s | %7.2f %7.2f %7.2f %7.2f | %7.2f %7.2f %7.2f %7.2f | %7.2f %7.2f %7.2f\n",
                name, k, t1, b1, m1, c1, t2, b2, m2, c2, s, p, d
            printf "%s\t%s\t%.2f\t%.2f\t%.2f\n", name, k, s, p, d >>rows
        }'
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

{
    echo "# Job profiles measured by bench/profile-jobs.sh$([[ $all_makes ]] && echo " -a") (one dkms install -j1 and -j2 per row)."
    echo "# machine: $(nproc) CPUs, $(grep -m1 '^model name' /proc/cpuinfo | sed 's/.*: //'), $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "# dkms: $("$dkms" --version 2>&1 | head -n 1); date: $started to $(date -u '+%H:%M') UTC"
    echo "# load average (1, 5, 15 min): $load_before before, $load_after after"
    if awk -v a="${load_before%% *}" -v b="${load_after%% *}" 'BEGIN { exit !(a > 1 || b > 1) }'; then
        echo "# measured while other work ran on the machine (the load above): the seconds are inflated;"
        echo "# the shares of serial, parallel and dkms time are the more telling figures"
    fi
    if [[ $all_makes ]]; then
        echo "# makes: every outermost make given the call's -jN (as under a shared jobserver)"
    else
        echo "# makes: as dkms starts them (a MAKE not beginning with make gets no -j: its makes count as serial)"
    fi
    echo "# T1 = serial_s + parallel_s + dkms_s at -j1; T2 = serial_s + parallel_s / 2 + dkms_s at -j2"
    printf 'module\tkernel\tserial_s\tparallel_s\tdkms_s\n'
    cat "$rows"
} >"$out"
echo
echo "seconds; T: the dkms call's wall, B: its build's window, make: the outermost makes in B, cpu: the"
echo "call's user+sys; serial, para(llel), dkms: the profile written"
echo "load:  $load_before before, $load_after after"
echo "wrote: $out"
