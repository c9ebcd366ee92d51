#!/usr/bin/env bash
# Side-by-side tokens/s of piquant and llama.cpp on the same GGUF files, in the same sitting:
# prefill (128 tokens) and decode, at the same ISA level (AVX-512 VNNI: piquant's avx512vnni vs
# ggml's icelake variant; AVX2: piquant's avx2 vs ggml's haswell variant), 1 and 2 threads.
# Repetitions are interleaved (piquant, llama.cpp, piquant, llama.cpp, ...) so both see the same
# machine load; the table gives medians. Not used by the tests. See docs/performance.md.
#
#   bench/compare-llamacpp.sh [LLAMACPP_DIR]
#
# Environment (all optional):
#   LLAMACPP_DIR   llama.cpp install: a folder with node_modules/node-llama-cpp (default ../llamacpp)
#   LLAMA_BENCH    a natively built llama.cpp's llama-bench (cmake -DGGML_NATIVE=ON): used instead of
#                  the npm build (the honest anchor: node's own thread competes with ggml's on a
#                  2-vCPU machine). It runs with every feature of the CPU: set ISAS to the level
#                  that matches it (avx512vnni on an AVX-512 VNNI CPU)
#   PIQUANT_BENCH  piquant-bench binary (default: the first of build/{rel,release,dev}/bench/)
#   MODELS_DIR     where the synthetic GGUFs are (made with ../shared/tools/gguf_synth.py when
#                  missing; default ../gguf)
#   TYPES          weight types to test (default "q4_0 q8_0"; K-quant files too: q4_k_m, q5_k_m,
#                  q6_k, made from a synthetic f16 GGUF by LLAMA_QUANTIZE when set, else by
#                  piquant-convert --to gguf)
#   LLAMA_QUANTIZE llama.cpp's llama-quantize, to make the K-quant files with llama.cpp's own
#                  quantizer (the files people download); optional
#   ISAS           levels (default "avx512vnni avx2"; a level the CPU lacks is reported and skipped)
#   THREADS        thread counts (default "1 2")
#   REPS           interleaved repetitions per cell (default 3)
#   N_PROMPT       prefill length (default 128)
#   N_GEN          decoded tokens per run (default 32)
#   RAW_OUT        also keep every repetition's tokens/s there (JSON lines: who, isa, type,
#                  threads, rep, test, ts) to look at the spread behind the medians
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED_DIR:-$repo/../shared}
llama=${1:-${LLAMACPP_DIR:-$repo/../llamacpp}}
models_dir=${MODELS_DIR:-$repo/../gguf}
types=${TYPES:-"q4_0 q8_0"}
isas=${ISAS:-"avx512vnni avx2"}
threads=${THREADS:-"1 2"}
reps=${REPS:-3}
np=${N_PROMPT:-128}
ng=${N_GEN:-32}
py=/usr/bin/python3

die() { echo "compare-llamacpp: $*" >&2; exit 2; }

bench=${PIQUANT_BENCH:-}
if [[ -z $bench ]]; then
  for d in rel release dev; do
    if [[ -x $repo/build/$d/bench/piquant-bench ]]; then bench=$repo/build/$d/bench/piquant-bench; break; fi
  done
fi
[[ -n $bench && -x $bench ]] || die "piquant-bench not found: build it (cmake -S . -B build/rel -G Ninja \
-DCMAKE_BUILD_TYPE=Release -DPIQUANT_BUILD_BENCH=ON && cmake --build build/rel --target piquant-bench) \
or set PIQUANT_BENCH"
[[ -d $shared/tools/llamacpp-bench ]] || die "$shared/tools/llamacpp-bench not found (set SHARED_DIR)"

if [[ -n ${LLAMA_BENCH:-} ]]; then
  [[ -x $LLAMA_BENCH ]] || die "LLAMA_BENCH=$LLAMA_BENCH is not an executable"
elif [[ ! -d $llama/node_modules/node-llama-cpp || ! -d $llama/node_modules/@node-llama-cpp/linux-x64 ]]; then
  cat >&2 <<EOF
