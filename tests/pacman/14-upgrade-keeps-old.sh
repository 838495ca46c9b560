#!/bin/bash
# Scenario 14: dkmshook-keep-dkms 1.0 upgraded to 1.1 with `pacman -U`, where 1.1 does not
# compile for the older kernel: the remove hook keeps 1.0 (it sees 1.1 arrive in pacman's
# package file), the install hook's failure block says `kept dkmshook-keep 1.0 on K1`, K1 keeps
# 1.0 loadable (dkms status, the file and its version, modules.dep), K2 has 1.1 alone. Then
# `pacman -R dkmshook-keep-dkms` takes both versions away, the kept copy too. The preflight
# warns of 1.1 on K1 before any file changes, and its build of 1.1 for K2 is what gets installed.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base
pacman_run -U $(kernel_pkgs "$K1") $(kernel_pkgs "$K2")
pacman_run -U "$(pkg dkmshook-keep-dkms 1.0-1)"
for k in "$K1" "$K2"; do expect_installed dkmshook-keep 1.0 "$k"; done

pacman_run --may-fail -U "$(pkg dkmshook-keep-dkms 1.1-1)"
# The preflight saw it first (not essential: not loaded), before any file changed, and its build
# for K2 is the one installed there.
warned=$(line_of "warning: preflight: dkmshook-keep would not build for $K1\$")
upgrading=$(line_of 'upgrading dkmshook-keep-dkms')
((warned < upgrading)) || fail "the preflight's warning came after pacman changed files"
expect_output "BUILT .*dkmshook-keep/1.1 for $K2: built in the preflight"
expect_output "dkmshook-keep/1.0 stays installed for $K1 and $K2"
expect_output "FAILED .*dkmshook-keep/1.1 for $K1"
expect_output "kept dkmshook-keep 1.0 on $K1"
expect_output 'error: command failed to execute correctly'
[[ ! -e /usr/src/dkmshook-keep-1.0 ]] || fail "1.0's sources are left"
expect_installed dkmshook-keep 1.0 "$K1"
expect_installed dkmshook-keep 1.1 "$K2"
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

pacman_run -R dkmshook-keep-dkms
for k in "$K1" "$K2"; do expect_not_installed dkmshook-keep "$k"; done
expect_unregistered dkmshook-keep
[[ ! -e /var/lib/dkms-hook/kept/dkmshook-keep-1.0 ]] || fail "the kept copy of 1.0 is left"
expect_stock_hooks_silent
done_ok
