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
# built into tests/.cache/pacman-pkgs first, as the test suite does.
set -euo pipefail
export LC_ALL=C
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() {
  echo "bench/prebuild.sh: $*" >&2
  exit 2
}
((EUID == 0)) || die "must run as root (pacman and dkms run in a private sandbox)"
runs=3
while getopts n: opt; do
  case $opt in
  n) runs=$OPTARG ;;
  *) die "usage: bench/prebuild.sh [-n RUNS] [MODULE...]" ;;
  esac
done
shift $((OPTIND - 1))
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "-n $runs: not a positive number"
mods=("$@")
((${#mods[@]})) || mods=(acpi-call v4l2loopback vpoll)

pkgs=$repo/tests/.cache/pacman-pkgs
bash "$repo/tests/pacman/build-packages.sh" "$pkgs" >&2
export DKMSHOOK_PKGS=$pkgs
logs=$(mktemp -d /tmp/dkms-hook-prebuild-bench.XXXXXX)

one() { # MODE RUN: prints the seconds
  local out=$logs/$1-$2.log
  if ! bash "$repo/bench/prebuild-one.sh" "$1" "${mods[@]}" >"$out" 2>&1; then
    tail -n 30 "$out" >&2
    die "run $2 ($1) failed (log: $out)"
  fi
  tail -n 1 "$out"
}

pre=() cold=()
for ((i = 1; i <= runs; i++)); do
  if ((i % 2)); then
    pre+=("$(one prebuilt "$i")")
    cold+=("$(one cold "$i")")
  else
    cold+=("$(one cold "$i")")
    pre+=("$(one prebuilt "$i")")
  fi
  echo "run $i: pacman -Syu after a prebuild ${pre[-1]} s, without ${cold[-1]} s" >&2
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m_pre=$(median "${pre[@]}")
m_cold=$(median "${cold[@]}")
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "modules: ${mods[*]}; pacman -Syu to the next kernel, $runs runs each, medians"
echo "after a prebuild: $m_pre s; without: $m_cold s"
echo "logs: $logs"
