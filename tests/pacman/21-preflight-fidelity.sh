#!/bin/bash
# Scenario 21: the preflight's verdict is the install's. Both kernels installed, then one
# `pacman -U` of every module source of the test set: the real Debian ones (among them ddcci and
# digimend, whose Makefiles find the kernel at /lib/modules/$kernelver/build, and
# openrazer-driver, which does not compile for these kernels) and our fixtures (one that fails to
# compile, one that fails on one kernel only, one built for the wrong kernel, a dkms.conf with a
# syntax error, two linked by BUILD_DEPENDS, one that finds its kernel at /lib/modules/$(KVER)).
# With the preflight warning only, the transaction goes through: for each module on each
# kernel, what the preflight said (before any file changed, in the view of the system after
# the transaction) is what the install hook then reached, and what dkms status shows.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base
pacman_run -U $(kernel_pkgs "$K1") $(kernel_pkgs "$K2")
modules=(acpi-call-dkms vpoll-dkms v4l2loopback-dkms ddcci-dkms digimend-dkms
  openrazer-driver-dkms dkmshook-plain-dkms dkmshook-broken-dkms dkmshook-exporter-dkms
  dkmshook-importer-dkms dkmshook-wrongkernel-dkms dkmshook-badconf-dkms)
files=()
for m in "${modules[@]}"; do files+=("$(pkg "$m")"); done
files+=("$(pkg dkmshook-kver-dkms 1.0-1)" "$(pkg dkmshook-keep-dkms 1.1-1)")
echo 'essential = all' >/etc/dkms-hook.conf
DKMS_HOOK_PREFLIGHT=warn pacman_run --may-fail -U "${files[@]}"
((PACMAN_STATUS == 0)) || fail "pacman exited $PACMAN_STATUS"

preflight=$(verdicts 'Checking that the DKMS modules build')
install=$(verdicts 'Installing DKMS modules')
log "the preflight's verdicts:"
printf '%s\n' "$preflight" | sed 's/^/    /'
if [[ $preflight != "$install" ]]; then
  diff <(printf '%s\n' "$preflight") <(printf '%s\n' "$install") | sed 's/^/    /' >&2
  fail "the preflight's verdicts (<) are not the install's (>)"
fi
# Every pair was judged, and as expected: the test set's failures are failures, the rest built.
pairs=$(wc -l <<<"$preflight")
((pairs == 28)) || fail "$pairs verdicts, not 28 (14 modules on 2 kernels)"
for k in "$K1" "$K2"; do
  for m in openrazer-driver/3.5.1 dkmshook-broken/1.0 dkmshook-wrongkernel/1.0; do
    grep -qx "$m $k failed" <<<"$preflight" || fail "$m on $k: not failed"
  done
  grep -qx "/usr/src/dkmshook-badconf-1.0/dkms.conf $k failed" <<<"$preflight" ||
    fail "the bad dkms.conf on $k: not failed"
done
grep -qx "dkmshook-keep/1.1 $K1 failed" <<<"$preflight" || fail "keep 1.1 on $K1: not failed"
grep -qx "dkmshook-keep/1.1 $K2 built" <<<"$preflight" || fail "keep 1.1 on $K2: not built"
for k in "$K1" "$K2"; do
  for m in ddcci digimend:hid-uclogic dkmshook-kver; do
    ko=${m#*:} m=${m%%:*}
    [[ $ko == "$m" ]] && ko=
    v=$(module_version "$m-dkms")
    grep -qx "$m/$v $k built" <<<"$preflight" || fail "$m/$v on $k: not built"
    expect_installed "$m" "$v" "$k" "$ko"
  done
done
# What the install hook built, it took from the preflight: each pair compiled once.
built=$(grep -c ' built$' <<<"$install")
reused=$(sed -n '/Installing DKMS modules/,$p' <<<"$PACMAN_OUT" | grep -c ': built in the preflight$' || true)
((reused == built)) || fail "$reused of $built builds came from the preflight"
# A note about a dkms.conf (ddcci's deprecated CLEAN) is said once in the transaction, by the
# preflight, not again by the install hook.
n=$(grep -c 'ddcci-[^ ]*/dkms.conf: CLEAN is deprecated' <<<"$PACMAN_OUT" || true)
((n == 1)) || fail "the note on ddcci's dkms.conf was said $n times"
expect_stock_hooks_silent
done_ok