compare-llamacpp: no llama.cpp install in '$llama'. Set one up (about 2 minutes, 725 MB):
  mkdir -p $llama && cd $llama
  npm init -y && npm install --ignore-scripts node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1
then run this script again with LLAMACPP_DIR=$llama (or the folder as its argument). The script
makes one hard-linked copy of the package tree per ISA level (isa-icelake/, isa-haswell/), each
keeping only that level's libggml-cpu-*.so, so ggml cannot pick another level.
EOF
  exit 2
fi

# One package tree per ggml CPU variant: hard links (no extra space), other variants removed.
llama_level_dir() {
  local level=$1 dir=$llama/isa-$1
  local bins=node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
  if [[ ! -f $dir/$bins/libggml-cpu-$level.so ]]; then
    echo "setting up $dir (ggml CPU variant $level only)" >&2
    rm -rf "$dir"
    mkdir -p "$dir"
    cp -al "$llama/node_modules" "$dir/"
    cp "$llama/package.json" "$dir/" 2>/dev/null || true
    local f
    for f in "$dir/$bins"/libggml-cpu-*.so; do
      case $(basename "$f") in
        libggml-cpu-x64.so | libggml-cpu-$level.so) ;;
        *) rm -f "$f" ;;
      esac
    done
  fi
  cp -f "$shared/tools/llamacpp-bench/bench.mjs" "$dir/bench.mjs"
  echo "$dir"
}

flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has_flag() { [[ " $flags " == *" $1 "* ]]; }

mkdir -p "$models_dir"
convert=${PIQUANT_CONVERT:-$(dirname "$(dirname "$bench")")/tools/piquant-convert}
for t in $types; do
  m=$models_dir/tinyllama-$t.gguf
  [[ -f $m ]] && continue
  case $t in
    f32 | f16 | q8_0 | q4_0)
      echo "making $m (about 40 s)" >&2
      $py "$shared/tools/gguf_synth.py" "$m" --preset tinyllama --type "$t" --seed 1 >&2
      ;;
    *_k | *_k_m | q5_0 | q5_1)
      f16=$models_dir/tinyllama-f16.gguf
      if [[ ! -f $f16 ]]; then
        echo "making $f16 (about 60 s)" >&2
        $py "$shared/tools/gguf_synth.py" "$f16" --preset tinyllama --type f16 --seed 1 >&2
      fi
      if [[ -n ${LLAMA_QUANTIZE:-} ]]; then
        echo "making $m with llama.cpp's quantizer" >&2
        "$LLAMA_QUANTIZE" "$f16" "$m" "$(tr a-z A-Z <<<"$t")" >&2
      else
        [[ -x $convert ]] || die "piquant-convert not found (set PIQUANT_CONVERT) to make $m"
        echo "making $m with piquant-convert (round to nearest; set LLAMA_QUANTIZE for llama.cpp's)" >&2
        "$convert" "$f16" -o "$m" --to gguf --type "$t" --no-search >&2
      fi
      ;;
    *) die "unknown type '$t'" ;;
  esac
done

raw=$(mktemp -t compare-llamacpp.XXXXXX)
trap 'rm -f "$raw"' EXIT
start=$(date +%s)

