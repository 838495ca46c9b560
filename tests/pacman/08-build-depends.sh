#!/bin/bash
# Scenario 8: one transaction with two modules where one BUILD_DEPENDS on the other (the importer
# links against the exporter's symbols): both are installed for every kernel, the exporter
# built before the importer on each.
# kernel_pkgs prints two paths without spaces, split on purpose:
# shellcheck disable=SC2046
# shellcheck source=tests/pacman/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_base
pacman_run -U $(kernel_pkgs "$K1") $(kernel_pkgs "$K2")
pacman_run -U "$(pkg dkmshook-importer-dkms)" "$(pkg dkmshook-exporter-dkms)"
expect_no_output '^error:'
for k in "$K1" "$K2"; do
  expect_installed dkmshook-exporter 1.0 "$k"
  expect_installed dkmshook-importer 1.0 "$k"
  exported=$(line_of "BUILT .*dkmshook-exporter/1.0 for $k")
  started=$(line_of "START .*dkmshook-importer/1.0 for $k")
  ((exported < started)) || fail "the importer started before the exporter was built for $k"
done
expect_stock_hooks_silent
done_ok
