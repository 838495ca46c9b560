# shellcheck shell=bash
# Shared by the pacman end-to-end scenarios (sourced): a hermetic sandbox around a real pacman,
# and the assertions the scenarios make on what pacman, dkms and the modules tree show.
#
# The sandbox: the script re-runs itself in a private mount namespace (unshare -m) where /usr,
# /etc and /var are overlays whose writes go to a tmpfs. pacman runs with root `/` (its hooks
# chroot there, as on a real system) and its database, cache and log live in the overlaid /var;
# dkms (the Debian host's), its tree and the modules all live in the overlays. Everything
# vanishes with the namespace; nothing reaches the machine. Inside, the host's kernels, dkms
# modules, pacman state and hooks are hidden first, so each scenario starts from nothing.
#
# Environment: DKMSHOOK_PKGS, the directory build-packages.sh filled (required).

set -euo pipefail

: "${DKMSHOOK_PKGS:?DKMSHOOK_PKGS must name the directory build-packages.sh filled}"
PKGS=$(realpath -- "$DKMSHOOK_PKGS")

if [[ -z ${DKMSHOOK_IN_SANDBOX:-} ]]; then
  ((EUID == 0)) || { echo "$0: needs root (mount namespace, pacman)" >&2; exit 1; }
  export DKMSHOOK_IN_SANDBOX=1
  exec unshare --mount --propagation private -- bash "$0" "$@"
fi

