#!/usr/bin/env bash
# Installs everything piquant needs to build, test and cross-test, from Debian 12 packages only.
# Usage: scripts/install-deps.sh [--cross]   (--cross adds the aarch64 cross compiler and qemu-user,
# and clang with its libFuzzer/sanitizer runtimes for scripts/fuzz-smoke.sh, and llvm-19 for
# llvm-mca-19, the pipeline model of bench/mca.py)
set -euo pipefail
pkgs=(cmake ninja-build g++ make libxsimd-dev libeigen3-dev catch2 nlohmann-json3-dev libbenchmark-dev unicode-data
      libcpp-httplib-dev curl chromium  # curl, chromium (and node below): piquant-server's tests
      libopenmpi-dev openmpi-bin)       # -DPIQUANT_MPI=ON (docs/distributed.md): CI's native builds
# node and npm: Debian's packages unless the machine already has them (a NodeSource nodejs
# bundles npm, and Debian's npm package would conflict with it).
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
if [[ "${1:-}" == "--cross" ]]; then
  pkgs+=(g++-aarch64-linux-gnu qemu-user clang libclang-rt-14-dev llvm-19)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
