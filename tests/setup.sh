#!/bin/bash
# Prepares a Debian 12 machine (run as root) for dkms-hook's full test suite:
# installs dkms, the tools and pacman that the tests drive, the headers of two
# real kernels, and extracts real Debian `-dkms` module sources into
# tests/.cache/sources/usr/src. Idempotent, quiet unless something fails, and
# fast when everything is already in place (no apt call at all then), so
# tests/run can call it every time.
#
# Usage: tests/setup.sh [--bench]
#   --bench   also the two large module sources that only bench/rebuild.sh and
#             bench/profile-jobs.sh build (jool, dahdi): the tests do not
#             need them, so tests/run and .ci/run do not fetch them
set -euo pipefail

bench=
case ${1:-} in
'') ;;
--bench) bench=1 ;;
*)
    echo "tests/setup.sh: $1: unknown option (usage: tests/setup.sh [--bench])" >&2
    exit 2
    ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."
cache=tests/.cache

# Tools the tests run, pacman and makepkg, shellcheck (for the evaluator's bash
# in src/*.sh and the hook scripts in hooks/), zsh, fish and man-db (for the
# completions and the man page build.rs generates), and libc6-dev, which cargo
# needs to link and which gcc only recommends.
packages=(dkms kmod gcc libc6-dev make libarchive-tools zstd fakeroot pacman-package-manager makepkg
    shellcheck zsh fish man-db)
# Real module sources. They give the tests real-world dkms.conf files
# (v4l2loopback's reads the kernel's .config) and real build times. The first
# seven were checked to build with dkms 3.0.10 against two 6.1 kernels. ddcci,
# digimend and openrazer-driver find their kernel at /lib/modules/$kernelver/build
# (KVER=, KVERSION=, KERNELDIR=), as many real Makefiles do; openrazer-driver
# 3.5.1 does not compile on Debian 12's newer 6.1 kernels (hid_report_raw_event
# took a new argument): a real module that really fails.
dkms_packages=(acpi-call-dkms v4l2loopback-dkms vpoll-dkms gost-crypto-dkms tp-smapi-dkms
    dm-writeboost-dkms ddcci-dkms digimend-dkms openrazer-driver-dkms)
# Large real module sources, for the benchmarks only (--bench), checked to
# build with dkms 3.0.10 against two 6.1 kernels: jool (about 70 C files, most
# in one make that dkms gives -jN) and dahdi (about 100 C files in 32 modules;
# its MAKE is a subshell of two makes that dkms gives no -j: one long serial
# step). lttng-modules 2.13.9 does not compile on Debian 12's newer 6.1
# kernels (trace_hrtimer_start took a new argument); openafs's MAKE runs a
# ./configure of some 300 kernel probes, which alone takes several minutes
# per kernel: too long for a bench of both ways on three dkms versions.
if [[ $bench ]]; then dkms_packages+=(jool-dkms dahdi-dkms); fi
headers_re='^linux-headers-6\.1\.0-[0-9]+-amd64$'

