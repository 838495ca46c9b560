#!/bin/bash
# Benchmark: what the preflight costs. A kernel upgrade under a real pacman (the pacman sandbox
# of the end-to-end tests: tests/pacman/lib.sh) with the bench's real modules installed, the
# preflight on (`abort`, every module essential) against off (`DKMS_HOOK_PREFLIGHT=off`), side
# by side, alternating (on off, off on, ...), each run in a fresh sandbox. Goal: on / off <= 1.05
# (the preflight compiles, the install hook then only installs its builds).
#
# Usage (as root, after tests/setup.sh):
#   bench/preflight.sh [-n RUNS] [MODULE...]
#     -n RUNS   runs of each variant (default 3)
#     MODULE    -dkms packages that tests/pacman/build-packages.sh makes from real Debian sources
#               (default: acpi-call v4l2loopback vpoll)
# The packages (dkms-hook's from this checkout, with --profile dist as the PKGBUILD does) are
# built into tests/.cache/pacman-pkgs first, as the test suite does (bench/ab.sh, the driver).
NAME=preflight.sh ONE=preflight-one.sh A=abort B=off
# shellcheck source=bench/ab.sh
source "$(dirname "${BASH_SOURCE[0]}")/ab.sh"
ab_main "$@"
echo "modules: ${mods[*]}; kernel upgrade under pacman -U, $RUNS runs each, medians"
echo "preflight on: $MEDIAN_A s; off: $MEDIAN_B s; on/off: $(echo "scale=3; $MEDIAN_A / $MEDIAN_B" | bc) (goal <= 1.05)"
echo "logs: $logs"
