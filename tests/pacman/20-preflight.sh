#!/bin/bash
# Scenario 20: the preflight under a real `pacman -Syu` from a local repository (repo-add,
# Server = file://): the kernel package moves to the next release while a -dkms package that
# does not compile arrives. pacman has downloaded the packages into its cache when the preflight
# hook runs (chrooted, as on a real system); the preflight finds them through pacman's
# configuration and sync database, unpacks the new headers and the module's sources, and
# trial-builds. The module marked essential fails: pacman aborts and nothing changes. With
# DKMS_HOOK_PREFLIGHT=warn, the same transaction is warned about before any file changes, and
# completes.
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base
pacman_run -U "$(pkg linux-test "${K1//-/_}-1")" "$(pkg linux-test-headers "${K1//-/_}-1")"
pacman_run -U "$(pkg dkmshook-plain-dkms 1.0-1)"
expect_installed dkmshook-plain 1.0 "$K1"

repo=/var/tmp/dkmshook-repo
mkdir -p "$repo"
cp "$(pkg linux-test "${K2//-/_}-1")" "$(pkg linux-test-headers "${K2//-/_}-1")" \
  "$(pkg dkmshook-broken-dkms)" "$repo/"
repo-add -q "$repo/test.db.tar.gz" "$repo"/*.pkg.tar.zst
cat >>/etc/pacman.conf <<CONF
[test]
Server = file://$repo
CONF
echo 'essential = dkmshook-broken' >/etc/dkms-hook.conf

# An essential module that does not build for the new kernel: pacman aborts, nothing changes.
pacman_run --may-fail -Syu dkmshook-broken-dkms
((PACMAN_STATUS != 0)) || fail "pacman went on although an essential module does not build"
expect_output "error: .dkmshook_no_such_symbol. undeclared"
expect_output "error: preflight: dkmshook-broken would not build for $K2 \\(essential\\)"
expect_output 'DKMS_HOOK_PREFLIGHT=warn pacman -Syu'
expect_no_output 'upgrading linux-test'
expect_no_output 'no package file found'
[[ $(pacman -Q linux-test) == "linux-test ${K1//-/_}-1" ]] || fail "linux-test: $(pacman -Q linux-test)"
if pacman -Q dkmshook-broken-dkms 2>/dev/null; then fail "dkmshook-broken-dkms got installed"; fi
[[ ! -e /usr/lib/modules/$K2 ]] || fail "/usr/lib/modules/$K2 appeared"
expect_installed dkmshook-plain 1.0 "$K1"
[[ ! -e /var/cache/dkms-hook/preflight ]] || fail "the preflight's scratch root is left"

# Proceeding knowingly: a warning before any file changes, and the transaction completes.
export DKMS_HOOK_PREFLIGHT=warn
pacman_run -Syu dkmshook-broken-dkms
unset DKMS_HOOK_PREFLIGHT
warned=$(line_of "warning: preflight: dkmshook-broken would not build for $K2 \\(essential\\)")
upgrading=$(line_of 'upgrading linux-test')
((warned < upgrading)) || fail "the warning came after pacman changed files"
expect_installed dkmshook-plain 1.0 "$K2"
expect_not_installed dkmshook-broken "$K2"
[[ ! -e /usr/lib/modules/$K1 ]] || fail "/usr/lib/modules/$K1 is left"
[[ ! -e /var/cache/dkms-hook/preflight ]] || fail "the preflight's scratch root is left"

# Nothing fails: one line per kernel, and the transaction goes on.
pacman_run -U "$(pkg dkmshook-plain-dkms 1.1-1)"
expect_output "preflight: 1 DKMS module builds for $K2\$"
expect_installed dkmshook-plain 1.1 "$K2"
expect_stock_hooks_silent
done_ok
