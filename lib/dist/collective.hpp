#pragma once
// What the forward pass of a model split across processes (tensor parallelism, lib/dist/shard.*)
// needs from its transport: a sum of every rank's partial activations and a gather of every
// rank's slice of the logits. Both return the same bytes on every rank (sums are taken in rank
// order), so every rank continues from identical activations and samples the same token.
// The MPI implementation is lib/dist/mpi_collective.* (built with -DPIQUANT_MPI=ON only); this
// header and the forward pass do not depend on MPI.
#include <cstddef>
#include <cstdint>

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
  virtual const CollectiveStats& stats() const = 0;
  virtual void reset_stats() = 0;
};

}  // namespace piquant
