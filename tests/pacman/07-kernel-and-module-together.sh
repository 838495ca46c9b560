#!/bin/bash
# Scenario 7: one transaction brings a new kernel and a new module: each pair is built exactly
# once (the new module for both kernels, the old module for the new kernel), nothing else.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base
pacman_run -U $(kernel_pkgs "$K1")
pacman_run -U "$(pkg vpoll-dkms)"
vpoll=$(module_version vpoll-dkms)

pacman_run -U $(kernel_pkgs "$K2") "$(pkg dkmshook-plain-dkms 1.0-1)"
expect_jobs 1 "dkmshook-plain/1.0 for $K1"
expect_jobs 1 "dkmshook-plain/1.0 for $K2"
expect_jobs 1 "vpoll/$vpoll for $K2"
expect_jobs 0 "vpoll/$vpoll for $K1"
n=$(grep -c 'Installing DKMS modules' <<<"$PACMAN_OUT")
((n == 1)) || fail "our install hook ran $n times"
for k in "$K1" "$K2"; do
  expect_installed dkmshook-plain 1.0 "$k"
  expect_installed vpoll "$vpoll" "$k"
done
expect_stock_hooks_silent
done_ok
