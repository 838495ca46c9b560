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
# built into tests/.cache/pacman-pkgs first, as the test suite does.
set -euo pipefail
export LC_ALL=C
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() {
  echo "bench/preflight.sh: $*" >&2
  exit 2
}
((EUID == 0)) || die "must run as root (pacman and dkms run in a private sandbox)"
runs=3
while getopts n: opt; do
  case $opt in
  n) runs=$OPTARG ;;
  *) die "usage: bench/preflight.sh [-n RUNS] [MODULE...]" ;;
  esac
done
shift $((OPTIND - 1))
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "-n $runs: not a positive number"
mods=("$@")
((${#mods[@]})) || mods=(acpi-call v4l2loopback vpoll)

pkgs=$repo/tests/.cache/pacman-pkgs
bash "$repo/tests/pacman/build-packages.sh" "$pkgs" >&2
export DKMSHOOK_PKGS=$pkgs
logs=$(mktemp -d /tmp/dkms-hook-preflight-bench.XXXXXX)

one() { # MODE RUN: prints the seconds
  local out=$logs/$1-$2.log
  if ! bash "$repo/bench/preflight-one.sh" "$1" "${mods[@]}" >"$out" 2>&1; then
    tail -n 30 "$out" >&2
    die "run $2 with the preflight $1 failed (log: $out)"
  fi
  tail -n 1 "$out"
}

on=() off=()
for ((i = 1; i <= runs; i++)); do
  if ((i % 2)); then
    on+=("$(one abort "$i")")
    off+=("$(one off "$i")")
  else
    off+=("$(one off "$i")")
    on+=("$(one abort "$i")")
  fi
  echo "run $i: preflight on ${on[-1]} s, off ${off[-1]} s" >&2
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m_on=$(median "${on[@]}")
m_off=$(median "${off[@]}")
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "modules: ${mods[*]}; kernel upgrade under pacman -U, $runs runs each, medians"
echo "preflight on: $m_on s; off: $m_off s; on/off: $(echo "scale=3; $m_on / $m_off" | bc) (goal <= 1.05)"
echo "logs: $logs"
