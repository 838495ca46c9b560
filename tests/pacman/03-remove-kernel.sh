#!/bin/bash
# Scenario 3: removing a kernel (kernel and headers packages) removes its DKMS modules before its
# files go: nothing is left under its /usr/lib/modules directory (kmod's hook stand-in removes
# depmod's files, as on Arch) nor in the dkms tree, and the other kernel keeps its modules.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base
pacman_run -U $(kernel_pkgs "$K1") $(kernel_pkgs "$K2")
pacman_run -U "$(pkg acpi-call-dkms)" "$(pkg dkmshook-plain-dkms 1.0-1)"
acpi=$(module_version acpi-call-dkms)
expect_installed acpi-call "$acpi" "$K2"
expect_installed dkmshook-plain 1.0 "$K2"

pacman_run -R "linux-test-$K2" "linux-test-$K2-headers"
expect_output 'Removing DKMS modules'
expect_no_output '^error:'
expect_not_installed acpi-call "$K2"
expect_not_installed dkmshook-plain "$K2"
expect_kernel_gone "$K2"
expect_installed acpi-call "$acpi" "$K1"
expect_installed dkmshook-plain 1.0 "$K1"
expect_stock_hooks_silent
done_ok
