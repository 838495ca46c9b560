#!/bin/bash
# Scenario 9: a module that fails to build: pacman's output shows our failure block (the compiler's
# error, the log's path) and pacman's own `error: command failed to execute correctly`; every
# other module of the transaction is installed.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base
pacman_run -U $(kernel_pkgs "$K1") $(kernel_pkgs "$K2")
pacman_run --may-fail -U "$(pkg dkmshook-broken-dkms)" "$(pkg dkmshook-plain-dkms 1.0-1)" \
  "$(pkg vpoll-dkms)"
vpoll=$(module_version vpoll-dkms)
# A failed post-transaction hook does not change pacman's exit status (FACTS): the packages are in.
((PACMAN_STATUS == 0)) || fail "pacman exited $PACMAN_STATUS"
expect_output 'error: command failed to execute correctly'
for k in "$K1" "$K2"; do
  expect_output "FAILED .*dkmshook-broken/1.0 for $k"
  expect_not_installed dkmshook-broken "$k"
  expect_installed dkmshook-plain 1.0 "$k"
  expect_installed vpoll "$vpoll" "$k"
done
# The compiler's own error line is in the block, not only "make failed", and the full log it
# names is there to read.
expect_output "error: .dkmshook_no_such_symbol. undeclared"
logs=$(grep -oE 'full log: /[^ ]+' <<<"$PACMAN_OUT" | cut -d' ' -f3)
[[ $logs ]] || fail "no full log named"
for f in $logs; do
  grep -q dkmshook_no_such_symbol "$f" || fail "$f: not the failed build's log"
done
# Our block comes before pacman's line.
ours=$(line_of 'FAILED .*dkmshook-broken')
pacmans=$(line_of 'error: command failed to execute correctly')
((ours < pacmans)) || fail "pacman's error line came before our failure block"
expect_stock_hooks_silent
done_ok
