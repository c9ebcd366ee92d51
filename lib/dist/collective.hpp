#pragma once
// What the forward pass of a model split across processes (tensor parallelism, lib/dist/shard.*)
// needs from its transport: a sum of every rank's partial activations and a gather of every
// rank's slice of the logits. Both return the same bytes on every rank (sums are taken in rank
// order), so every rank continues from identical activations and samples the same token.
// The MPI implementation is lib/dist/mpi_collective.* (built with -DPIQUANT_MPI=ON only); this
// header and the forward pass do not depend on MPI.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace piquant {

/// Counters a Collective keeps (per rank).
struct CollectiveStats {
  uint64_t calls = 0;        ///< sums + gathers
  uint64_t bytes_sent = 0;   ///< payload bytes this rank sent (to all peers)
  double comm_seconds = 0;   ///< wall time inside sum() / gather()
};

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// x (n floats, this rank's partial sum) := the sum over all ranks, added in rank order.
  virtual void sum(float* x, size_t n) = 0;
  /// out := the concatenation of every rank's `mine` in rank order; counts[r] floats from rank r
  /// (counts[rank()] == n_mine).
  virtual void gather(const float* mine, size_t n_mine, float* out, const size_t* counts) = 0;

  // --- Overlap (docs/distributed.md, "Overlap"): exchanges started while the pass computes on.
  /// Into how many chunks the forward pass splits the outputs of Wo, W_down and the classifier,
  /// starting each chunk's exchange as soon as the chunk is computed (1: no overlap). The same
  /// on every rank (the chunks' exchanges must pair up).
  virtual int overlap_chunks() const { return 1; }
  /// Starts the sum over all ranks of the block x[i * stride + j] (i < rows, j < cols) and may
  /// return before it is done: the block stays untouched by the caller (not read, not written)
  /// until finish() returns; then it holds what sum() of the block laid out contiguously gives
  /// (the same values added in the same order). This default sums at once.
  virtual void start_sum(float* x, size_t rows, size_t cols, size_t stride) {
    if (rows <= 1 || stride == cols) {
      sum(x, rows * cols);
      return;
    }
    std::vector<float> flat(rows * cols);
    for (size_t i = 0; i < rows; ++i) std::copy(x + i * stride, x + i * stride + cols, flat.data() + i * cols);
    sum(flat.data(), flat.size());
    for (size_t i = 0; i < rows; ++i) std::copy(flat.data() + i * cols, flat.data() + (i + 1) * cols, x + i * stride);
  }
  /// Starts gather(mine, n_mine, out, counts) (mine and out untouched until finish() returns).
  virtual void start_gather(const float* mine, size_t n_mine, float* out, const size_t* counts) {
    gather(mine, n_mine, out, counts);
  }
  /// Completes every exchange started, in the order started.
  virtual void finish() {}

  virtual const CollectiveStats& stats() const = 0;
  virtual void reset_stats() = 0;
};

}  // namespace piquant
