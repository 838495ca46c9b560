#!/bin/bash
# Scenario 6: `pacman -R foo-dkms` removes the module from every kernel and unregisters it from
# dkms; another module stays installed.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base
pacman_run -U $(kernel_pkgs "$K1") $(kernel_pkgs "$K2")
pacman_run -U "$(pkg dkmshook-plain-dkms 1.0-1)" "$(pkg vpoll-dkms)"
vpoll=$(module_version vpoll-dkms)
expect_installed dkmshook-plain 1.0 "$K1"

pacman_run -R dkmshook-plain-dkms
expect_output 'Removing DKMS modules'
expect_no_output '^error:'
for k in "$K1" "$K2"; do
  expect_not_installed dkmshook-plain "$k"
  expect_installed vpoll "$vpoll" "$k"
done
expect_unregistered dkmshook-plain
[[ ! -e /usr/src/dkmshook-plain-1.0 ]] || fail "the sources are left"
expect_stock_hooks_silent
done_ok