mapfile -t KERNELS <"$PKGS/kernels"
K1=${KERNELS[0]}
K2=${KERNELS[1]}
SCENARIO=${0##*/}
SCENARIO=${SCENARIO%.sh}
STARTED=$SECONDS
PACMAN_OUT=

sandbox_setup() {
  local top d
  top=$(mktemp -d /tmp/dkmshook-sandbox.XXXXXX)
  mount -t tmpfs -o mode=0755 dkmshook-sandbox "$top"
  for d in usr etc var; do
    mkdir -p "$top/$d/upper" "$top/$d/work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$top/$d/upper,workdir=$top/$d/work" "/$d"
  done
  mkdir -p "$top/tmp"
  export TMPDIR=$top/tmp
  # /var/cache on a filesystem of its own, as on a real system: the preflight's view keeps its
  # writes there, and an overlay (the sandbox's /var) cannot hold an overlay's upper layer.
  mount -t tmpfs -o mode=0755 dkmshook-cache /var/cache
  # dkms-hook's run lock lives in /run (ROOT/run/dkms-hook.lock, root `/` here): a private /run
  # keeps it from the machine's, and from other sandboxes running at the same time.
  mount -t tmpfs -o mode=0755 dkmshook-run /run
  # The namespace takes its mounts along when it ends; the empty mount point is all that stays.
  SANDBOX_TOP=$top
  trap 'umount -l "$SANDBOX_TOP" 2>/dev/null; rmdir "$SANDBOX_TOP" 2>/dev/null' EXIT

  # Hide the host's kernels, DKMS modules (keeping dkms's signing key), pacman state and hooks.
  rm -rf /usr/lib/modules /var/lib/pacman /var/cache/pacman /var/log/pacman.log \
    /etc/pacman.d /usr/share/libalpm/hooks
  mkdir -p /usr/lib/modules
  if [[ -d /var/lib/dkms ]]; then
    find /var/lib/dkms -mindepth 1 -maxdepth 1 ! -name 'mok.*' -exec rm -rf {} +
  fi
  for d in /usr/src/*/; do
    [[ -f $d/dkms.conf ]] && rm -rf "$d"
  done
  cat >/etc/pacman.conf <<'CONF'
# pacman.conf of the dkms-hook test sandbox: local packages only, no signatures.
[options]
Architecture = auto
SigLevel = Never
LocalFileSigLevel = Never
CONF
  mkdir -p /var/lib/pacman /var/cache/pacman/pkg
  log "sandbox ready (kernels $K1 and $K2)"
}

log() {
  printf '[%s %5ds] %s\n' "$SCENARIO" "$((SECONDS - STARTED))" "$*"
}

# The path of the built package NAME (exact pkgname), VERSION optional (pkgver-pkgrel).
pkg() {
  local name=$1 ver=${2:-} f
  for f in "$PKGS/$name"-*.pkg.tar.zst; do
    local rest=${f#"$PKGS/$name"-}
    # rest is pkgver-pkgrel-arch.pkg.tar.zst: exactly two more dashes than pkgver has none
    [[ $rest =~ ^[^-]+-[^-]+-[^-]+\.pkg\.tar\.zst$ ]] || continue
    if [[ -z $ver || $rest == "$ver"-* ]]; then
      echo "$f"
      return
    fi
  done
  fail "no package $name${ver:+ $ver} in $PKGS"
}

kernel_pkgs() { # KVER: the kernel and its headers
  pkg "linux-test-$1"
  pkg "linux-test-$1-headers"
}

# Runs pacman, shows its output, keeps it in $PACMAN_OUT; fails the scenario on a non-zero
# exit unless the first argument is --may-fail (the status is then in $PACMAN_STATUS).
pacman_run() {
  local may_fail=
  if [[ $1 == --may-fail ]]; then
    may_fail=1
    shift
  fi
  log "pacman $*"
  set +e
  PACMAN_OUT=$(pacman --noconfirm "$@" 2>&1)
  PACMAN_STATUS=$?
  set -e
  printf '%s\n' "$PACMAN_OUT" | sed 's/^/    | /'
  if [[ -z $may_fail ]] && ((PACMAN_STATUS != 0)); then
    fail "pacman $* exited $PACMAN_STATUS"
  fi
}

# The base system every scenario starts from: the host stand-ins, dkms and kmod stand-ins and
# dkms-hook itself (from the package makepkg built out of this checkout).
install_base() {
  pacman_run -U "$(pkg host-system)" "$(pkg dkms)" "$(pkg kmod)"
  pacman_run -U "$(pkg dkms-hook)"
}

fail() {
  echo "FAIL [$SCENARIO]: $*" >&2
  if command -v dkms >/dev/null; then
    echo "--- dkms status" >&2
    dkms status 2>&1 | sed 's/^/    /' >&2 || true
  fi
  echo "--- /usr/lib/modules" >&2
  find /usr/lib/modules -path '*/build' -prune -o -print 2>/dev/null | sed 's/^/    /' >&2 || true
  # Called in a command substitution, exit would only end the subshell: end the scenario.
  if ((BASH_SUBSHELL > 0)); then
    kill -TERM $$
  fi
  exit 1
}

# Asserts that the last pacman output contains (grep -E) PATTERN.
expect_output() {
  grep -Eq -- "$1" <<<"$PACMAN_OUT" || fail "pacman's output lacks /$1/"
}

expect_no_output() {
  if grep -Eq -- "$1" <<<"$PACMAN_OUT"; then fail "pacman's output has /$1/"; fi
}

# The module files of dkms module MOD's built modules installed for kernel K: prints them. KO,
# when the module file is not named after the dkms module (digimend's hid-uclogic), names it.
ko_files() {
  local mod=$1 k=$2 ko=${3:-${1//-/_}}
  find "/usr/lib/modules/$k/updates" -name "$ko.ko*" 2>/dev/null || true
}

# MOD/VER is installed for kernel K: `dkms status` says so and its module file (KO, see
# ko_files) is in place.
expect_installed() {
  local mod=$1 ver=$2 k=$3 ko=${4:-}
  dkms status "$mod/$ver" -k "$k" 2>/dev/null | grep -Eq "^$mod/$ver, $k, [^:]+: installed" ||
    fail "$mod/$ver is not installed for $k"
  [[ $(ko_files "$mod" "$k" "$ko") ]] ||
    fail "$mod: no module file under /usr/lib/modules/$k/updates"
}

# No version of MOD is known to dkms for kernel K, and no module file of it is there.
expect_not_installed() {
  local mod=$1 k=$2
  if dkms status 2>/dev/null | grep -Eq "^$mod/[^,]+, $k,"; then
    fail "$mod is still in dkms status for $k"
  fi
  [[ -z $(ko_files "$mod" "$k") ]] || fail "$mod: module file left under /usr/lib/modules/$k"
}

# Nothing of kernel K is left: not its /usr/lib/modules directory (DKMS files, dkms's empty
# directories), nor anything of it in the dkms tree.
expect_kernel_gone() {
  local k=$1 left
  if [[ -e /usr/lib/modules/$k ]]; then
    find "/usr/lib/modules/$k" >&2
    fail "/usr/lib/modules/$k is left"
  fi
  left=$(find /var/lib/dkms -mindepth 2 -maxdepth 3 \( -name "$k" -o -name "kernel-$k-*" \))
  [[ -z $left ]] || fail "left in the dkms tree: $left"
}

# MOD is unknown to dkms: no status line, no directory in the dkms tree.
expect_unregistered() {
  local mod=$1
  if dkms status 2>/dev/null | grep -Eq "^$mod/"; then fail "$mod is still in dkms status"; fi
  [[ ! -e /var/lib/dkms/$mod ]] || fail "/var/lib/dkms/$mod is left"
}

# The stock dkms hooks did not run (their stand-ins record every run).
expect_stock_hooks_silent() {
  if [[ -s /var/log/stock-dkms-hook.log ]]; then
    cat /var/log/stock-dkms-hook.log >&2
    fail "the stock dkms hooks ran"
  fi
  expect_no_output 'stock dkms hook'
}

# The version (pkgver, without pkgrel) of installed package PKG: a -dkms package's module version.
module_version() {
  local v
  v=$(pacman -Q "$1" | awk '{ print $2 }') || fail "$1 is not installed"
  echo "${v%-*}"
}

# The number of the first line of the last pacman output that matches (grep -E) PATTERN.
line_of() {
  local n
  n=$(grep -nE -m1 -- "$1" <<<"$PACMAN_OUT" | cut -d: -f1)
  [[ $n ]] || fail "pacman's output lacks /$1/"
  echo "$n"
}

# The install hook of the last pacman output started exactly N jobs whose label ends in TEXT
# (e.g. "foo/1.0 for K"). The remove hook's jobs, before it, are not counted.
expect_jobs() {
  local want=$1 text=$2 got
  got=$(sed -n '/Installing DKMS modules/,$p' <<<"$PACMAN_OUT" | grep -E ' START ' |
    grep -cE -- "${text//./\\.}\$" || true)
  ((got == want)) || fail "$got jobs for \"$text\" started, not $want"
}

# The installed module file of MOD for kernel K was built from the sources stamped STAMP (the
# test -dkms packages' MODULE_INFO(dkmshook_stamp)).
expect_stamp() {
  local mod=$1 k=$2 want=$3 ko got
  ko=$(ko_files "$mod" "$k")
  [[ $ko ]] || fail "$mod: no module file for $k"
  got=$(modinfo -F dkmshook_stamp "$ko")
  [[ $got == "$want" ]] || fail "$ko is from \"$got\", not \"$want\""
}

# The verdict of each job that the hook whose Description starts with HOOK printed in the last
# pacman output: `MOD/VER KERNEL built|failed|skipped|excluded`, one a line, sorted; a dkms.conf
# the planner refused (an `error:` line naming it for a kernel) counts as failed.
verdicts() {
  awk -v hook="$1" '
    /^\([0-9]+\/[0-9]+\) / { on = (index($0, hook) > 0); next }
    /^(:: |==> |  Summary|   Summary)/ { if (!/Summary/) on = 0 }
    !on { next }
    match($0, /^ *(BUILT|FAILED|SKIPPED|EXCLUDED) +\[[^]]*\] +(\( *[0-9]+\/[0-9]+\) +)?/) {
      word = $1
      rest = substr($0, RLENGTH + 1)
      n = split(rest, a, " for ")
      if (n < 2) next
      k = a[2]; sub(/:.*/, "", k)
      print a[1], k, (word == "BUILT" ? "built" : tolower(word))
      next
    }
    /^error: / && !/^error: preflight:/ {
      line = substr($0, 8)
      n = split(line, a, " for ")
      if (n < 2) next
      k = a[2]; sub(/:.*/, "", k)
      print a[1], k, "failed"
    }' <<<"$PACMAN_OUT" | sort -u
}

done_ok() {
  log "ok ($((SECONDS - STARTED)) s)"
}

sandbox_setup
