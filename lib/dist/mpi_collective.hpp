#pragma once
// The Collective of lib/dist/collective.hpp over Open MPI (any MPI-3 library), and the start-up
// checks of a run split across ranks. Built only with -DPIQUANT_MPI=ON (target piquant_mpi);
// the header names no MPI type, so programs include it without MPI's headers.
//
// Every exchange is point to point between all pairs (for 2-4 ranks the same messages as an
// all-gather) with non-blocking sends and receives polled against a deadline: a peer that died
// or stalled is named ("no data from rank 2 for 10 s") and the job is aborted, never a hang.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dist/collective.hpp"

namespace piquant {

/// How activations travel: f32, or int8 blocks of 32 values with an f32 scale (36 bytes per 32
/// values instead of 128).
enum class WireType { kF32, kQ8 };
const char* to_string(WireType t);
/// "f32" / "q8"; throws Error(kInvalidArgument) otherwise.
WireType parse_wire_type(const std::string& s);

constexpr int kDefaultOverlapChunks = 2, kMaxOverlapChunks = 16;

struct MpiOptions {
  WireType wire = WireType::kF32;  ///< q8 measured 1.2-1.6e-3 relative in the logits: not default
  /// Chunks of Wo, W_down and the classifier whose exchanges overlap the next chunk's compute
  /// (Collective::overlap_chunks; 1: no overlap). kMaxOverlapChunks at most.
  int overlap_chunks = kDefaultOverlapChunks;
  double timeout_s = 10.0;  ///< longest wait for a peer in a sum or gather before aborting
  /// On a timeout throw Error(kIo) with the message instead of aborting the job (piquant-server's
  /// rank 0: it answers the requests in flight with the error first, then ends the job).
  bool throw_on_timeout = false;
};

/// MPI_Init on construction (threads: funneled, the pool's workers never call MPI; or serialized:
/// one thread at a time, not always the main one, as piquant-server's engine thread), MPI_Finalize
/// on destruction. One per process, in main().
class MpiRuntime {
 public:
  MpiRuntime(int* argc, char*** argv, bool serialized = false);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;
  int rank() const { return rank_; }
  int size() const { return size_; }

  /// Every rank passes its value of `what` (a model fingerprint, the version and options). When
  /// all are equal, returns "". Else returns, on every rank, one message naming the first rank
  /// that differs from rank 0 and both values. Waits at most `timeout_s` for the others.
  std::string compare(const std::string& what, const std::string& value, double timeout_s = 600);
  /// Prints "prefix (rank r): message" to stderr and ends every rank with exit code `code`.
  [[noreturn]] void abort(const std::string& message, int code = 1);

 private:
  int rank_ = 0, size_ = 1;
};

/// Where the ranks' own error messages go (a timeout naming a peer, abort()): a file descriptor,
/// default 2. piquant-run gives ranks other than 0 a copy of their stderr here and silences the
/// rest of their output.
void set_mpi_error_fd(int fd);

/// Messages from rank 0 to every other rank, on a communicator of their own (a duplicate of the
/// world's, so they never meet a Collective's): how piquant-server's rank 0 tells the others
/// which model call to replay. Constructing it is collective (every rank, in the same order).
class MpiCommandChannel {
 public:
  MpiCommandChannel();
  ~MpiCommandChannel();
  MpiCommandChannel(const MpiCommandChannel&) = delete;
  MpiCommandChannel& operator=(const MpiCommandChannel&) = delete;
  /// Rank 0: sends `msg` to every other rank, in order; throws Error(kIo) naming the ranks that
  /// did not take it within timeout_s.
  void send(const std::vector<int32_t>& msg, double timeout_s);
  /// Other ranks: waits for rank 0's next message (no deadline: an idle server sends nothing),
  /// calling `keep_waiting` every ~10 ms while none is there; false from it ends the wait and
  /// receive returns false. Sleeps between polls once idle, so a waiting rank uses no core.
  bool receive(std::vector<int32_t>* msg, const std::function<bool()>& keep_waiting);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The world communicator as a Collective.
std::shared_ptr<Collective> make_mpi_collective(const MpiOptions& options);

/// Measured exchange times on the world communicator (for piquant-bench --mpi-pingpong): the
/// median round trip between ranks 0 and 1 and the median time of a sum() of n floats.
struct MpiTiming {
  size_t floats = 0;
  double pingpong_us = 0;  ///< one round trip of floats*4 bytes, rank 0 <-> 1
  double sum_f32_us = 0;   ///< Collective::sum of n floats, f32 wire
  double sum_q8_us = 0;    ///< the same with the q8 wire
};
MpiTiming mpi_time_exchange(size_t floats, int reps);

}  // namespace piquant
