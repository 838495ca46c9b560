#!/bin/bash
# Scenario 0: our hook files parse under a real pacman, mask the stock dkms hooks, and send each
# path to the right place: what arrives to `dkms-hook preflight` first and `dkms-hook install`
# after the transaction, what leaves to `dkms-hook remove` before it, a same-version rebuild to
# all three (preflight, then remove, then install). The engine is
# replaced by a recorder here (in the sandbox only), so this checks the hooks alone, exactly.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base

# Every hook file parses: pacman loads them all for any transaction and names each it parsed.
pacman_run --debug -U "$(pkg dummy)"
for h in /usr/share/libalpm/hooks/70-dkms-hook-install.hook \
  /usr/share/libalpm/hooks/70-dkms-hook-preflight.hook \
  /usr/share/libalpm/hooks/70-dkms-hook-remove.hook; do
  expect_output "parsing hook file $h\$"
  expect_no_output "parsing hook file $h failed"
done
expect_no_output '^(error|warning):'
# The stock hooks are masked by name.
for h in 70-dkms-install.hook 70-dkms-upgrade.hook 71-dkms-remove.hook; do
  [[ $(readlink "/etc/pacman.d/hooks/$h") == /dev/null ]] || fail "$h is not masked"
  expect_output "skipping overridden hook /usr/share/libalpm/hooks/$h"
done
[[ $(pacman -Qqo /etc/pacman.d/hooks/70-dkms-install.hook) == dkms-hook ]] ||
  fail "the masks are not dkms-hook's package files"

# The binary pacman runs after the transaction must survive a libalpm soname change.
if ldd /usr/bin/dkms-hook | grep -q libalpm; then fail "/usr/bin/dkms-hook links libalpm"; fi

# Each hook runs its script from /usr/share/libalpm/scripts/ (what the calls below go through).
for c in install preflight remove; do
  [[ $(pacman -Qqo "/usr/share/libalpm/scripts/dkms-hook-$c") == dkms-hook ]] ||
    fail "/usr/share/libalpm/scripts/dkms-hook-$c is not dkms-hook's"
done

# From here on, a recorder stands in for the engine: it logs each call and its stdin.
calls=/var/log/dkms-hook-calls.log
cat >/usr/bin/dkms-hook <<'REC'
#!/bin/bash
{ echo "dkms-hook $*"; sed 's/^/  /'; } >>/var/log/dkms-hook-calls.log
REC
# Runs pacman, then compares the calls it made with the expected text (stdin).
expect_calls() {
  local want got
  want=$(cat)
  pacman_run "$@"
  got=$(cat "$calls" 2>/dev/null || true)
  rm -f "$calls"
  if [[ $got != "$want" ]]; then
    diff <(echo "$want") <(echo "$got") >&2 || true
    fail "pacman $* called dkms-hook differently (diff: expected, got)"
  fi
}

# The decoys in dummy fired nothing (it is installed already: reinstall it).
expect_calls -U "$(pkg dummy)" </dev/null

# The preflight sees what arrives (a kernel's image and headers, sources; not the kernel's other
# files), before anything.
expect_calls -U $(kernel_pkgs "$K1") <<END
dkms-hook preflight
  usr/lib/modules/$K1/build/include/
  usr/lib/modules/$K1/vmlinuz
dkms-hook install
  usr/lib/modules/$K1/build/include/
  usr/lib/modules/$K1/modules.order
  usr/lib/modules/$K1/vmlinuz
END
expect_calls -U "$(pkg dkmshook-plain-dkms 1.0-1)" <<END
dkms-hook preflight
  usr/src/dkmshook-plain-1.0/dkms.conf
dkms-hook install
  usr/src/dkmshook-plain-1.0/dkms.conf
END
# A new version: the old one's dkms.conf is removed, the new one's installed.
expect_calls -U "$(pkg dkmshook-plain-dkms 1.1-1)" <<END
dkms-hook preflight
  usr/src/dkmshook-plain-1.1/dkms.conf
dkms-hook remove
  usr/src/dkmshook-plain-1.0/dkms.conf
dkms-hook install
  usr/src/dkmshook-plain-1.1/dkms.conf
END
# The same version rebuilt: removed with the old files, built from the new ones.
expect_calls -U "$(pkg dkmshook-plain-dkms 1.1-2)" <<END
dkms-hook preflight
  usr/src/dkmshook-plain-1.1/dkms.conf
dkms-hook remove
  usr/src/dkmshook-plain-1.1/dkms.conf
dkms-hook install
  usr/src/dkmshook-plain-1.1/dkms.conf
END
# A kernel and a module in one transaction: one call with both.
vpoll_conf=$(bsdtar -tf "$(pkg vpoll-dkms)" | grep -m1 -E '^usr/src/[^/]+/dkms\.conf$')
expect_calls -U $(kernel_pkgs "$K2") "$(pkg vpoll-dkms)" <<END
dkms-hook preflight
  usr/lib/modules/$K2/build/include/
  usr/lib/modules/$K2/vmlinuz
  $vpoll_conf
dkms-hook install
  usr/lib/modules/$K2/build/include/
  usr/lib/modules/$K2/modules.order
  usr/lib/modules/$K2/vmlinuz
  $vpoll_conf
END
expect_calls -R dkmshook-plain-dkms <<END
dkms-hook remove
  usr/src/dkmshook-plain-1.1/dkms.conf
END
# Only the headers leave: the targets say so (all under build/).
expect_calls -R "linux-test-$K2-headers" <<END
dkms-hook remove
  usr/lib/modules/$K2/build/include/
END
expect_calls -R "linux-test-$K2" <<END
dkms-hook remove
  usr/lib/modules/$K2/modules.order
  usr/lib/modules/$K2/vmlinuz
END
expect_stock_hooks_silent
done_ok
