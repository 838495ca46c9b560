#!/bin/bash
# Scenario 10: a stand-in 90-mkinitcpio-install.hook (same name and triggers as mkinitcpio's)
# records which DKMS modules exist when it runs: all of the transaction's are already installed,
# for the kernel that arrives with them and for the one already there.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base
pacman_run -U "$(pkg mkinitcpio)"
pacman_run -U $(kernel_pkgs "$K1")
pacman_run -U $(kernel_pkgs "$K2") "$(pkg dkmshook-plain-dkms 1.0-1)" "$(pkg acpi-call-dkms)"
ours=$(line_of 'Installing DKMS modules')
initcpio=$(line_of 'Updating linux initcpios')
((ours < initcpio)) || fail "the initramfs hook ran before ours"
# What the stand-in saw in its last run.
seen=$(awk '/^run$/ { s = "" ; next } { s = s $0 "\n" } END { printf "%s", s }' \
  /var/log/initcpio-seen.log)
log "the initramfs hook saw: ${seen//$'\n'/ }"
for k in "$K1" "$K2"; do
  for ko in dkmshook_plain acpi_call; do
    grep -Eq "^$k/$ko\\.ko" <<<"$seen" || fail "$ko was not installed for $k when the initramfs hook ran"
  done
done
expect_stock_hooks_silent
done_ok
