#!/bin/bash
# Scenario 20: the preflight under a real `pacman -Syu` from a local repository (repo-add,
# Server = file://): the kernel package moves to the next release while a -dkms package that
# does not compile arrives. pacman has downloaded the packages into its cache when the preflight
# hook runs (chrooted, as on a real system); the preflight finds them through pacman's
# configuration and sync database, unpacks the new headers and the module's sources, and
# trial-builds. The module marked essential fails: pacman aborts and nothing changes. With
# DKMS_HOOK_PREFLIGHT=warn, the same transaction is warned about before any file changes, and
# completes, each module compiled once over both tries (the aborted one's builds are kept; the
# install hook installs that build), the failing one said again without compiling.
# Last, `linux` moved back without its headers: the kernel it replaces has a module marked
# essential, so pacman aborts.
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

# A compiler wrapper first in PATH (pacman hands its environment to the hooks) counts each
# compilation of the module that builds. It counts in dkms-hook's log directory: the
# preflight's view is sealed, and that is one of the few it writes through.
cc=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\([^ ]*\) .*/\1/p' "/usr/src/linux-headers-$K2/.config")
tools=(gcc)
[[ $cc && $cc != gcc ]] && tools+=("$cc")
for tool in "${tools[@]}"; do
  real=$(command -v "$tool")
  # shellcheck disable=SC2016 # the wrapper's own "$@" and $a
  printf '#!/bin/sh\nfor a in "$@"; do case $a in */dkmshook_plain.c) mkdir -p /var/log/dkms-hook; echo "$a" >>/var/log/dkms-hook/test-compiled;; esac; done\nexec %s "$@"\n' \
    "$real" >"/usr/local/bin/$tool"
  chmod 755 "/usr/local/bin/$tool"
done
export PATH=/usr/local/bin:$PATH

# An essential module that does not build for the new kernel: pacman aborts, nothing changes.
pacman_run --may-fail -Syu dkmshook-broken-dkms
((PACMAN_STATUS != 0)) || fail "pacman went on although an essential module does not build"
expect_output "error: .dkmshook_no_such_symbol. undeclared"
expect_output "error: preflight: dkmshook-broken would not build for $K2 \\(essential\\)"
expect_output 'proceed knowingly with .DKMS_HOOK_PREFLIGHT=warn pacman --noconfirm -Syu dkmshook-broken-dkms.'
expect_no_output 'upgrading linux-test'
expect_no_output 'no package file found'
# The kernel the upgrade replaces keeps its headers until the transaction: the trial, which
# plans for the kernels that stay, says nothing of it (it said "kernel K1 has no headers").
expect_no_output "kernel $K1 has no headers"
[[ $(pacman -Q linux-test) == "linux-test ${K1//-/_}-1" ]] || fail "linux-test: $(pacman -Q linux-test)"
if pacman -Q dkmshook-broken-dkms 2>/dev/null; then fail "dkmshook-broken-dkms got installed"; fi
[[ ! -e /usr/lib/modules/$K2 ]] || fail "/usr/lib/modules/$K2 appeared"
expect_installed dkmshook-plain 1.0 "$K1"
[[ ! -e /var/cache/dkms-hook/preflight ]] || fail "the preflight's scratch root is left"

# Proceeding knowingly: a warning before any file changes, and the transaction completes. The
# module that builds was compiled once in both tries: the aborted one's build (kept in the store
# under its stamp) is what the second installs; the one that fails is said again as remembered.
export DKMS_HOOK_PREFLIGHT=warn
pacman_run -Syu dkmshook-broken-dkms
unset DKMS_HOOK_PREFLIGHT
for tool in "${tools[@]}"; do rm "/usr/local/bin/$tool"; done
compiled=$(wc -l </var/log/dkms-hook/test-compiled)
((compiled == 1)) || fail "dkmshook-plain was compiled $compiled times in the two tries"
expect_output "BUILT .*dkmshook-plain/1.0 for $K2: built in the preflight"
expect_output "dkmshook-broken/1.0 for $K2: .*remembered: it failed so at"
[[ -z $(find /var/cache/dkms-hook/prebuilt -type f 2>/dev/null) ]] ||
  fail "the builds for the installed kernel outlived the transaction"
warned=$(line_of "warning: preflight: dkmshook-broken would not build for $K2 \\(essential\\)")
upgrading=$(line_of 'upgrading linux-test')
((warned < upgrading)) || fail "the warning came after pacman changed files"
expect_installed dkmshook-plain 1.0 "$K2"
expect_not_installed dkmshook-broken "$K2"
[[ ! -e /usr/lib/modules/$K1 ]] || fail "/usr/lib/modules/$K1 is left"
[[ ! -e /var/cache/dkms-hook/preflight ]] || fail "the preflight's scratch root is left"

# Nothing fails: one line per kernel, and the transaction goes on. The package is named by a
# relative path, as in `cd /var/cache/pacman/pkg && pacman -U foo.pkg.tar.zst`: pacman has moved
# to its root while it runs the hook, and the preflight still finds the file.
plain=$(pkg dkmshook-plain-dkms 1.1-1)
cd "${plain%/*}" || fail "cannot cd to ${plain%/*}"
pacman_run -U "${plain##*/}"
cd / || fail "cannot cd to /"
expect_no_output 'cannot read package'
expect_output "preflight: 1 DKMS module builds for $K2\$"
expect_installed dkmshook-plain 1.1 "$K2"
expect_stock_hooks_silent

# The kernel package moved without its headers: the kernel it brings would boot without the
# module the kernel it replaces has, marked essential: pacman aborts, nothing changes.
echo 'essential = dkmshook-plain' >/etc/dkms-hook.conf
pacman_run --may-fail -U "$(pkg linux-test "${K1//-/_}-1")"
((PACMAN_STATUS != 0)) || fail "pacman went on with a kernel without headers"
expect_output "kernel $K1 arrives without its headers .* dkmshook-plain will be missing on it"
expect_output "error: preflight: dkmshook-plain would not build for $K1 \\(essential\\)"
[[ $(pacman -Q linux-test) == "linux-test ${K2//-/_}-1" ]] || fail "linux-test: $(pacman -Q linux-test)"
expect_installed dkmshook-plain 1.1 "$K2"
done_ok
