#!/bin/bash
# One run of bench/preflight.sh (not meant to be run by hand): in the pacman sandbox of the
# end-to-end tests (tests/pacman/lib.sh), the kernel package and its headers at K1 with the real
# modules installed, then `pacman -U` of K2's kernel and headers (a kernel upgrade, what -Syu does
# to a kernel), with the preflight as MODE says (`abort` or `off`). Prints the upgrade's wall time
# in seconds on the last line, after checking every module ended installed on K2.
#   DKMSHOOK_PKGS=DIR bash bench/preflight-one.sh MODE MODULE...
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
export DKMS_HOOK_PREFLIGHT=$mode
# Warm the page cache with what the upgrade reads, as for every run.
cat "$(pkg linux-test "${K2//-/_}-1")" "$(pkg linux-test-headers "${K2//-/_}-1")" >/dev/null
start=$(date +%s.%N)
pacman_run -U "$(pkg linux-test "${K2//-/_}-1")" "$(pkg linux-test-headers "${K2//-/_}-1")" >&2
end=$(date +%s.%N)
for m in "$@"; do
  # the source directory's name, as the -dkms package installs it
  v=$(pacman -Ql "$m-dkms" | sed -n "s|.* /usr/src/$m-\\([^/]*\\)/dkms.conf\$|\\1|p" | head -n 1)
  name=$(sed -n 's/^PACKAGE_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "/usr/src/$m-$v/dkms.conf" | head -n 1)
  expect_installed "${name:-$m}" "$v" "$K2" >&2
done
if [[ $mode != off ]]; then
  expect_output 'built in the preflight'
fi
echo "$end - $start" | bc
