#!/bin/bash
# Scenario 15: a module that changes package name keeps its old version too, as when Arch moved
# nvidia users from nvidia-dkms to nvidia-open-dkms. dkmshook-keep-dkms 1.0 is installed; from a
# local repository (repo-add, Server = file://) comes dkmshook-keep-open-dkms, which replaces and
# conflicts with it and brings the same dkms module, dkmshook-keep, at 1.1, which does not
# compile for the older kernel. Twice: `pacman -S dkmshook-keep-open-dkms` (the conflict answered
# yes), then, from 1.0 again, `pacman -Syu` (pacman offers the replacement itself). Each time the
# remove hook finds 1.1 in the replacing package's cached file and keeps 1.0, the install hook's
# failure block says `kept dkmshook-keep 1.0 on K1`, K1 keeps 1.0 loadable, K2 has 1.1 alone, and
# the old package and its sources are gone.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base
pacman_run -U $(kernel_pkgs "$K1") $(kernel_pkgs "$K2")

repo=/var/tmp/dkmshook-repo
mkdir -p "$repo"
cp "$(pkg dkmshook-keep-open-dkms 1.1-1)" "$repo/"
repo-add -q "$repo/test.db.tar.gz" "$repo"/*.pkg.tar.zst
cat >>/etc/pacman.conf <<CONF
[test]
Server = file://$repo
CONF

# What a replacement must leave: 1.0 kept on K1, where 1.1 fails, 1.1 alone on K2.
expect_kept_on_k1() {
  expect_output "dkmshook-keep/1.0 stays installed for $K1 and $K2"
  expect_output "FAILED .*dkmshook-keep/1.1 for $K1"
  expect_output "kept dkmshook-keep 1.0 on $K1"
  expect_output 'error: command failed to execute correctly'
  if pacman -Q dkmshook-keep-dkms 2>/dev/null; then fail "dkmshook-keep-dkms is still installed"; fi
  [[ $(pacman -Q dkmshook-keep-open-dkms) == "dkmshook-keep-open-dkms 1.1-1" ]] ||
    fail "dkmshook-keep-open-dkms 1.1-1 is not installed"
  [[ ! -e /usr/src/dkmshook-keep-1.0 ]] || fail "1.0's sources are left"
  expect_installed dkmshook-keep 1.0 "$K1"
  expect_installed dkmshook-keep 1.1 "$K2"
  local pair k v ko
  for pair in "$K1 1.0" "$K2 1.1"; do
    read -r k v <<<"$pair"
    ko=$(ko_files dkmshook-keep "$k")
    [[ $(wc -l <<<"$ko") == 1 ]] || fail "$k: not one dkmshook_keep module: $ko"
    [[ $(modinfo -F version "$ko") == "$v" ]] || fail "$ko is not version $v"
    [[ $(modinfo -F vermagic "$ko") == "$k "* ]] || fail "$ko is not built for $k"
    grep -q "dkmshook_keep.ko" "/usr/lib/modules/$k/modules.dep" || fail "$k: modules.dep lacks it"
  done
  if dkms status 2>/dev/null | grep -q "^dkmshook-keep/1.0, $K2"; then fail "1.0 is left on $K2"; fi
  [[ -f /var/lib/dkms-hook/kept/dkmshook-keep-1.0/dkms.conf ]] || fail "1.0's dkms.conf is not kept"
}

# 1. `pacman -S` of the replacing package: pacman removes the one it conflicts with (the
# question's default is no: --ask=4 turns the conflict question's answer to yes).
pacman_run -U "$(pkg dkmshook-keep-dkms 1.0-1)"
for k in "$K1" "$K2"; do expect_installed dkmshook-keep 1.0 "$k"; done
pacman_run --may-fail -Sy --ask=4 dkmshook-keep-open-dkms
expect_output 'removing dkmshook-keep-dkms'
expect_kept_on_k1

# Removing the replacing package takes both versions and the kept copy away.
pacman_run -R dkmshook-keep-open-dkms
for k in "$K1" "$K2"; do expect_not_installed dkmshook-keep "$k"; done
expect_unregistered dkmshook-keep
[[ ! -e /var/lib/dkms-hook/kept/dkmshook-keep-1.0 ]] || fail "the kept copy of 1.0 is left"

# 2. `pacman -Syu`: pacman itself replaces dkmshook-keep-dkms (its `replaces`).
pacman_run -U "$(pkg dkmshook-keep-dkms 1.0-1)"
for k in "$K1" "$K2"; do expect_installed dkmshook-keep 1.0 "$k"; done
pacman_run --may-fail -Syu
expect_output 'Replace dkmshook-keep-dkms with test/dkmshook-keep-open-dkms'
expect_kept_on_k1
expect_stock_hooks_silent
done_ok
