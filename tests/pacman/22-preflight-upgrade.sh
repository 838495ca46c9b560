#!/bin/bash
# Scenario 22: a kernel upgrade under a real `pacman -Syu` (kernel N -> N+1 from a local
# repository, every module essential) with modules whose Makefiles find their kernel at
# /lib/modules/$kernelver/build (the real ddcci and digimend, our dkmshook-kver), and a stand-in
# toolchain upgraded in the same transaction. The preflight judges each module in the view of
# the system after the transaction: the new kernel's headers at their real place, the new
# compiler first in PATH. A module that really fails on N+1 aborts the transaction with the
# compiler's own error; once it is fixed, the upgrade goes through, each module compiled once
# (by the incoming compiler, in the preflight) and installed for N+1 from that build. Last, a
# preflight that cannot make its view (no CAP_SYS_ADMIN, as in some containers; a read-only
# /var/cache/dkms-hook) says so in one warning and does not block; the install hook builds.
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The stand-in toolchain's wrappers live in /usr/local/bin: first in PATH, for pacman's hooks too.
export PATH=/usr/local/bin:$PATH
# The toolchain's log: in dkms-hook's log directory, which the preflight's sealed view writes through.
tlog=/var/log/dkms-hook/test-toolchain.log
install_base
pacman_run -U "$(pkg linux-test "${K1//-/_}-1")" "$(pkg linux-test-headers "${K1//-/_}-1")" \
  "$(pkg dkmshook-toolchain 1-1)"
pacman_run -U "$(pkg ddcci-dkms)" "$(pkg digimend-dkms)" "$(pkg dkmshook-kver-dkms 2.0-1)" \
  "$(pkg dkmshook-plain-dkms 1.0-1)"
ddcci=$(module_version ddcci-dkms)
digimend=$(module_version digimend-dkms)
for m in "ddcci $ddcci" "digimend $digimend hid-uclogic" "dkmshook-kver 2.0" "dkmshook-plain 1.0"; do
  read -r name ver ko <<<"$m"
  expect_installed "$name" "$ver" "$K1" "$ko"
done

repo=/var/tmp/dkmshook-repo
mkdir -p "$repo"
cp "$(pkg linux-test "${K2//-/_}-1")" "$(pkg linux-test-headers "${K2//-/_}-1")" \
  "$(pkg dkmshook-toolchain 2-1)" "$repo/"
repo-add -q "$repo/test.db.tar.gz" "$repo"/*.pkg.tar.zst
cat >>/etc/pacman.conf <<CONF
[test]
Server = file://$repo
CONF
echo 'essential = all' >/etc/dkms-hook.conf

# dkmshook-kver 2.0 does not compile for N+1: the transaction stops before any file changes,
# with the compiler's own words, not a missing /lib/modules/N+1/build.
: >"$tlog"
pacman_run --may-fail -Syu
((PACMAN_STATUS != 0)) || fail "pacman went on although an essential module does not build"
expect_output 'error: #error "dkmshook-kver does not build for this kernel'
expect_output "error: preflight: dkmshook-kver would not build for $K2 \\(essential\\)"
expect_no_output 'lib/modules/[^ ]*/build: No such file or directory'
expect_no_output 'would not build for .* ddcci|ddcci would not build|digimend would not build'
expect_no_output 'upgrading linux-test'
[[ $(pacman -Q linux-test) == "linux-test ${K1//-/_}-1" ]] || fail "linux-test: $(pacman -Q linux-test)"
[[ $(pacman -Q dkmshook-toolchain) == "dkmshook-toolchain 1-1" ]] || fail "the toolchain moved"
[[ ! -e /usr/lib/modules/$K2 ]] || fail "/usr/lib/modules/$K2 appeared"

# Fixed (1.0 builds everywhere): the upgrade goes through, every module compiled once over both
# tries, by the incoming compiler, in a preflight (the aborted one's builds are kept under their
# stamps); the install hook installs those builds.
cp "$tlog" /var/tmp/toolchain-aborted.log
pacman_run -U "$(pkg dkmshook-kver-dkms 1.0-1)"
expect_installed dkmshook-kver 1.0 "$K1"
mkdir -p "${tlog%/*}"
: >"$tlog"
cat /var/tmp/toolchain-aborted.log >>"$tlog"
pacman_run -Syu
expect_no_output 'would not build'
for m in "ddcci $ddcci" "digimend $digimend hid-uclogic" "dkmshook-kver 1.0" "dkmshook-plain 1.0"; do
  read -r name ver ko <<<"$m"
  expect_installed "$name" "$ver" "$K2" "$ko"
  expect_output "BUILT .*$name/$ver for $K2: built in the preflight"
  ko=$(ko_files "$name" "$K2" "$ko")
  [[ $(modinfo -F vermagic "$ko") == "$K2 "* ]] || fail "$ko is not built for $K2"
done
[[ ! -e /usr/lib/modules/$K1 ]] || fail "/usr/lib/modules/$K1 is left"
if grep -v '^2 ' "$tlog"; then fail "compiled by the outgoing compiler (above)"; fi
expect_output "BUILT .*ddcci/$ddcci for $K2: built in the preflight"
for c in dkmshook_plain.c ddcci.c hid-uclogic-core.c; do
  n=$(grep -c " $c\$" "$tlog" || true)
  ((n == 1)) || fail "$c was compiled $n times over both tries"
done
# dkmshook-kver: 2.0 once, failing, in the aborted try; 1.0 once.
n=$(grep -c " dkmshook_kver.c\$" "$tlog" || true)
((n == 2)) || fail "dkmshook_kver.c was compiled $n times over both tries, not 2"
[[ ! -e /var/cache/dkms-hook/preflight ]] || fail "the preflight's scratch outlived it"
[[ -z $(find /var/cache/dkms-hook/prebuilt -type f 2>/dev/null) ]] ||
  fail "the builds for the installed kernel outlived the transaction"

# No CAP_SYS_ADMIN (a container that refuses unshare): one warning, the transaction completes,
# and the install hook builds as it would without a preflight.
pacman_run -R dkmshook-plain-dkms
setpriv --bounding-set -sys_admin --inh-caps -sys_admin -- \
  pacman --noconfirm -U "$(pkg dkmshook-plain-dkms 1.1-1)" >/var/tmp/out 2>&1 ||
  { cat /var/tmp/out; fail "pacman without CAP_SYS_ADMIN failed"; }
PACMAN_OUT=$(</var/tmp/out)
printf '%s\n' "$PACMAN_OUT" | sed 's/^/    | /'
n=$(grep -c '^warning: preflight: cannot make the view' <<<"$PACMAN_OUT" || true)
((n == 1)) || fail "$n warnings about the view, not 1"
expect_output 'warning: preflight: cannot make the view of the system after the transaction: .*Operation not permitted'
expect_no_output 'built in the preflight'
expect_output "BUILT .*dkmshook-plain/1.1 for $K2\$"
expect_installed dkmshook-plain 1.1 "$K2"

# A read-only /var/cache/dkms-hook: the same.
pacman_run -R dkmshook-plain-dkms
mkdir -p /var/cache/dkms-hook
mount -t tmpfs -o ro,mode=0755 dkmshook-ro /var/cache/dkms-hook
pacman_run -U "$(pkg dkmshook-plain-dkms 1.1-1)"
umount /var/cache/dkms-hook
expect_output 'warning: preflight: cannot make the trial.s scratch directory: /var/cache/dkms-hook/preflight: Read-only file system .*: not checked \(the install hook builds after the transaction as usual\)'
expect_no_output 'built in the preflight'
expect_installed dkmshook-plain 1.1 "$K2"
expect_stock_hooks_silent
done_ok
