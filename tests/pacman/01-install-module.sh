#!/bin/bash
# Scenario 1: `pacman -U foo-dkms` with two kernels installed builds and installs the module for
# both, and pacman's output shows a line per job.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base
pacman_run -U $(kernel_pkgs "$K1") $(kernel_pkgs "$K2")
pacman_run -U "$(pkg acpi-call-dkms)"
ver=$(pacman -Q acpi-call-dkms | awk '{ print $2 }')
ver=${ver%-*}
for k in "$K1" "$K2"; do
  expect_installed acpi-call "$ver" "$k"
  expect_output "acpi-call/$ver.*$k"
done
expect_output 'Installing DKMS modules'
expect_no_output '^error:'
expect_stock_hooks_silent
done_ok
