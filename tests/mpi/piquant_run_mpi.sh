#!/usr/bin/env bash
# piquant-run under mpirun on loopback (tests/mpi/CMakeLists.txt, label mpi): the resident weight
# memory per rank, the refusals and the fault paths. Every case must end within 30 s.
#   piquant_run_mpi.sh CASE MPIRUN PIQUANT_RUN MPI_MAKE_MODEL WORKDIR
# CASE: memory | split | mismatch | kill | stall | flags
set -u
case_=$1 MPIRUN=$2 RUN=$3 MAKE=$4 DIR=$5
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=("$MPIRUN" --oversubscribe --bind-to none)
mkdir -p "$DIR"
fail() { echo "FAIL: $*"; exit 1; }
model() {  # model NAME SEED [big]: a q4 .piq (made once)
  [ -f "$DIR/$1" ] || "$MAKE" "$DIR/$1" q4 "$2" ${3:-} || fail "cannot make $1"
}
# run_timed SECONDS CMD...: runs CMD (output in $DIR/out), sets rc and secs.
run_timed() {
  local limit=$1; shift
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" >"$DIR/out" 2>&1
  rc=$? secs=$((SECONDS - t0))
  cat "$DIR/out" | grep -v '^ *$' | tail -n 25
}

case "$case_" in
memory)
  # Each rank loads only its slice: a .piq file mapped slice by slice, a GGUF file through the
  # loader's slicing hook (only the slice's rows / columns are read and packed). Per rank, the
  # weights it holds after generating (its copies + the file pages mapped into it, from
  # /proc/self/smaps) within 1/N + 10 % of the whole model's weights (what one process holds),
  # and the growth of its peak resident set during the load within that + 8 MiB (what is not
  # weights: the tokenizer, the tensor in flight; loading the whole model first, as GGUF ranks
  # did before, peaks at 1.0 of it); and greedy text identical to one process's (the GGUF files).
  model big.piq 1 big
  for t in q4 q4_k; do
    [ -f "$DIR/big_$t.gguf" ] || "$MAKE" "$DIR/big_$t.gguf" $t 1 big || fail "cannot make big_$t.gguf"
  done
  for spec in big.piq:4 big_q4.gguf:2 big_q4.gguf:4 big_q4_k.gguf:2; do
    m=${spec%%:*} n=${spec##*:}
    args=(-m "$DIR/$m" -p "Once upon" -n 12 --temp 0 -t 1 -c 64)
    if [ "$n" = 2 ] && [ "${m%.gguf}" != "$m" ]; then  # one process, for the text
      "$RUN" "${args[@]}" >"$DIR/text1" 2>"$DIR/err1" || { cat "$DIR/err1"; fail "$m: one process failed"; }
    fi
    timeout -k 5 60 "${MPI[@]}" -np $n "$RUN" "${args[@]}" >"$DIR/textn" 2>"$DIR/out"
    rc=$?
    grep -v '^ *$' "$DIR/out" | grep "rank\|error" | cut -c1-400
    [ $rc -eq 0 ] || fail "$m N=$n: exit $rc"
    whole=$(sed -n 's/.*whole model \([0-9.]*\) MiB.*/\1/p' "$DIR/out" | head -1)
    [ -n "$whole" ] || fail "$m N=$n: no whole-model figure"
    held=$(sed -n 's/.*weights held \([0-9.]*\) MiB.*/\1/p' "$DIR/out")
    peak=$(sed -n 's/.*peak during the load: +\([0-9.]*\) MiB.*/\1/p' "$DIR/out")
    [ $(echo "$held" | wc -l) -eq $n ] || fail "$m N=$n: expected $n 'weights held' lines"
    [ $(echo "$peak" | wc -l) -eq $n ] || fail "$m N=$n: expected $n 'peak during the load' figures"
    for h in $held; do
      awk -v h="$h" -v w="$whole" -v n=$n 'BEGIN { exit !(h <= w * (1.0 / n + 0.10) && h >= w / n * 0.9) }' ||
        fail "$m N=$n: a rank holds $h MiB of weights; the whole model has $w MiB (limit 1/$n + 10 %)"
      echo "$m N=$n: rank holds $h MiB of $whole MiB ($(awk -v h=$h -v w=$whole 'BEGIN{printf "%.3f", h/w}') of the whole)"
    done
    for p in $peak; do
      awk -v p="$p" -v w="$whole" -v n=$n 'BEGIN { exit !(p <= w * (1.0 / n + 0.10) + 8) }' ||
        fail "$m N=$n: a rank's resident set grew by $p MiB at its peak during the load; the whole model has $whole MiB (limit 1/$n + 10 % + 8 MiB)"
      echo "$m N=$n: load peak +$p MiB ($(awk -v p=$p -v w=$whole 'BEGIN{printf "%.3f", p/w}') of the whole)"
    done
    if [ "${m%.gguf}" != "$m" ]; then
      [ -s "$DIR/text1" ] && cmp -s "$DIR/text1" "$DIR/textn" ||
        fail "$m N=$n: text differs from one process's: '$(cat "$DIR/text1")' vs '$(cat "$DIR/textn")'"
      echo "$m N=$n: greedy text as one process's: $(cat "$DIR/textn")"
    fi
  done
  ;;
split)
  # 5 ranks cannot split 12 KV heads: one clear error naming the Ns that can.
  model small.piq 1
  run_timed 30 "${MPI[@]}" -np 5 "$RUN" -m "$DIR/small.piq" -p Once -n 4 -t 1
  [ $rc -ne 0 ] || fail "5 ranks were not refused"
  grep -q "5 ranks cannot split this model (12 KV heads are not divisible by 5); numbers of ranks that can: 1, 2, 3, 4, 6, 12" "$DIR/out" || fail "no message naming the Ns that work"
  [ $(grep -c "cannot split" "$DIR/out") -eq 1 ] || fail "the message should be printed once"
  ;;
