#!/bin/bash
# Scenario 13: a kernel's packages changed one at a time. Reinstalling the same kernel and
# headers (same release: pacman sees an upgrade of the same paths) leaves its modules installed.
# Removing only the headers keeps the modules and the depmod data of a kernel that may still boot.
# Removing the kernel afterwards, without headers, leaves nothing in its /usr/lib/modules
# directory or in the dkms tree.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base
pacman_run -U $(kernel_pkgs "$K1") $(kernel_pkgs "$K2")
pacman_run -U "$(pkg dkmshook-plain-dkms 1.0-1)"
expect_installed dkmshook-plain 1.0 "$K2"

pacman_run -U $(kernel_pkgs "$K2")
expect_output 'reinstalling linux-test'
expect_no_output '^error:'
expect_installed dkmshook-plain 1.0 "$K2"
expect_installed dkmshook-plain 1.0 "$K1"

# Headers only: the kernel stays and may still boot, so its module stays installed (dkms and the
# file agree) and it keeps its depmod data.
pacman_run -R "linux-test-$K2-headers"
expect_no_output '^error:'
expect_output 'only its headers are going away'
expect_installed dkmshook-plain 1.0 "$K2"
[[ $(ko_files dkmshook-plain "$K2") ]] || fail "dkms says installed for $K2, the file is gone"
[[ -f /usr/lib/modules/$K2/modules.dep ]] || fail "depmod's files of $K2, which may still boot, are gone"

# Then the kernel: its headers are gone, so dkms-hook removes dkms's files itself, and says so.
pacman_run -R "linux-test-$K2"
expect_no_output '^error:'
expect_output 'directly'
expect_not_installed dkmshook-plain "$K2"
expect_kernel_gone "$K2"
expect_installed dkmshook-plain 1.0 "$K1"
expect_stock_hooks_silent
done_ok
