// Tensor parallelism over MPI (docs/distributed.md), measured: run under mpirun -np N.
//   mpirun -np N bench_mpi -m MODEL.piq [-n TOKENS] [-t THREADS] [--mpi-act f32|q8]
//                                       [--mpi-overlap K]
// Prints per rank, per generated token (decode, one row): wall time, time inside the exchanges
// (sums and the logits gather, including the wait for the slowest rank), compute = the rest,
// bytes sent; then tokens/s. And the exchanges alone at the sizes a token needs: ping-pong
// between ranks 0 and 1, and a sum (f32 and q8 wire) of `dim` floats and of a logits slice.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <piquant/piquant.hpp>

#include "dist/mpi_collective.hpp"
#include "dist/shard.hpp"
#include "model/model_impl.hpp"

using namespace piquant;

int main(int argc, char** argv) {
  MpiRuntime rt(&argc, &argv);
  std::string path, act = "f32";
  int n_tokens = 32, threads = 1, overlap = kDefaultOverlapChunks;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    auto val = [&]() { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (f == "-m") path = val();
    else if (f == "-n") n_tokens = std::atoi(val().c_str());
    else if (f == "-t") threads = std::atoi(val().c_str());
    else if (f == "--mpi-act") act = val();
    else if (f == "--mpi-overlap") overlap = std::atoi(val().c_str());
    else rt.abort("unknown flag " + f + " (bench_mpi -m MODEL [-n N] [-t T] [--mpi-act f32|q8] "
                  "[--mpi-overlap K])");
  }
  if (path.empty()) rt.abort("bench_mpi needs -m MODEL (tests/mpi/mpi_make_model makes one)");
  const int rank = rt.rank(), n = rt.size();
  try {
    MpiOptions mo;
    mo.wire = parse_wire_type(act);
    mo.timeout_s = 120;
    mo.overlap_chunks = overlap;
    auto comm = make_mpi_collective(mo);
    // Only this rank's slice is loaded (.piq: mapped; GGUF: read and packed slice by slice).
    const std::shared_ptr<const Model> model = load_shard(path, {}, rank, n, comm);
    const ModelConfig& c = model->config();
    Context ctx(model, ContextOptions{n_tokens + 16, 1, threads});
    const int seq = ctx.add_sequence();
    std::vector<DecodeRow> rows;
    for (int i = 0; i < 8; ++i) rows.push_back({static_cast<TokenId>(1 + 37 * i), seq, i == 7});
    const float* l = ctx.decode(rows)[0];
    TokenId next = static_cast<TokenId>(std::max_element(l, l + c.vocab_size) - l);
    MPI_Barrier(MPI_COMM_WORLD);
    comm->reset_stats();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n_tokens; ++i) {
      l = ctx.decode({{next, seq, true}})[0];
      next = static_cast<TokenId>(std::max_element(l, l + c.vocab_size) - l);
    }
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const CollectiveStats st = comm->stats();
    double mine[4] = {wall / n_tokens, st.comm_seconds / n_tokens,
                      static_cast<double>(st.bytes_sent) / n_tokens,
                      static_cast<double>(model->weight_bytes())};
    std::vector<double> all(4 * static_cast<size_t>(n));
    MPI_Gather(mine, 4, MPI_DOUBLE, all.data(), 4, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (rank == 0) {
      std::printf("bench_mpi: %s | N=%d ranks x %d thread(s) | wire %s | overlap %d chunks | %d "
                  "decode tokens\n",
                  model->describe().c_str(), n, threads, act.c_str(), overlap, n_tokens);
      std::printf("%5s %10s %10s %10s %12s %12s\n", "rank", "ms/token", "compute", "comm",
                  "sent KiB/tok", "weights MiB");
      for (int r = 0; r < n; ++r) {
        const double* v = all.data() + 4 * r;
        std::printf("%5d %10.3f %10.3f %10.3f %12.2f %12.2f\n", r, v[0] * 1e3,
                    (v[0] - v[1]) * 1e3, v[1] * 1e3, v[2] / 1024.0, v[3] / 1048576.0);
      }
      std::printf("bench_mpi: N=%d: %.2f tokens/s\n", n, 1.0 / all[0]);
    }
    if (n >= 2) {
      // (a chunk of a row: what one overlapped exchange moves at K chunks)
      const size_t sizes[] = {static_cast<size_t>(c.dim),
                              static_cast<size_t>(c.dim / std::max(overlap, 1)),
                              static_cast<size_t>(c.vocab_size / n)};
      const char* what[] = {"sum of one row's activations (dim)", "sum of one chunk (dim/K)",
                            "logits slice (vocab/N)"};
      for (int k = 0; k < 3; ++k) {
        const MpiTiming t = mpi_time_exchange(sizes[k], 200);
        if (rank == 0) {
          std::printf("bench_mpi: %-36s %7zu floats (%8.1f KiB f32): ping-pong %.1f us, sum f32 "
                      "%.1f us, sum q8 %.1f us\n",
                      what[k], sizes[k], sizes[k] * 4 / 1024.0, t.pingpong_us, t.sum_f32_us,
                      t.sum_q8_us);
        }
      }
    }
  } catch (const std::exception& e) {
    rt.abort(e.what());
  }
  return 0;
}
