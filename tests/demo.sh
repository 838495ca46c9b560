#!/bin/bash
# Shows what a pacman user sees with dkms-hook: in a throwaway sandbox (a private mount namespace
# with overlays over /usr, /etc and /var; nothing reaches this machine), a real pacman installs
# dkms-hook (built by makepkg from this checkout), one kernel, and then in one transaction a
# second kernel with its headers and two real -dkms modules. pacman's own output is printed as
# it comes, then `dkms status` and the installed module files.
#
#   sudo tests/demo.sh            # the transaction above
#   sudo tests/demo.sh --broken   # the same with a module that fails to build
#
# Needs root and what tests/setup.sh installs (it is run first, and installs it the first time).
# See the README ("The two commands") for how long it takes. With --broken, the failed job's
# whole log is printed (the sandbox's copy vanishes with it) and copied to a directory under /tmp
# it names.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
broken=
[[ ${1:-} == --broken ]] && broken=1

if [[ -z ${DKMSHOOK_IN_SANDBOX:-} ]]; then
  ((EUID == 0)) || { echo "tests/demo.sh: must run as root" >&2; exit 2; }
  bash "$repo/tests/setup.sh"
  echo "==> building the packages with makepkg (once)"
  bash "$repo/tests/pacman/build-packages.sh" "$repo/tests/.cache/pacman-pkgs"
  export DKMSHOOK_PKGS=$repo/tests/.cache/pacman-pkgs
fi
# Enters the sandbox (re-running this script there), then sets it up.
# shellcheck source=tests/pacman/lib.sh
source "$repo/tests/pacman/lib.sh"

bold=
[[ -t 1 ]] && bold=1
show() {
  if [[ $bold ]]; then printf '\n\033[1m# %s\033[0m\n' "$*"; else printf '\n# %s\n' "$*"; fi
  "$@" 2>&1 || true
}

echo "==> preparing the sandbox: dkms-hook and kernel $K1"
install_base >/dev/null
pacman_run -U "$(pkg "linux-test-$K1")" "$(pkg "linux-test-$K1-headers")" >/dev/null

files=("$(pkg "linux-test-$K2")" "$(pkg "linux-test-$K2-headers")" "$(pkg acpi-call-dkms)"
  "$(pkg vpoll-dkms)")
[[ $broken ]] && files+=("$(pkg dkmshook-broken-dkms)")
cd "$PKGS"
show pacman --noconfirm -U "${files[@]##*/}"
cd /
show dkms status
show dkms-hook status
show find /usr/lib/modules -path '*/updates/*' -name '*.ko*'

# The whole log of each failed job, which the failure block names: it lives in the sandbox's
# /var/log/dkms-hook and vanishes with it, so it is shown here, and copied out.
logs=(/var/log/dkms-hook/*.log)
if [[ -e ${logs[0]} ]]; then
  keep=$(mktemp -d /tmp/dkms-hook-demo-logs.XXXXXX)
  for log in "${logs[@]}"; do
    show cat "$log"
    cp "$log" "$keep/"
  done
  printf '
# the logs above, kept after the sandbox is gone: %s
' "$keep"
fi
