#!/bin/bash
# Scenario 24: `dkms-hook prebuild` builds ahead for the kernel the repositories offer, and the
# later `pacman -Syu` compiles nothing. A local repository (repo-add, file://) offers kernel N+1;
# every module is essential. The prebuild refreshes a private copy of the sync databases
# (pacman's own stay byte for byte), downloads the upgrade into pacman's cache, and trial-builds
# in the view of the system after it: the module that fails on N+1 is remembered with its
# failure, and `pacman -Syu` aborts on it without compiling, showing the compiler's own error.
# Fixed and prebuilt again, the upgrade goes through without a compilation, each module
# installed for N+1 from the prebuild's build; a prebuild gives way to a transaction that starts
# while it builds. A source changed between the prebuild and the
# upgrade is compiled again, once. A mirror that answers nothing, or a full /var/cache/dkms-hook:
# one line, nothing changed. The unit files pass systemd-analyze verify. Throughout, a stale.db
# that pacman left in its sync directory (its repository is no longer in pacman.conf) offers
# dkmshook-plain-dkms 1.1-2, its package file still in the cache: pacman does not read it, and
# neither the prebuild nor the preflight judges what it offers.
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The compiler wrappers of the stand-in toolchain count the compilations (first in PATH).
export PATH=/usr/local/bin:$PATH
# The toolchain's log: in dkms-hook's log directory, which the preflight's sealed view writes through.
tlog=/var/log/dkms-hook/test-toolchain.log
mkdir -p "${tlog%/*}"
# The C files compiled since the log was emptied (FILE: that one), but kbuild's generated .mod.c.
compiled() { grep " ${1:-}" "$tlog" 2>/dev/null | grep -vc '\.mod\.c$' || true; }
install_base
pacman_run -U "$(pkg linux-test "${K1//-/_}-1")" "$(pkg linux-test-headers "${K1//-/_}-1")" \
  "$(pkg dkmshook-toolchain 1-1)"
pacman_run -U "$(pkg acpi-call-dkms)" "$(pkg ddcci-dkms)" "$(pkg dkmshook-plain-dkms 1.0-1)" \
  "$(pkg dkmshook-kver-dkms 2.0-1)"
acpi=$(module_version acpi-call-dkms)
ddcci=$(module_version ddcci-dkms)
echo 'essential = all' >/etc/dkms-hook.conf

for unit in /usr/lib/systemd/system/dkms-hook-prebuild.{service,timer}; do
  [[ -f $unit ]] || fail "$unit: not installed"
done
out=$(systemd-analyze verify /usr/lib/systemd/system/dkms-hook-prebuild.{service,timer} 2>&1) ||
  fail "systemd-analyze verify: $out"
[[ -z $out ]] || fail "systemd-analyze verify says: $out"
[[ -L /etc/systemd/system/timers.target.wants/dkms-hook-prebuild.timer ]] ||
  fail "the timer is not enabled by the package"

repo=/var/tmp/dkmshook-repo
mkdir -p "$repo"
cp "$(pkg linux-test "${K2//-/_}-1")" "$(pkg linux-test-headers "${K2//-/_}-1")" "$repo/"
repo-add -q "$repo/test.db.tar.gz" "$repo"/*.pkg.tar.zst
cat >>/etc/pacman.conf <<CONF
[test]
Server = file://$repo
CONF
pacman_run -Sy
stale=/var/tmp/dkmshook-stale-repo
mkdir -p "$stale"
cp "$(pkg dkmshook-plain-dkms 1.1-2)" "$stale/"
repo-add -q "$stale/stale.db.tar.gz" "$stale"/*.pkg.tar.zst
cp "$stale/stale.db.tar.gz" /var/lib/pacman/sync/stale.db
cp "$stale"/*.pkg.tar.zst /var/cache/pacman/pkg/
pacman_state() { find /var/lib/pacman -path /var/lib/pacman/db.lck -prune -o -type f -print0 | sort -z | xargs -0 sha256sum; }
before=$(pacman_state)

prebuild() {
  log "dkms-hook prebuild"
  set +e
  PREBUILD_OUT=$(dkms-hook prebuild 2>&1)
  PREBUILD_STATUS=$?
  set -e
  printf '%s\n' "$PREBUILD_OUT" | sed 's/^/    | /'
}

# The offered kernel: built ahead; dkmshook-kver 2.0 fails on it, and is remembered.
mkdir -p "${tlog%/*}" && : >"$tlog"
prebuild
((PREBUILD_STATUS == 1)) || fail "prebuild exited $PREBUILD_STATUS, not 1 (a module would not build)"
grep -q "prebuild: dkmshook-kver would not build for $K2" <<<"$PREBUILD_OUT" || fail "no word of the failure"
grep -q 'error: #error "dkmshook-kver does not build' <<<"$PREBUILD_OUT" || fail "no compiler error"
! grep -q 'dkmshook-plain-dkms 1.0-1 -> 1.1-2' <<<"$PREBUILD_OUT" ||
  fail "the prebuild took the upgrade stale.db offers (its repository is not in pacman.conf)"
[[ ! -e /var/cache/dkms-hook/prebuild/db/sync/stale.db ]] ||
  fail "stale.db was copied into the prebuild's databases"
[[ $(pacman_state) == "$before" ]] || fail "the prebuild changed pacman's databases"
for f in "$repo"/linux-test*-"${K2//-/_}"-1-any.pkg.tar.zst; do
  [[ -f /var/cache/pacman/pkg/${f##*/} ]] || fail "${f##*/}: not downloaded into pacman's cache"
