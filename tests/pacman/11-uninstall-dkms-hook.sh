#!/bin/bash
# Scenario 11: uninstalling dkms-hook brings the stock dkms hooks back: their names no longer
# point to /dev/null, and the next -dkms package runs them (they record their runs), where
# while dkms-hook was installed they never ran. Installing it again masks them at once.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stock=(70-dkms-install.hook 70-dkms-upgrade.hook 71-dkms-remove.hook)
install_base
pacman_run -U $(kernel_pkgs "$K1")
pacman_run -U "$(pkg dkmshook-plain-dkms 1.0-1)"
expect_installed dkmshook-plain 1.0 "$K1"
for h in "${stock[@]}"; do
  [[ $(readlink "/etc/pacman.d/hooks/$h") == /dev/null ]] || fail "$h is not masked"
done
expect_stock_hooks_silent

pacman_run -R dkms-hook
for h in "${stock[@]}"; do
  [[ ! -e /etc/pacman.d/hooks/$h && ! -L /etc/pacman.d/hooks/$h ]] ||
    fail "/etc/pacman.d/hooks/$h is left"
done
for f in /usr/bin/dkms-hook /usr/share/libalpm/scripts/dkms-hook-{install,preflight,remove}; do
  [[ ! -e $f ]] || fail "$f is left"
done

vpoll_conf=$(bsdtar -tf "$(pkg vpoll-dkms)" | grep -m1 -E '^usr/src/[^/]+/dkms\.conf$')
pacman_run -U "$(pkg vpoll-dkms)"
expect_output 'stock dkms hook ran: install'
expect_no_output 'Installing DKMS modules\.\.\.'
grep -qx "  $vpoll_conf" /var/log/stock-dkms-hook.log || fail "the stock hook did not get $vpoll_conf"

# Installed again together with a module: pacman reloads the hooks after unpacking, so within that
# same transaction the masks hold and only dkms-hook builds the module.
rm /var/log/stock-dkms-hook.log
pacman_run -U "$(pkg dkms-hook)" "$(pkg dkmshook-exporter-dkms)"
expect_stock_hooks_silent
expect_output "BUILT .*dkmshook-exporter/1.0 for $K1"
expect_installed dkmshook-exporter 1.0 "$K1"
done_ok
