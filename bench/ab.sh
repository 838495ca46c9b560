#!/bin/bash
# The A/B driver the pacman benchmarks share (bench/preflight.sh, bench/prebuild.sh): sourced
# after the caller sets NAME (its name in messages), ONE (the script that does one run and
# prints its seconds on its last line, given the variant then the modules), A and B (the two
# variants ONE takes), then `ab_main "$@"`. It reads `-n RUNS` and the modules, builds the test
# packages (dkms-hook's from this checkout, with --profile dist as the PKGBUILD does) into
# tests/.cache/pacman-pkgs, and runs A and B alternately (A B, B A, ...), each in a fresh
# sandbox; it leaves the medians in MEDIAN_A and MEDIAN_B, and prints the machine.
set -euo pipefail
export LC_ALL=C
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() {
  echo "bench/$NAME: $*" >&2
  exit 2
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

ab_main() {
  ((EUID == 0)) || die "must run as root (pacman and dkms run in a private sandbox)"
  local runs=3 opt
  while getopts n: opt; do
    case $opt in
    n) runs=$OPTARG ;;
    *) die "usage: bench/$NAME [-n RUNS] [MODULE...]" ;;
    esac
  done
  shift $((OPTIND - 1))
  [[ $runs =~ ^[1-9][0-9]*$ ]] || die "-n $runs: not a positive number"
  mods=("$@")
  ((${#mods[@]})) || mods=(acpi-call v4l2loopback vpoll)
  # shellcheck disable=SC2034 # read by the caller
  RUNS=$runs
  local pkgs=$repo/tests/.cache/pacman-pkgs
  bash "$repo/tests/pacman/build-packages.sh" "$pkgs" >&2
  export DKMSHOOK_PKGS=$pkgs
  logs=$(mktemp -d "/tmp/dkms-hook-${NAME%.sh}-bench.XXXXXX")
  local a=() b=() i
  for ((i = 1; i <= runs; i++)); do
    if ((i % 2)); then
      a+=("$(ab_one "$A" "$i")")
      b+=("$(ab_one "$B" "$i")")
    else
      b+=("$(ab_one "$B" "$i")")
      a+=("$(ab_one "$A" "$i")")
    fi
    echo "run $i: $A ${a[-1]} s, $B ${b[-1]} s" >&2
  done
  # shellcheck disable=SC2034 # read by the caller
  MEDIAN_A=$(median "${a[@]}") MEDIAN_B=$(median "${b[@]}")
  echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), load $(cut -d' ' -f1-3 /proc/loadavg)"
}

ab_one() { # VARIANT RUN: prints the seconds
  local out=$logs/$1-$2.log
  if ! bash "$repo/bench/$ONE" "$1" "${mods[@]}" >"$out" 2>&1; then
    tail -n 30 "$out" >&2
    die "run $2 ($1) failed (log: $out)"
  fi
  tail -n 1 "$out"
}
