#!/bin/bash
# One run of bench/prebuild.sh (not meant to be run by hand): in the pacman sandbox of the
# end-to-end tests (tests/pacman/lib.sh), the kernel package and its headers at K1 with the real
# modules installed and every module essential, a local repository offering K2; then, when MODE
# is `prebuilt`, `dkms-hook prebuild` (not timed: it runs ahead, from its timer), and then
# `pacman -Syu` to K2, timed. Prints the upgrade's wall time in seconds on the last line, after
# checking every module ended installed on K2 (and, prebuilt, that the upgrade compiled nothing
# new: every job line says the prebuild made it).
#   DKMSHOOK_PKGS=DIR bash bench/prebuild-one.sh prebuilt|cold MODULE...
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tests/pacman/lib.sh"

mode=$1
shift
install_base
pacman_run -U "$(pkg linux-test "${K1//-/_}-1")" "$(pkg linux-test-headers "${K1//-/_}-1")" >&2
mods=()
for m in "$@"; do mods+=("$(pkg "$m-dkms")"); done
pacman_run -U "${mods[@]}" >&2
echo "essential = all" >/etc/dkms-hook.conf
repo=/var/tmp/dkmshook-repo
mkdir -p "$repo"
cp "$(pkg linux-test "${K2//-/_}-1")" "$(pkg linux-test-headers "${K2//-/_}-1")" "$repo/"
repo-add -q "$repo/test.db.tar.gz" "$repo"/*.pkg.tar.zst
printf '[test]\nServer = file://%s\n' "$repo" >>/etc/pacman.conf
pacman_run -Sy >&2
if [[ $mode == prebuilt ]]; then
  dkms-hook prebuild >&2 || fail "the prebuild failed"
fi
# Warm the page cache with what the upgrade reads, as for every run.
cat "$repo"/*.pkg.tar.zst >/dev/null
start=$(date +%s.%N)
pacman_run -Syu >&2
end=$(date +%s.%N)
for m in "$@"; do
  v=$(pacman -Ql "$m-dkms" | sed -n "s|.* /usr/src/$m-\\([^/]*\\)/dkms.conf\$|\\1|p" | head -n 1)
  name=$(sed -n 's/^PACKAGE_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "/usr/src/$m-$v/dkms.conf" | head -n 1)
  # its .ko named as the module, `-` as `_` (the bench's modules all are)
  expect_installed "${name:-$m}" "$v" "$K2" >&2
done
if [[ $mode == prebuilt ]]; then
  expect_output 'built ahead by the prebuild'
  expect_no_output 'BUILT .*for .*[0-9]$'
fi
echo "$end - $start" | bc