log=$(mktemp)
tmpdirs=()
cleanup() {
    rm -f "$log"
    if ((${#tmpdirs[@]})); then rm -rf "${tmpdirs[@]}"; fi
}
trap cleanup EXIT

# Runs a command with its output kept aside; shows it all if the command fails.
quiet() {
    if ! "$@" >>"$log" 2>&1; then
        echo "tests/setup.sh: failed: $*" >&2
        cat "$log" >&2
        exit 1
    fi
}

die() {
    echo "tests/setup.sh: $*" >&2
    exit 1
}

((EUID == 0)) || die "must run as root (it installs packages with apt-get)"
command -v apt-get >/dev/null || die "apt-get not found: the test suite needs a Debian 12 machine"

export DEBIAN_FRONTEND=noninteractive

# Names (of those given) that dpkg has fully installed.
installed() {
    dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null |
        awk '$NF == "installed" { print $1 }' || true
}

# Installed plain-amd64 6.1 kernel headers whose tree is really there.
installed_headers() {
    local p
    for p in $(installed 'linux-headers-6.1.0-*-amd64' | grep -E "$headers_re" || true); do
        if [[ -f /usr/src/${p}/Makefile ]]; then echo "$p"; fi
    done
}

apt_updated=
apt_update() {
    [[ $apt_updated ]] && return
    quiet apt-get update -q
    apt_updated=1
}

# 1. Packages.
want=()
for p in "${packages[@]}"; do
    installed "$p" | grep -qx "$p" || want+=("$p")
done
if (($(installed_headers | wc -l) < 2)); then
    apt_update
    # The archive keeps only recent ABIs, so take the two newest it offers.
    mapfile -t offered < <(apt-cache search --names-only "$headers_re" | awk '{ print $1 }' |
        grep -E "$headers_re" | sort -V | tail -n 2)
    ((${#offered[@]} == 2)) || die "apt offers fewer than two linux-headers-6.1.0-N-amd64 packages"
    want+=("${offered[@]}")
fi
if ((${#want[@]})); then
    apt_update
    quiet apt-get install -y -q --no-install-recommends "${want[@]}"
fi
(($(installed_headers | wc -l) >= 2)) || die "fewer than two linux-headers-6.1.0-N-amd64 installed"

# 2. Real -dkms sources: download each .deb once, extract it when its
# dkms.conf is not in tests/.cache/sources yet.
mkdir -p "$cache/debs" "$cache/sources"
missing=()
for p in "${dkms_packages[@]}"; do
    compgen -G "$cache/debs/${p}_*.deb" >/dev/null || missing+=("$p")
done
if ((${#missing[@]})); then
    apt_update
    # apt-get download drops privileges to _apt: give it a directory it can
    # write, then move the files into the cache.
    dl=$(mktemp -d)
    tmpdirs+=("$dl")
    if id _apt >/dev/null 2>&1; then chown _apt "$dl"; fi
    (cd "$dl" && quiet apt-get download -q "${missing[@]}")
    mv "$dl"/*.deb "$cache/debs/"
fi
for p in "${dkms_packages[@]}"; do
    deb=$(compgen -G "$cache/debs/${p}_*.deb" | sort -V | tail -n 1)
    conf=$(dpkg-deb -c "$deb" | awk '{ print $NF }' | grep -E '^\./usr/src/[^/]+/dkms\.conf$' || true)
    [[ $conf ]] || die "$deb: no usr/src/*/dkms.conf in the package"
    [[ -f $cache/sources/$conf ]] || quiet dpkg-deb -x "$deb" "$cache/sources"
done

# 3. Debian 13's dkms, a newer engine than Debian 12's 3.0.10 (3.2.2, close to
# Arch's 3.3/3.4), for tests/it/newer_dkms.rs. It is fetched with a private apt
# configuration: its own sources list, lists and cache under
# tests/.cache/apt-trixie, so the machine's own apt sources, lists and cache
# are never touched; the mirror is the one the machine already uses for its
# Debian release. The .deb is extracted into tests/.cache/dkms-trixie and its
# usr/sbin/dkms runs from there unchanged: the script needs nothing else from
# its package (it sources no helper file; usr/lib/dkms holds only Debian's
# postinst and autoinstaller helpers, which it does not call), and its
# /etc/dkms defaults are all comments but for autoinstall_all_kernels, which
# `dkms autoinstall` alone reads.
trixie=$cache/dkms-trixie
if [[ ! -x $trixie/usr/sbin/dkms ]]; then
    apt_dir=$cache/apt-trixie
    if ! compgen -G "$apt_dir/debs/dkms_*.deb" >/dev/null; then
        # shellcheck disable=SC1091 # the machine's own file
        codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
        [[ $codename ]] || die "/etc/os-release: no VERSION_CODENAME"
        # The archive that serves the machine's release (not -updates or -security).
        # shellcheck disable=SC2016 # apt's format fields, not shell expansions
        mirror=$(apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE)' \
            'Identifier: Packages' 'Component: main' | awk -v r="$codename" '$2 == r { print $1; exit }')
        [[ $mirror ]] || die "no apt source of the machine serves '$codename main': cannot find a Debian mirror"
        keyring=/usr/share/keyrings/debian-archive-keyring.gpg
        [[ -f $keyring ]] || die "$keyring: missing (install debian-archive-keyring)"
        mkdir -p "$apt_dir/lists" "$apt_dir/cache" "$apt_dir/sources.list.d" "$apt_dir/debs"
        echo "deb [signed-by=$keyring target=Packages] $mirror trixie main" >"$apt_dir/sources.list"
        abs=$(cd "$apt_dir" && pwd)
        apt_private=(-q -o "Dir::Etc::SourceList=$abs/sources.list"
            -o "Dir::Etc::SourceParts=$abs/sources.list.d" -o "Dir::State::Lists=$abs/lists"
            -o "Dir::Cache=$abs/cache" -o "Dir::State::status=/dev/null" -o "Acquire::Languages=none")
        quiet apt-get "${apt_private[@]}" update
        dl=$(mktemp -d)
        tmpdirs+=("$dl")
        if id _apt >/dev/null 2>&1; then chown _apt "$dl"; fi
        (cd "$dl" && quiet apt-get "${apt_private[@]}" download dkms)
        mv "$dl"/dkms_*.deb "$apt_dir/debs/"
    fi
    deb=$(compgen -G "$apt_dir/debs/dkms_*.deb" | sort -V | tail -n 1)
    rm -rf "$trixie.new"
    quiet dpkg-deb -x "$deb" "$trixie.new"
    version=$("$trixie.new/usr/sbin/dkms" --version 2>&1 || true)
    [[ $version == dkms-3.* ]] || die "$deb: its usr/sbin/dkms does not run (--version said: $version)"
    rm -rf "$trixie"
    mv "$trixie.new" "$trixie"
fi

# 4. dkms 3.4.3, what Arch ships, built from its release tarball when the
# repository sits beside a `shared/dkms` folder that holds it (CI clones the
# repository so; DKMSHOOK_SHARED names another `shared` folder): unpacked into
# tests/.cache/dkms-3.4.3, where `make dkms` turns dkms.in into the `dkms`
# script, which runs from there against private trees. Without that folder (a
# plain clone) it says so in one line: tests/run counts the 3.4.3 tests as
# skipped, and .ci/run fails them.
tarball=${DKMSHOOK_SHARED:-../shared}/dkms/dkms-3.4.3.tar.gz
dkms34=$cache/dkms-3.4.3
if [[ -f $tarball && ! -x $dkms34/dkms ]]; then
    rm -rf "$dkms34.new"
    mkdir -p "$dkms34.new"
    quiet tar -xzf "$tarball" -C "$dkms34.new" --strip-components=1
    quiet make -C "$dkms34.new" dkms
    # make writes the script from dkms.in without the executable bit.
    chmod 0755 "$dkms34.new/dkms"
    version=$("$dkms34.new/dkms" --version 2>&1 || true)
    [[ $version == dkms-3.4.3 ]] || die "$tarball: its dkms does not run (--version said: $version)"
    rm -rf "$dkms34"
    mv "$dkms34.new" "$dkms34"
fi
if [[ ! -x $dkms34/dkms ]]; then
    echo "tests/setup.sh: $tarball: missing (a plain clone, without shared/ beside it): the dkms 3.4.3 tests cannot run (skipped by tests/run, failed by .ci/run)"
fi
