#!/bin/bash
# Scenario 2: a new kernel (kernel and headers packages) gets every AUTOINSTALL module built for
# it, and nothing is rebuilt for the kernel that already had them.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base
pacman_run -U $(kernel_pkgs "$K1")
pacman_run -U "$(pkg acpi-call-dkms)" "$(pkg dkmshook-plain-dkms 1.0-1)"
acpi=$(module_version acpi-call-dkms)
expect_installed acpi-call "$acpi" "$K1"
expect_installed dkmshook-plain 1.0 "$K1"

pacman_run -U $(kernel_pkgs "$K2")
for k in "$K1" "$K2"; do
  expect_installed acpi-call "$acpi" "$k"
  expect_installed dkmshook-plain 1.0 "$k"
done
expect_jobs 1 "acpi-call/$acpi for $K2"
expect_jobs 1 "dkmshook-plain/1.0 for $K2"
expect_jobs 0 "for $K1"
expect_stock_hooks_silent
done_ok