done
# Downloaded into its own cache first, then moved whole: nothing is left there.
[[ -z $(find /var/cache/dkms-hook/prebuild/pkg -type f) ]] ||
  fail "left in the prebuild's cache: $(find /var/cache/dkms-hook/prebuild/pkg -type f)"
[[ $(pacman -Q linux-test) == "linux-test ${K1//-/_}-1" ]] || fail "the prebuild upgraded the kernel"
[[ ! -e /usr/lib/modules/$K2 ]] || fail "the prebuild made /usr/lib/modules/$K2"
status_err=$(dkms-hook status 2>&1 >/dev/null)
grep -q "built ahead for kernel $K2 (not installed yet): .*dkmshook-plain/1.0.*; would not build: dkmshook-kver/2.0" <<<"$status_err" ||
  fail "status does not say what is ready: $status_err"
dkms-hook --dry-run | grep -q "note: built ahead for kernel $K2" || fail "--dry-run does not say what is ready"

# pacman -Syu: the remembered failure aborts it, with the compiler's words; nothing compiled.
mkdir -p "${tlog%/*}" && : >"$tlog"
pacman_run --may-fail -Syu
((PACMAN_STATUS != 0)) || fail "pacman went on although an essential module does not build"
expect_output 'error: #error "dkmshook-kver does not build for this kernel'
expect_output "dkmshook-kver/2.0 for $K2: .*remembered: it failed so at"
expect_output "error: preflight: dkmshook-kver would not build for $K2 \\(essential\\)"
expect_output "BUILT .*dkmshook-plain/1.0 for $K2: built ahead by the prebuild of"
expect_no_output 'dkmshook-plain/1.1'
(($(compiled) == 0)) || fail "the aborted -Syu compiled: $(cat "$tlog")"
[[ $(pacman -Q linux-test) == "linux-test ${K1//-/_}-1" ]] || fail "linux-test moved"

# Fixed (1.0 builds everywhere): a prebuild that pacman interrupts gives way at once. A slow
# compiler first in PATH (each call waits 60 s) holds the prebuild in its first compilation;
# pacman's lock appears: the prebuild stops its builds, says so, exits 0 and frees the run lock
# well before the compilation would have ended, and no process of its trial is left.
pacman_run -U "$(pkg dkmshook-kver-dkms 1.0-1)"
# The wrappers are in /usr (the view shows it), their mark in the log directory (written through).
slow=/var/tmp/dkmshook-slow slow_bin=/usr/local/dkmshook-slow-bin
started=/var/log/dkms-hook/test-slow-started
mkdir -p "$slow" "$slow_bin"
for w in $(grep -l '^# dkmshook-toolchain' /usr/local/bin/*); do
  printf '#!/bin/sh\necho "$$" >>%s\nsleep 60\nexec %s "$@"\n' "$started" "$w" >"$slow_bin/${w##*/}"
  chmod +x "$slow_bin/${w##*/}"
done
(PATH=$slow_bin:$PATH dkms-hook prebuild >"$slow/out" 2>&1; echo $? >"$slow/rc") &
for _ in $(seq 600); do [[ -s $started ]] && break; sleep 0.1; done
[[ -s $started ]] || fail "the slow prebuild never compiled: $(cat "$slow/out")"
touch /var/lib/pacman/db.lck
t0=$SECONDS
for _ in $(seq 400); do [[ -s $slow/rc ]] && break; sleep 0.1; done
rm -f /var/lib/pacman/db.lck
sed 's/^/    | /' "$slow/out"
[[ -s $slow/rc ]] || fail "the prebuild did not give way to pacman within 40 s"
(($(cat "$slow/rc") == 0)) || fail "the prebuild that gave way exited $(cat "$slow/rc")"
grep -q '^prebuild: pacman started a transaction (/var/lib/pacman/db.lck appeared): stopped' "$slow/out" ||
  fail "no word of giving way"
