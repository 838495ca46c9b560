#!/bin/bash
# Builds every package the pacman end-to-end tests install, with makepkg as an unprivileged user,
# into one directory (first argument; default tests/.cache/pacman-pkgs): dkms-hook itself, made
# by `makepkg` from this checkout's PKGBUILD as a user would, and the test packages from
# tests/pacman/pkgs (stand-ins for the host's dkms, kmod and mkinitcpio, a kernel and a headers
# package per installed Debian kernel, `-dkms` packages of real and fixture module sources).
#
# The test packages are rebuilt only when their inputs changed (a stamp of their PKGBUILDs, the
# sources and the kernels); dkms-hook always is (cargo makes that quick when nothing changed).
# Prints the kernels it packaged, one per line, to the file `kernels` in that directory.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$(realpath -m -- "${1:-$repo/tests/.cache/pacman-pkgs}")
sources=${DKMSHOOK_SOURCES:-$repo/tests/.cache/sources/usr/src}
pkgs=$repo/tests/pacman/pkgs
fixtures=$repo/tests/fixtures

die() {
  echo "build-packages.sh: $*" >&2
  exit 1
}

mkdir -p "$out"
exec 9>"$out/.lock"
flock 9

# makepkg refuses root. As root, run it as uid 1000 in a user namespace: that user still owns
# root's files there, so it reaches the Rust toolchain and cargo's caches in root's home.
as_user() {
  if ((EUID == 0)); then
    unshare -U --map-user=1000 --map-group=1000 -- "$@"
  else
    "$@"
  fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# makepkg in the directory of a PKGBUILD, with everything it writes outside that directory.
# -d: the dependencies (dkms, cargo, ...) are the Debian host's, not pacman packages.
makepkg_in() {
  local dir=$1
  shift
  local log=$work/makepkg.log
  if ! (cd "$dir" && as_user env BUILDDIR="$work/build" PKGDEST="$out" SRCDEST="$work/src" \
    LOGDEST="$work" PKGEXT=.pkg.tar.zst makepkg -d -f --noconfirm "$@") >"$log" 2>&1; then
    cat "$log" >&2
    die "makepkg failed in $dir"
  fi
}

# The kernels: every Debian headers tree for a flavoured kernel (the -common trees are parts).
kernels=()
for d in /usr/src/linux-headers-*; do
  [[ -f $d/Makefile && $d != *-common ]] && kernels+=("${d#/usr/src/linux-headers-}")
done
mapfile -t kernels < <(printf '%s\n' "${kernels[@]}" | sort -V)
((${#kernels[@]} >= 2)) || die "need the headers of two kernels under /usr/src (run tests/setup.sh)"
kernels=("${kernels[@]: -2}")

# -dkms packages: dkms module name, source directory, version[, pkgrel, stamp, package name
# (default NAME-dkms), the package it replaces].
modules=()
real_module() { # NAME: the newest source of NAME from tests/setup.sh's cache
  local dir
  dir=$(compgen -G "$sources/$1-[0-9]*" | sort -V | tail -n 1) ||
    die "no $1 sources under $sources (run tests/setup.sh)"
  modules+=("$1|$dir|${dir##*/"$1"-}||")
}
real_module acpi-call
real_module vpoll
real_module v4l2loopback
# Real sources whose Makefiles find the kernel at /lib/modules/$kernelver/build, and one
# (openrazer-driver 3.5.1) that does not compile for these kernels at all.
real_module ddcci
real_module digimend
real_module openrazer-driver
modules+=("dkmshook-plain|$fixtures/dkmshook-plain-1.0|1.0|1|plain 1.0-1")
modules+=("dkmshook-plain|$fixtures/dkmshook-plain-1.0|1.1|1|plain 1.1-1")
modules+=("dkmshook-plain|$fixtures/dkmshook-plain-1.0|1.1|2|plain 1.1-2")
for m in broken exporter importer; do
  modules+=("dkmshook-$m|$fixtures/dkmshook-$m-1.0|1.0||")
done
# dkmshook-keep 1.0, and 1.1 that does not compile for the older kernel (its fails-on file).
keep11=$out/src/dkmshook-keep-1.1
rm -rf "$keep11"
mkdir -p "$out/src"
cp -r "$fixtures/dkmshook-keep-1.1" "$keep11"
printf '%s\n' "${kernels[0]}" >"$keep11/fails-on"
modules+=("dkmshook-keep|$fixtures/dkmshook-keep-1.0|1.0|1|")
modules+=("dkmshook-keep|$keep11|1.1|1|")
# The same 1.1 under another package name that replaces the first, as nvidia-open-dkms does
# nvidia-dkms.
modules+=("dkmshook-keep|$keep11|1.1|1||dkmshook-keep-open-dkms|dkmshook-keep-dkms")
# dkmshook-kver (its Makefile finds the kernel at /lib/modules/$(KVER)/build): 1.0 builds for
# every kernel, 2.0 stops at an #error for the newer one (its fails-on file).
kver20=$out/src/dkmshook-kver-2.0
rm -rf "$kver20"
cp -r "$fixtures/dkmshook-kver-1.0" "$kver20"
printf '%s\n' "${kernels[1]}" >"$kver20/fails-on"
modules+=("dkmshook-kver|$fixtures/dkmshook-kver-1.0|1.0|1|")
modules+=("dkmshook-kver|$kver20|2.0|1|")
for m in wrongkernel badconf; do
  modules+=("dkmshook-$m|$fixtures/dkmshook-$m-1.0|1.0||")
done

stamp=$(
  {
    printf '%s\n' "${kernels[@]}" "${modules[@]}"
    find "$pkgs" "$fixtures" -type f -print0 | sort -z |
      xargs -0 sha256sum
    for m in "${modules[@]}"; do
      IFS='|' read -r _ dir _ <<<"$m"
      find "$dir" -type f -print0 | sort -z | xargs -0 sha256sum
    done
  } | sha256sum
)
# Up to date: the same stamp, and every package it built still there.
up_to_date() {
  [[ $(head -n 1 "$out/.stamp" 2>/dev/null) == "$stamp" ]] || return 1
  local f
  while read -r f; do
    [[ -f $out/$f ]] || return 1
  done < <(tail -n +2 "$out/.stamp")
}
if ! up_to_date; then
  rm -f "$out"/*.pkg.tar.zst "$out/.stamp"
  for p in host-system dkms kmod mkinitcpio dummy; do
    makepkg_in "$pkgs/$p"
  done
  # A stand-in toolchain in two versions: wrappers of gcc and of the compiler the kernels were
  # built with, first in PATH, that note each C file they compile with their version.
  cc=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\([^ ]*\) .*/\1/p' "/usr/src/linux-headers-${kernels[1]}/.config")
  for v in 1 2; do
    _VER=$v _TOOLS="gcc ${cc:-gcc}" makepkg_in "$pkgs/toolchain"
  done
  for k in "${kernels[@]}"; do
    _KVER=$k makepkg_in "$pkgs/linux"
    _KVER=$k makepkg_in "$pkgs/linux-headers"
    # The same kernels under one package name, whose versions follow the kernels' order.
    _KVER=$k _PKGNAME=linux-test makepkg_in "$pkgs/linux"
    _KVER=$k _PKGNAME=linux-test-headers makepkg_in "$pkgs/linux-headers"
  done
  for m in "${modules[@]}"; do
    IFS='|' read -r name dir ver rel stamp_text pkgname replaces <<<"$m"
    _NAME=$name _SRC=$dir _VER=$ver _REL=${rel:-1} _STAMP=$stamp_text _PKGNAME=$pkgname \
      _REPLACES=$replaces makepkg_in "$pkgs/module-dkms"
  done
  {
    echo "$stamp"
    cd "$out" && ls -- *.pkg.tar.zst
  } >"$out/.stamp"
fi
printf '%s\n' "${kernels[@]}" >"$out/kernels"

# dkms-hook from the checkout. --nocheck: the test suite running this already runs those tests.
# CARGO_TARGET_DIR: the checkout's own target directory, so an unchanged tree builds in seconds.
rm -f "$out"/dkms-hook-*.pkg.tar.zst
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target} makepkg_in "$repo" --nocheck
