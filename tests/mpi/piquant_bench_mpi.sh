#!/usr/bin/env bash
# piquant-bench under mpirun on loopback (tests/mpi/CMakeLists.txt, label mpi): rank 0 prints the
# usual rows with the number of ranks, the other ranks print nothing; the refusals. A few seconds.
#   piquant_bench_mpi.sh CASE MPIRUN PIQUANT_BENCH MPI_MAKE_MODEL WORKDIR
# CASE: run | refuse
set -u
case_=$1 MPIRUN=$2 BENCH=$3 MAKE=$4 DIR=$5
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=("$MPIRUN" --oversubscribe --bind-to none)
mkdir -p "$DIR"
fail() { echo "FAIL: $*"; exit 1; }
[ -f "$DIR/small.piq" ] || "$MAKE" "$DIR/small.piq" q4 1 || fail "cannot make small.piq"
[ -f "$DIR/other.piq" ] || "$MAKE" "$DIR/other.piq" q4 2 || fail "cannot make other.piq"
# run_timed SECONDS CMD...: runs CMD (stdout in $DIR/out, stderr in $DIR/err), sets rc.
run_timed() {
  local limit=$1; shift
  timeout -k 5 "$limit" "$@" >"$DIR/out" 2>"$DIR/err"
  rc=$?
  cat "$DIR/out"; grep -v '^ *$' "$DIR/err" | tail -n 8 | cut -c1-300
}
T=(-p 8 -n 4 -r 1 -t 1)
B=(-m "$DIR/small.piq" "${T[@]}")

case "$case_" in
run)
  # One process first: its JSON rows carry no n_ranks (nothing changes without mpirun) and give
  # the whole model's size, which the split run must report too.
  run_timed 30 "$BENCH" "${B[@]}" -o jsonl
  [ $rc -eq 0 ] || fail "one process: exit $rc"
  [ $(grep -c '"avg_ts"' "$DIR/out") -eq 2 ] || fail "one process: expected 2 rows (pp8, tg4)"
  grep -q n_ranks "$DIR/out" && fail "one process: n_ranks printed without mpirun"
  size1=$(sed -n 's/.*"model_size": \([0-9]*\).*/\1/p' "$DIR/out" | head -1)
  # 2 ranks, JSONL: exactly the 2 rows (rank 1 prints none), each with n_ranks 2 and the same size.
  run_timed 60 "${MPI[@]}" -np 2 "$BENCH" "${B[@]}" -o jsonl
  [ $rc -eq 0 ] || fail "2 ranks: exit $rc"
  [ $(wc -l <"$DIR/out") -eq 2 ] || fail "2 ranks: expected 2 lines on stdout (rank 0's rows only)"
  [ $(grep -c '"n_ranks": 2, .*"avg_ts": [0-9.]*[1-9]' "$DIR/out") -eq 2 ] ||
    fail "2 ranks: expected 2 rows with n_ranks 2 and a speed"
  grep -q '"n_prompt": 8, "n_gen": 0' "$DIR/out" && grep -q '"n_prompt": 0, "n_gen": 4' "$DIR/out" ||
    fail "2 ranks: the pp8 and tg4 rows are missing"
  size2=$(sed -n 's/.*"model_size": \([0-9]*\).*/\1/p' "$DIR/out" | head -1)
  [ -n "$size1" ] && [ "$size1" = "$size2" ] ||
    fail "2 ranks: model_size $size2, one process $size1 (the whole model's expected)"
  [ $(grep -c "rank [01]/2: its slice holds" "$DIR/err") -eq 2 ] || fail "2 ranks: no per-rank load lines"
  # Markdown: the ranks column; --batched (one Context of B sequences on every rank) likewise.
  run_timed 60 "${MPI[@]}" -np 2 "$BENCH" "${B[@]}"
  [ $rc -eq 0 ] || fail "2 ranks, md: exit $rc"
  head -1 "$DIR/out" | grep -q '| threads | ranks | test |' || fail "2 ranks, md: no ranks column"
  [ $(grep -c '| 1 | 2 | \(pp8\|tg4\) |' "$DIR/out") -eq 2 ] || fail "2 ranks, md: expected 2 rows with 2 ranks"
  run_timed 60 "${MPI[@]}" -np 2 "$BENCH" "${B[@]}" --batched --npl 2 -o csv
  [ $rc -eq 0 ] || fail "2 ranks, --batched: exit $rc"
  head -1 "$DIR/out" | grep -q '^model_filename,n_threads,n_ranks,pp,' || fail "2 ranks, --batched: no n_ranks column"
  [ $(wc -l <"$DIR/out") -eq 2 ] && grep -q '^"[^"]*",1,2,8,4,2,24,' "$DIR/out" ||
    fail "2 ranks, --batched: expected one row (PP 8, TG 4, B 2) with 2 ranks"
  ;;
refuse)
  # Several models, another model file on rank 1, other flags on rank 1: every rank exits
  # non-zero, one message from rank 0.
  run_timed 30 "${MPI[@]}" -np 2 "$BENCH" -m "$DIR/small.piq,$DIR/other.piq" "${T[@]}"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "several models: exit $rc"
  [ $(grep -c "piquant-bench: error: under mpirun give one model (-m FILE)" "$DIR/err") -eq 1 ] ||
    fail "several models: the message should be printed once"
  run_timed 30 "${MPI[@]}" -np 1 "$BENCH" "${B[@]}" : -np 1 "$BENCH" -m "$DIR/other.piq" "${T[@]}"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "another model file: exit $rc"
  grep -q "rank 1 has a different model file than rank 0" "$DIR/err" || fail "another model file: no message naming rank 1"
  run_timed 30 "${MPI[@]}" -np 1 "$BENCH" "${B[@]}" : -np 1 "$BENCH" "${B[@]}" -n 5
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "other flags: exit $rc"
  grep -q "rank 1 has a different piquant version or options than rank 0" "$DIR/err" || fail "other flags: no message naming rank 1"
  grep -q 'pp8\|tg4' "$DIR/out" && fail "other flags: rows printed"
  # A bad --mpi-* value: refused as piquant-run refuses it, once.
  run_timed 30 "${MPI[@]}" -np 2 "$BENCH" "${B[@]}" --mpi-act q4
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "--mpi-act q4: exit $rc"
  [ $(grep -c -- "piquant-bench: error: --mpi-act takes f32 or q8" "$DIR/err") -eq 1 ] ||
    fail "--mpi-act q4: the message should be printed once"
  ;;
*) fail "unknown case $case_" ;;
esac
echo "PASS: $case_"
