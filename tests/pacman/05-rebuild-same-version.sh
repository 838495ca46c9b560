#!/bin/bash
# Scenario 5: the same version rebuilt with changed sources (a pkgrel bump): the installed
# module files are built from the new sources.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base
pacman_run -U $(kernel_pkgs "$K1") $(kernel_pkgs "$K2")
pacman_run -U "$(pkg dkmshook-plain-dkms 1.1-1)"
for k in "$K1" "$K2"; do
  expect_stamp dkmshook-plain "$k" "plain 1.1-1"
done

pacman_run -U "$(pkg dkmshook-plain-dkms 1.1-2)"
expect_no_output '^error:'
for k in "$K1" "$K2"; do
  expect_installed dkmshook-plain 1.1 "$k"
  expect_stamp dkmshook-plain "$k" "plain 1.1-2"
done
expect_stock_hooks_silent
done_ok
