#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this; the README's second command):
#   1. native Release build (library, tools, examples, benchmarks) + ctest, with -DPIQUANT_MPI=ON:
#      the tensor-parallel tests (label mpi: mpirun --oversubscribe on loopback, N = 2, 3, 4, the
#      fault and memory checks; ~1-2 min) run here, natively only (not under qemu: the cross build
#      keeps the default PIQUANT_MPI=OFF, which also shows the library needs no MPI)
#   2. AddressSanitizer + UBSan build (clang++) + ctest (less the tests labelled `slow`: the 60 s
#      server load test, whose 10 s version runs there; and of label mpi only the N = 2 runs, with
#      leak detection off for them: Open MPI's own allocations at exit are not ours); on x86-64
#      the fuzz smoke test (scripts/fuzz-smoke.sh)
#   3. install, then build examples/minimal against it through find_package(piquant)
#   4. on x86-64: aarch64 cross build + ctest under qemu-user as Cortex-A76 (NEON + dotprod, Pi 5:
#      the whole suite) and as Cortex-A72 (NEON only, Pi 4: the tests labelled `isa`, i.e. every
#      kernel family and the forward pass / KV store / batch that call them; sessions, chat,
#      programs, tokenizers and formats hold no ISA-specific code and run once per build);
#      on an ARM host: the `isa` tests again with PIQUANT_ISA=neon.
# What runs where, and why: every kernel path must run under each CPU model it has (the matmul
# paths line printed before each ctest run names them); the end-to-end suite need not run twice.
# The `isa` label is set in tests/CMakeLists.txt from Catch2 tags.
# Where the time goes (each stage's wall time is printed; the table of all of them at the end).
# Session 8's CI (2a01cd6, 42 min on a loaded machine; from its build trees' logs): native
# tests 2:42 (server_load_long 70 s, server_tools 65 s the longest; the build was incremental);
# ASan + UBSan build 24:12 (g++ 12: 2825 CPU-s of compiles, 3.8x the native Release build's
# 738 for the same files; per file: chat.cpp 61 s, against 9 s natively and 10 s under clang with
# the same sanitizers in the fuzz build; peft.cpp 66 / 6 / 9 s; json_schema.cpp 59 / 7.5 / 11 s)
# + tests 4:00; fuzz smoke 5:00 (build 2:01, 11 targets x 15 s one after the other); aarch64
# cross build 3:00; qemu cortex-a76 whole suite ~2:30 (its `isa` part ~0:40); cortex-a72 `isa`
# ~0:40. So the cuts are where the time is: the ASan build uses clang (about a quarter of the
# time by those figures; the same sanitizers and tests) and the fuzz targets run JOBS at once.
# The qemu stages stay as they are: the whole suite under the A76 costs ~2 min more than its
# `isa` part and is the one run of the formats, tokenizers and sessions on an aarch64 build
# (unsigned char, alignment); the A72 runs only `isa`. The server tests (the 60 s load test too)
# and MPI run natively only (node, mpirun); ASan leaves out `slow` and MPI beyond N = 2.
# Build trees live under build/test-*; JOBS (default: all cores) sets the parallelism.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
arch=$(uname -m)

# Each stage's wall time is printed when it ends, and all of them (and the total) at the end, also
# when a stage fails: where the CI's 60 minutes go.
stage="" stage_t0=0 times=()
end_stage() {
  [[ -n "$stage" ]] || return 0
  local d=$((SECONDS - stage_t0))
  times+=("$(printf '%3d:%02d  %s' $((d / 60)) $((d % 60)) "$stage")")
  printf '==== %d:%02d for: %s ====\n' $((d / 60)) $((d % 60)) "$stage"
  stage=""
}
summary() {
  end_stage
  printf '\n==== wall time per stage (min:s) ====\n'
  printf '%s\n' "${times[@]}"
  printf '%3d:%02d  total\n' $((SECONDS / 60)) $((SECONDS % 60))
}
trap summary EXIT
section() { end_stage; stage="$*" stage_t0=$SECONDS; printf '\n==== %s ====\n' "$*"; }
section "Debian packages (scripts/install-deps.sh)"
if [[ "$arch" == x86_64 ]]; then scripts/install-deps.sh --cross; else scripts/install-deps.sh; fi

configure_build() {  # dir, cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja -Wno-dev "$@" >/dev/null
  cmake --build "$dir" -j "$JOBS"
}
run_ctest() {  # dir, extra ctest args...
  local dir=$1; shift
  # Which matmul kernel paths this run exercises (ctest hides a passing test's output); then the
  # whole suite, so the output still ends with ctest's summary.
  ctest --test-dir "$dir" -V -R '^matmul_paths$' | grep -o 'matmul paths tested:.*' || true
  ctest --test-dir "$dir" -j "$JOBS" --output-on-failure --timeout 900 "$@"
}

section "native build ($arch)"
configure_build build/test-native -DCMAKE_BUILD_TYPE=Release -DPIQUANT_BUILD_BENCH=ON -DPIQUANT_MPI=ON
section "native tests ($arch): the whole suite"
run_ctest build/test-native

# clang++ when there is one (install-deps.sh --cross installs it; ASAN_CXX overrides, e.g.
# ASAN_CXX=g++ for session 8's build): the same sanitizer flags under g++ 12 made this build the
# slowest stage of the CI (see the top).
asan_cxx=${ASAN_CXX:-$(command -v clang++ || echo g++)}
section "AddressSanitizer + UBSan build ($asan_cxx)"
configure_build build/test-asan -DCMAKE_CXX_COMPILER="$asan_cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPIQUANT_BUILD_BENCH=OFF -DPIQUANT_SANITIZE="address;undefined" -DPIQUANT_MPI=ON
section "AddressSanitizer + UBSan tests (less the labels slow and mpi; mpi N = 2 apart)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 run_ctest build/test-asan -LE 'slow|mpi'
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/test-asan --output-on-failure --timeout 300 -L mpi -R '_n2$'

if [[ "$arch" == x86_64 ]]; then
  section "fuzz smoke: libFuzzer + ASan/UBSan (clang), every file parser ~15 s"
  JOBS=$JOBS scripts/fuzz-smoke.sh 15
fi

section "install + examples/minimal through find_package(piquant)"
rm -rf build/test-install build/test-minimal
cmake --install build/test-native --prefix build/test-install >/dev/null
configure_build build/test-minimal -S examples/minimal -DCMAKE_PREFIX_PATH="$PWD/build/test-install"
./build/test-minimal/minimal | tail -2

if [[ "$arch" == x86_64 ]]; then
  section "aarch64 cross build"
  configure_build build/test-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake \
    -DCMAKE_BUILD_TYPE=Release
  section "tests under qemu-aarch64 -cpu cortex-a76 (Pi 5: NEON + dotprod): the whole suite"
  PIQUANT_QEMU_CPU=cortex-a76 run_ctest build/test-aarch64
  section "tests under qemu-aarch64 -cpu cortex-a72 (Pi 4: NEON, no dotprod): kernel paths (label isa)"
  PIQUANT_QEMU_CPU=cortex-a72 run_ctest build/test-aarch64 -L isa
else
  section "kernel-path tests again on the plain NEON path (PIQUANT_ISA=neon, label isa)"
  PIQUANT_ISA=neon run_ctest build/test-native -L isa
fi
