#!/bin/bash
# Scenario 23: every module pacman installs is signed with the system's key, the preflight's
# builds included: the key that the system's dkms signs with is the one the trial builds sign
# with, and a build signed with another is never installed. Run with the dkms named by
# DKMSHOOK_DKMS (dkms 3.0.10, 3.2.2, 3.4.3; empty: the machine's). In this sandbox (a private
# mount namespace) dkms 3.4 believes it runs in a chroot, so framework.conf says
# try_sign_modules=true, for the install hook as for the preflight.
#  1. The key made before anything (dkms's default pair in /var/lib/dkms): `pacman -U foo-dkms`
#     (the preflight builds, the install hook installs that build), then the kernel upgrade
#     (`pacman -U` of the next kernel and its headers): both signed with it.
#  2. framework.conf names another key: the module upgrade is signed with that one.
#  3. No key yet: the kernel moves back, the one key made lands in /var/lib/dkms and signs the
#     module for that kernel; then again no key, and the module reinstalled: the same.
# shellcheck disable=SC2046 # kernel_pkgs prints two paths without spaces
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${DKMSHOOK_DKMS:-} ]]; then
  export DKMS_HOOK_DKMS=$DKMSHOOK_DKMS
  log "dkms: $("$DKMS_HOOK_DKMS" --version)"
fi

# A certificate's serial, and the serial of the key a module file is signed with, as hex
# without leading zeros (modinfo prints a leading zero byte that openssl leaves out).
cert_serial() {
  local s
  s=$(openssl x509 -inform DER -in "$1" -noout -serial 2>/dev/null ||
    openssl x509 -in "$1" -noout -serial) || fail "$1: not a certificate"
  s=${s#serial=}
  s=${s,,}
  echo "${s#"${s%%[!0]*}"}"
}
sig_serial() {
  local s
  s=$(modinfo -F sig_key "$1" | tr -d ':')
  s=${s,,}
  echo "${s#"${s%%[!0]*}"}"
}
# MOD's module file for kernel K is signed with CERT's key.
expect_signed() {
  local mod=$1 k=$2 cert=$3 ko want got
  ko=$(ko_files "$mod" "$k")
  [[ $ko ]] || fail "$mod: no module file for $k"
  want=$(cert_serial "$cert")
  got=$(sig_serial "$ko")
  [[ $got == "$want" ]] || fail "$ko is signed with ${got:-nothing}, not with $cert ($want)"
}
key=/var/lib/dkms/mok.key
cert=/var/lib/dkms/mok.pub
make_key() { # KEY CERT (DER)
  openssl req -new -x509 -nodes -days 36500 -subj "/CN=$3" -newkey rsa:2048 \
    -keyout "$1" -outform DER -out "$2" >/dev/null 2>&1 || fail "openssl could not make $1"
}

install_base
mkdir -p /etc/dkms/framework.conf.d
echo 'try_sign_modules=true' >/etc/dkms/framework.conf.d/sign.conf
rm -f "$key" "$cert"
make_key "$key" "$cert" "the system's key"
pacman_run -U "$(pkg linux-test "${K1//-/_}-1")" "$(pkg linux-test-headers "${K1//-/_}-1")"

# 1. The system's key, made first.
pacman_run -U "$(pkg dkmshook-plain-dkms 1.0-1)"
expect_output "BUILT .*dkmshook-plain/1.0 for $K1: built in the preflight"
expect_signed dkmshook-plain "$K1" "$cert"
pacman_run -U "$(pkg linux-test "${K2//-/_}-1")" "$(pkg linux-test-headers "${K2//-/_}-1")"
expect_output "BUILT .*dkmshook-plain/1.0 for $K2: built in the preflight"
expect_signed dkmshook-plain "$K2" "$cert"

# 2. framework.conf names another key: that one signs.
make_key /etc/dkms/other.key /etc/dkms/other.der "another key"
printf 'mok_signing_key=/etc/dkms/other.key\nmok_certificate=/etc/dkms/other.der\n' \
  >/etc/dkms/framework.conf.d/key.conf
pacman_run -U "$(pkg dkmshook-plain-dkms 1.1-1)"
expect_output "BUILT .*dkmshook-plain/1.1 for $K2: built in the preflight"
expect_signed dkmshook-plain "$K2" /etc/dkms/other.der
rm /etc/dkms/framework.conf.d/key.conf

# 3. No key yet, a kernel arriving: the one made is the system's, and signs it.
rm -f "$key" "$cert"
pacman_run -U "$(pkg linux-test "${K1//-/_}-1")" "$(pkg linux-test-headers "${K1//-/_}-1")"
[[ -f $key && -f $cert ]] || fail "no key in /var/lib/dkms"
expect_output "BUILT .*dkmshook-plain/1.1 for $K1: built in the preflight"
expect_signed dkmshook-plain "$K1" "$cert"
# ... and a module package reinstalled.
rm -f "$key" "$cert"
pacman_run -U "$(pkg dkmshook-plain-dkms 1.1-2)"
[[ -f $key && -f $cert ]] || fail "no key in /var/lib/dkms"
expect_output "BUILT .*dkmshook-plain/1.1 for $K1: built in the preflight"
expect_signed dkmshook-plain "$K1" "$cert"
expect_stock_hooks_silent
done_ok