mismatch)
  # Rank 1 runs another model file: every rank exits non-zero with one message naming it.
  model small.piq 1
  model other.piq 2
  run_timed 30 "${MPI[@]}" -np 1 "$RUN" -m "$DIR/small.piq" -p Once -n 4 -t 1 : \
                           -np 1 "$RUN" -m "$DIR/other.piq" -p Once -n 4 -t 1
  [ $rc -ne 0 ] || fail "different model files were not refused (exit 0)"
  [ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "hung (killed by timeout)"
  grep -q "rank 1 has a different model file than rank 0" "$DIR/out" || fail "no message naming rank 1"
  # The same with different options (the sampling temperature).
  run_timed 30 "${MPI[@]}" -np 1 "$RUN" -m "$DIR/small.piq" -p Once -n 4 -t 1 : \
                           -np 1 "$RUN" -m "$DIR/small.piq" -p Once -n 4 -t 1 --temp 0.5
  [ $rc -ne 0 ] || fail "different options were not refused"
  grep -q "rank 1 has a different piquant version or options than rank 0" "$DIR/out" || fail "no message for the options"
  ;;
kill|stall)
  # A rank killed (SIGKILL) or stalled (SIGSTOP) mid-generation: the others exit non-zero with a
  # message naming rank 1 within 30 s, never a hang.
  model small.piq 1
  t0=$SECONDS
  "${MPI[@]}" -np 3 "$RUN" -m "$DIR/small.piq" -p Once -n 4000 -c 4096 --ignore-eos -t 1 \
      --mpi-timeout 5 >"$DIR/out" 2>&1 &
  mp=$!
  # Rank 1's process: a child of mpirun whose environment says OMPI_COMM_WORLD_RANK=1.
  victim=
  for _ in $(seq 100); do
    sleep 0.1
    for p in $(pgrep -P $mp); do
      if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then victim=$p; fi
    done
    [ -n "$victim" ] && grep -q "generated\|^Once" "$DIR/out" 2>/dev/null && break
  done
  [ -n "$victim" ] || { kill $mp; fail "rank 1 not found"; }
  sleep 1  # mid-generation
  if [ "$case_" = kill ]; then kill -KILL $victim; else kill -STOP $victim; fi
  t1=$SECONDS
  for _ in $(seq 400); do kill -0 $mp 2>/dev/null || break; sleep 0.1; done  # 40 s at most
  kill -KILL $mp 2>/dev/null
  wait $mp; rc=$?
  secs=$((SECONDS - t1))
  kill -KILL $victim 2>/dev/null
  grep -v '^ *$' "$DIR/out" | tail -n 12 | cut -c1-300
  echo "exit $rc, $secs s after the $case_"
  [ $rc -ne 0 ] || fail "exit 0 after rank 1 was ${case_}ed"
  [ $secs -le 30 ] || fail "took $secs s (limit 30)"
  if [ "$case_" = kill ]; then
    grep -q "rank 1" "$DIR/out" || fail "no message naming rank 1"
  else
    grep -q "no data from rank 1 for 5 s" "$DIR/out" || fail "no message naming rank 1"
  fi
  ;;
flags)
  # Bad --mpi-act / --mpi-timeout / --mpi-overlap values: refused when the flags are read (before any model is
  # loaded), with one message saying what is accepted; under mpirun and in one process.
  model small.piq 1
  for bad in "--mpi-act q4" "--mpi-act F32" "--mpi-timeout 0" "--mpi-timeout -1" \
             "--mpi-timeout inf" "--mpi-timeout nan" "--mpi-timeout 5s" "--mpi-timeout 1e9" \
             "--mpi-overlap 0" "--mpi-overlap 17" "--mpi-overlap 2x"; do
    flag=${bad%% *} val=${bad#* }
    case $flag in
      --mpi-act) want="--mpi-act takes f32 or q8 (activations on the wire), not '$val'" ;;
      --mpi-overlap) want="--mpi-overlap takes a number of chunks in [1, 16], not '$val'" ;;
      *) want="--mpi-timeout takes a number of seconds in (0, 86400], not '$val'" ;;
    esac
    run_timed 20 "$RUN" -m "$DIR/small.piq" -p Once -n 4 -t 1 $flag "$val"
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "one process, $bad: exit $rc"
    grep -qF -- "$want" "$DIR/out" || fail "one process, $bad: no message '$want'"
  done
  for bad in "--mpi-act q4" "--mpi-timeout inf"; do
    flag=${bad%% *} val=${bad#* }
    run_timed 30 "${MPI[@]}" -np 2 "$RUN" -m "$DIR/small.piq" -p Once -n 4 -t 1 $flag "$val"
    [ $rc -ne 0 ] || fail "mpirun, $bad: exit 0"
    [ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "mpirun, $bad: hung (killed by timeout)"
    [ $(grep -c -- "piquant-run: error: $flag takes" "$DIR/out") -eq 1 ] ||
      fail "mpirun, $bad: the message should be printed once"
  done
  ;;
*) fail "unknown case $case_" ;;
esac
echo "PASS: $case_"