echo "    gave way in $((SECONDS - t0)) s"
sleep 1
left=$(pgrep -f "$slow_bin/" || true)
[[ -z $left ]] || fail "processes of the interrupted prebuild are left: $(ps -o pid,args -p "${left//$'\n'/,}")"
dkms-hook status >/dev/null || fail "dkms-hook status after the interrupted prebuild"

# One prebuild at a time: a second says so and does nothing.
out=$(flock /var/cache/dkms-hook/prebuild/lock dkms-hook prebuild 2>&1) || fail "a second prebuild failed: $out"
[[ $out == 'prebuild: another prebuild is running: nothing done' ]] || fail "a second prebuild: $out"

# Prebuilt again: only what is new is compiled. A pacman lock the stopped prebuild's pacman may
# have left in its private databases does not stop it.
touch /var/cache/dkms-hook/prebuild/db/db.lck
mkdir -p "${tlog%/*}" && : >"$tlog"
prebuild
((PREBUILD_STATUS == 0)) || fail "prebuild exited $PREBUILD_STATUS"
(($(compiled dkmshook_kver.c) == 1)) || fail "dkmshook-kver was compiled $(compiled dkmshook_kver.c) times"
(($(compiled) == 1)) || fail "the second prebuild compiled what it had: $(cat "$tlog")"

# A source edited since the prebuild: compiled again, once; everything else installed as built.
printf '\n/* edited after the prebuild */\n' >>/usr/src/dkmshook-plain-1.0/dkmshook_plain.c
mkdir -p "${tlog%/*}" && : >"$tlog"
pacman_run -Syu
expect_no_output 'would not build'
(($(compiled dkmshook_plain.c) == 1)) || fail "dkmshook-plain was compiled $(compiled dkmshook_plain.c) times"
(($(compiled) == 1)) || fail "the -Syu compiled more than the edited module: $(cat "$tlog")"
for m in "acpi-call $acpi acpi_call" "ddcci $ddcci" "dkmshook-kver 1.0" "dkmshook-plain 1.0"; do
  read -r name ver ko <<<"$m"
  expect_installed "$name" "$ver" "$K2" "$ko"
done
expect_output "BUILT .*acpi-call/$acpi for $K2: built ahead by the prebuild of"
expect_output "BUILT .*dkmshook-plain/1.0 for $K2: built in the preflight"
[[ -z $(find /var/cache/dkms-hook/prebuilt -type f 2>/dev/null) ]] ||
  fail "builds for the installed kernel outlived the install"

# Nothing offered: nothing done, though stale.db is in the prebuild's databases too (as a
# prebuild that copied all of pacman's left it). A mirror that answers nothing: one line,
# nothing changed.
cp /var/lib/pacman/sync/stale.db /var/cache/dkms-hook/prebuild/db/sync/
prebuild
grep -q 'nothing the repositories offer brings DKMS work' <<<"$PREBUILD_OUT" || fail "not said"
sed -i "s|^Server = file://$repo\$|Server = file:///var/tmp/no-such-mirror|" /etc/pacman.conf
before=$(pacman_state)
prebuild
((PREBUILD_STATUS == 0)) || fail "an unreachable mirror made the prebuild fail ($PREBUILD_STATUS)"
n=$(grep -c '^prebuild: cannot refresh the sync databases: ' <<<"$PREBUILD_OUT" || true)
((n == 1)) || fail "$n lines about the mirror, not 1"
[[ $(pacman_state) == "$before" ]] || fail "the prebuild changed pacman's databases"

# A full /var/cache/dkms-hook (a 1 MiB tmpfs): one line, nothing built, nothing changed.
sed -i "s|^Server = file:///var/tmp/no-such-mirror\$|Server = file://$repo|" /etc/pacman.conf
pacman_run -U "$(pkg linux-test "${K1//-/_}-1")" "$(pkg linux-test-headers "${K1//-/_}-1")"
mount -t tmpfs -o size=1m dkmshook-full /var/cache/dkms-hook
prebuild
umount /var/cache/dkms-hook
# Said as the prebuild's, not the preflight's (defect: "warning: preflight: ... the install hook
# builds after the transaction", words of a hook that is not running).
grep -Eq 'warning: prebuild: /var/cache/dkms-hook/preflight: [0-9]+ MiB free on its filesystem, the trial needs about .*: not built ahead \(the preflight of the upgrade looks again\)' <<<"$PREBUILD_OUT" ||
  fail "no word of the full disk"
[[ $(pacman -Q linux-test) == "linux-test ${K1//-/_}-1" ]] || fail "linux-test moved"
expect_stock_hooks_silent
done_ok
