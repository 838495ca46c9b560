#!/bin/bash
# Benchmark: what a prebuild saves. `pacman -Syu` to the next kernel under a real pacman (the
# pacman sandbox of the end-to-end tests: tests/pacman/lib.sh; a local repository offering the
# kernel and its headers) with real modules installed, every module essential: after
# `dkms-hook prebuild` (run ahead, not timed) against without, alternating (prebuilt cold,
# cold prebuilt, ...), each run in a fresh sandbox. The goal: prebuilt, the upgrade spends on
# DKMS no more than installing ready builds.
#
# Usage (as root, after tests/setup.sh):
#   bench/prebuild.sh [-n RUNS] [MODULE...]
#     -n RUNS   runs of each variant (default 3)
#     MODULE    -dkms packages that tests/pacman/build-packages.sh makes from real Debian sources
#               (default: acpi-call v4l2loopback vpoll)
# The packages (dkms-hook's from this checkout, with --profile dist as the PKGBUILD does) are
# built into tests/.cache/pacman-pkgs first, as the test suite does (bench/ab.sh, the driver).
NAME=prebuild.sh ONE=prebuild-one.sh A=prebuilt B=cold
# shellcheck source=bench/ab.sh
source "$(dirname "${BASH_SOURCE[0]}")/ab.sh"
ab_main "$@"
echo "modules: ${mods[*]}; pacman -Syu to the next kernel, $RUNS runs each, medians"
echo "after a prebuild: $MEDIAN_A s; without: $MEDIAN_B s"
echo "logs: $logs"