for isa in $isas; do
  case $isa in
    avx512vnni) level=icelake; need=avx512_vnni ;;
    avx2) level=haswell; need=avx2 ;;
    *) die "unknown ISA level '$isa' (avx512vnni, avx2)" ;;
  esac
  if ! has_flag "$need"; then
    echo "{\"skip\": \"$isa\", \"why\": \"this CPU has no $need\"}" >>"$raw"
    echo "skipping $isa: this CPU has no $need" >&2
    continue
  fi
  [[ -n ${LLAMA_BENCH:-} ]] || ldir=$(llama_level_dir $level)
  for t in $types; do
    m=$models_dir/tinyllama-$t.gguf
    for th in $threads; do
      for ((r = 1; r <= reps; r++)); do
        echo "[$(($(date +%s) - start)) s] $isa $t t=$th rep $r/$reps" >&2
        # One run each, no warm-up on either side (both repack their weights at load, so the
        # first run is not a cold one); the repetitions give the medians.
        PIQUANT_ISA=$isa "$bench" -m "$m" -p "$np" -n "$ng" -t "$th" -r 1 --no-warmup -o jsonl |
          jq -c --arg isa "$isa" --arg type "$t" --argjson rep "$r" \
            '{who: "piquant", isa: $isa, type: $type, threads: .n_threads, rep: $rep,
              test: (if .n_prompt > 0 then "pp" else "tg" end), ts: .avg_ts}' >>"$raw"
        if [[ -n ${LLAMA_BENCH:-} ]]; then
          "$LLAMA_BENCH" -m "$m" -p "$np" -n "$ng" -t "$th" -r 1 --no-warmup -o jsonl 2>/dev/null |
            jq -c --arg isa "$isa" --arg type "$t" --argjson rep "$r" \
              '{who: "llama.cpp", isa: $isa, type: $type, threads: .n_threads, rep: $rep,
                test: (if .n_prompt > 0 then "pp" else "tg" end), ts: .avg_ts}' >>"$raw"
          continue
        fi
        (cd "$ldir" && node bench.mjs "$m" "$np" "$ng" "$th" 1) |
          jq -c --arg isa "$isa" --arg type "$t" --argjson rep "$r" \
            'select(.runs) | .runs[-1] as $x |
             ({who: "llama.cpp", isa: $isa, type: $type, threads: .threads, rep: $rep, test: "pp", ts: $x.pp},
              {who: "llama.cpp", isa: $isa, type: $type, threads: .threads, rep: $rep, test: "tg", ts: $x.tg})' >>"$raw"
      done
    done
  done
done

# Machine and table.
cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
simd=""
for f in avx2 fma f16c avx512f avx512bw avx512_vnni avx_vnni amx_int8; do has_flag $f && simd+="$f "; done
echo
echo "Machine: $cpu, $(nproc) CPUs visible; SIMD flags: ${simd% }"
echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ -n ${LLAMA_BENCH:-} ]]; then
  who="native build $LLAMA_BENCH (all the CPU's features)"
else
  who="node-llama-cpp 3.22.1 prebuilt ggml"
fi
echo "piquant: $bench (commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)); llama.cpp: $who"
echo "Medians of $reps interleaved repetitions; prefill = $np-token prompt, decode = $ng tokens after it"
echo "(llama.cpp) or from an empty context (piquant). Run time: $(($(date +%s) - start)) s."
echo
jq -rs --argjson reps "$reps" '
  def median: sort | if length == 0 then null
    else (.[(length - 1) / 2 | floor] + .[length / 2 | floor]) / 2 end;
  def fmt: if . == null then "-" else (. * 100 | round / 100 | tostring) end;
  (map(select(.skip)) | .[] | "Skipped \(.skip): \(.why).\n"),
  "| ISA level | weights | threads | test | piquant t/s | llama.cpp t/s | ratio |",
  "| --- | --- | ---: | --- | ---: | ---: | ---: |",
  (map(select(.who)) | group_by([.isa, .type, .threads, .test]) | sort_by(
     (.[0].isa != "avx512vnni"), .[0].type, .[0].threads, (.[0].test != "pp")) | .[] |
   (map(select(.who == "piquant") | .ts) | median) as $a |
   (map(select(.who == "llama.cpp") | .ts) | median) as $b |
   "| \(.[0].isa) | \(.[0].type) | \(.[0].threads) | \(if .[0].test == "pp" then "prefill" else "decode" end) | \($a | fmt) | \($b | fmt) | \(if $a and $b then ($a / $b * 100 | round / 100 | tostring) + "x" else "-" end) |")
' "$raw"
[ -z "${RAW_OUT:-}" ] || cp "$raw" "$RAW_OUT"
