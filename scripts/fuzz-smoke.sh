#!/usr/bin/env bash
# Fuzz smoke test: builds the libFuzzer targets of tests/fuzz with clang + ASan + UBSan and runs
# each for a short time from a seed corpus that make_seeds generates (small valid files made by
# the library's own writers). Fails on any crash, sanitizer report, leak, timeout or OOM, leaving
# the input under build/fuzz/crashes/.
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET] [TARGET...]    (default 15 s, every target)
# Reproduce a failure: build/fuzz/tests/fuzz/<target> build/fuzz/crashes/<target>-crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
shift || true
dir=build/fuzz
JOBS=${JOBS:-$(nproc)}
CXX=${FUZZ_CXX:-clang++}
command -v "$CXX" >/dev/null || { echo "fuzz-smoke: $CXX not found (scripts/install-deps.sh --cross installs clang)" >&2; exit 1; }

cmake -S . -B "$dir" -G Ninja -Wno-dev -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPIQUANT_BUILD_FUZZ=ON -DPIQUANT_BUILD_TESTS=OFF -DPIQUANT_BUILD_BENCH=OFF \
  -DPIQUANT_BUILD_TOOLS=OFF -DPIQUANT_BUILD_EXAMPLES=OFF -DPIQUANT_SANITIZE="address;undefined" >/dev/null
cmake --build "$dir" -j "$JOBS"

targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(fuzz_spm_model fuzz_tokenizer_json fuzz_vocab_merges fuzz_tiktoken fuzz_llama2c_tokenizer
           fuzz_gguf fuzz_safetensors fuzz_piq fuzz_llama2c_checkpoint fuzz_encode fuzz_tokenizer_serialized)
fi
rm -rf "$dir/seeds" "$dir/work"
mkdir -p "$dir/crashes" "$dir/work"
"$dir/tests/fuzz/make_seeds" "$dir/seeds"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# JOBS targets at once (each fuzzer is one process): the runs take ceil(targets / JOBS) x SECONDS.
run_one() {  # target: runs it, leaves its verdict in work/<target>.result
  local t=$1 runs cov
  mkdir -p "$dir/work/$t" "$dir/seeds/$t"
  if "$dir/tests/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$dir/crashes/$t-" \
      "$dir/work/$t" "$dir/seeds/$t" >"$dir/work/$t.log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/work/$t.log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$dir/work/$t.log" | tail -1 || true)
    echo "ok ($runs runs, $cov)" >"$dir/work/$t.result"
  else
    echo "FAILED" >"$dir/work/$t.result"
  fi
}
n=0
for t in "${targets[@]}"; do
  run_one "$t" &
  if ((++n % JOBS == 0)); then wait; fi
done
wait
failed=()
for t in "${targets[@]}"; do
  printf '%-26s %3ss ... %s\n' "$t" "$secs" "$(cat "$dir/work/$t.result")"
  if [[ "$(cat "$dir/work/$t.result")" == FAILED ]]; then
    tail -40 "$dir/work/$t.log"
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz-smoke: failures in ${failed[*]} (inputs under $dir/crashes/)" >&2
  exit 1
fi
echo "fuzz-smoke: all ${#targets[@]} targets ran ${secs}s each without a crash"
