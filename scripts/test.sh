#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this; the README's second command):
#   1. native Release build (library, tools, examples, benchmarks) + ctest, with -DPIQUANT_MPI=ON:
#      the tensor-parallel tests (label mpi: mpirun --oversubscribe on loopback, N = 2, 3, 4, the
#      fault and memory checks; ~1-2 min) run here, natively only (not under qemu: the cross build
#      keeps the default PIQUANT_MPI=OFF, which also shows the library needs no MPI)
#   2. AddressSanitizer + UBSan build + ctest (less the tests labelled `slow`: the 60 s server
#      load test, whose 10 s version runs there; and of label mpi only the N = 2 runs, with leak
#      detection off for them: Open MPI's own allocations at exit are not ours); on x86-64 the
#      fuzz smoke test (scripts/fuzz-smoke.sh)
#   3. install, then build examples/minimal against it through find_package(piquant)
#   4. on x86-64: aarch64 cross build + ctest under qemu-user as Cortex-A76 (NEON + dotprod, Pi 5:
#      the whole suite) and as Cortex-A72 (NEON only, Pi 4: the tests labelled `isa`, i.e. every
#      kernel family and the forward pass / KV store / batch that call them; sessions, chat,
#      programs, tokenizers and formats hold no ISA-specific code and run once per build);
#      on an ARM host: the `isa` tests again with PIQUANT_ISA=neon.
# What runs where, and why: every kernel path must run under each CPU model it has (the matmul
# paths line printed before each ctest run names them); the end-to-end suite need not run twice.
# The `isa` label is set in tests/CMakeLists.txt from Catch2 tags.
# Build trees live under build/test-*; JOBS (default: all cores) sets the parallelism.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
arch=$(uname -m)
if [[ "$arch" == x86_64 ]]; then scripts/install-deps.sh --cross; else scripts/install-deps.sh; fi

section() { printf '\n==== %s ====\n' "$*"; }
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

section "native build + tests ($arch)"
configure_build build/test-native -DCMAKE_BUILD_TYPE=Release -DPIQUANT_BUILD_BENCH=ON -DPIQUANT_MPI=ON
run_ctest build/test-native

section "AddressSanitizer + UBSan build + tests"
configure_build build/test-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPIQUANT_BUILD_BENCH=OFF \
  -DPIQUANT_SANITIZE="address;undefined" -DPIQUANT_MPI=ON
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
