#!/bin/bash
# Scenario 4: foo-dkms 1.0 upgraded to 1.1: 1.0 is gone from every kernel and from the dkms
# tree, 1.1 is installed everywhere, and the module files are 1.1's.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base
pacman_run -U $(kernel_pkgs "$K1") $(kernel_pkgs "$K2")
pacman_run -U "$(pkg dkmshook-plain-dkms 1.0-1)"
expect_installed dkmshook-plain 1.0 "$K1"

pacman_run -U "$(pkg dkmshook-plain-dkms 1.1-1)"
expect_no_output '^error:'
if dkms status 2>/dev/null | grep -q '^dkmshook-plain/1.0'; then fail "1.0 is still in dkms status"; fi
[[ ! -e /var/lib/dkms/dkmshook-plain/1.0 ]] || fail "1.0 is left in the dkms tree"
[[ ! -e /usr/src/dkmshook-plain-1.0 ]] || fail "1.0's sources are left"
for k in "$K1" "$K2"; do
  expect_installed dkmshook-plain 1.1 "$k"
  expect_stamp dkmshook-plain "$k" "plain 1.1-1"
done
expect_stock_hooks_silent
done_ok
