#!/bin/bash
# Scenario 12: the everyday `pacman -Syu`: in one transaction the kernel package moves to a new
# release (one package name, the old release's modules directory goes, the new one's comes) and a
# module is upgraded, next to a module that does not change. The old kernel's modules are removed
# before its files go and nothing of it stays; the new kernel gets the new module version and the
# unchanged module, each built once; the old module version is gone.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base
pacman_run -U "$(pkg linux-test "${K1//-/_}-1")" "$(pkg linux-test-headers "${K1//-/_}-1")"
pacman_run -U "$(pkg dkmshook-plain-dkms 1.0-1)" "$(pkg vpoll-dkms)"
vpoll=$(module_version vpoll-dkms)
expect_installed dkmshook-plain 1.0 "$K1"
expect_installed vpoll "$vpoll" "$K1"

pacman_run -U "$(pkg linux-test "${K2//-/_}-1")" "$(pkg linux-test-headers "${K2//-/_}-1")" \
  "$(pkg dkmshook-plain-dkms 1.1-1)"
expect_output 'upgrading linux-test\.\.\.'
expect_no_output '^error:'
expect_jobs 1 "dkmshook-plain/1.1 for $K2"
expect_jobs 1 "vpoll/$vpoll for $K2"
expect_jobs 0 "for $K1"
expect_installed dkmshook-plain 1.1 "$K2"
expect_installed vpoll "$vpoll" "$K2"
expect_stamp dkmshook-plain "$K2" "plain 1.1-1"
if [[ -e /usr/lib/modules/$K1 ]]; then
  find "/usr/lib/modules/$K1" >&2
  fail "/usr/lib/modules/$K1 is left"
fi
if dkms status 2>/dev/null | grep -Eq "^dkmshook-plain/1\.0|, $K1,"; then
  fail "the old kernel or the old module version is still in dkms status"
fi
left=$(find /var/lib/dkms -mindepth 3 -maxdepth 3 -name "$K1" -o -name "kernel-$K1-*")
[[ -z $left ]] || fail "left in the dkms tree: $left"
[[ ! -e /var/lib/dkms/dkmshook-plain/1.0 ]] || fail "1.0 is left in the dkms tree"
expect_stock_hooks_silent
done_ok
