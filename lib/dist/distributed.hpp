#pragma once
// The programs' side of a run under mpirun (docs/distributed.md), shared by piquant-run,
// piquant-server and piquant-bench (target piquant_dist, not part of libpiquant: it prints and
// exits): one model split across the ranks, every rank running the same generation on identical
// logits (so every rank samples the same token and no token is sent), rank 0 printing. With
// -DPIQUANT_MPI=ON; otherwise active() is false and a run under mpirun with several ranks is
// refused.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include <piquant/piquant.hpp>

namespace piquant::cli {
class ArgReader;
}

/// What every rank of an mpirun must agree on: `program`, the version and the flags, except the
/// model's path (compared by content) and, unless `threads_agree` (piquant-bench: its thread
/// counts make its list of tests), the thread count (machines may differ).
std::string dist_options_key(const char* program, int argc, char** argv, bool threads_agree = false);

struct DistArgs {
  std::string act = "f32";  // --mpi-act (q8: 3.6x fewer bytes, 1.2-1.6e-3 relative in the logits)
  int overlap = 0;          // --mpi-overlap (chunks; 0: the default, MpiOptions::overlap_chunks)
  double timeout_s = 10.0;  // --mpi-timeout
  bool given = false;       // any --mpi-* flag given
  bool throw_on_timeout = false;  // a peer's timeout throws (piquant-server's rank 0) instead of aborting
};

/// Reads --mpi-act / --mpi-overlap / --mpi-timeout (flag `f`, its value from `args`) into `d`;
/// false for any other flag. A bad value ends the program with a message saying what is accepted
/// (piquant-run and piquant-bench, the same words).
bool read_dist_flag(piquant::cli::ArgReader& args, const std::string& f, DistArgs& d,
                    const char* program);

class Distributed {
 public:
  /// Starts MPI when the process runs under mpirun (Open MPI / PMIx environment), else nothing.
  /// `program` prefixes the messages; `serialized`: MPI calls come from one thread at a time,
  /// not only the main one (piquant-server's engine thread).
  Distributed(int* argc, char*** argv, const char* program = "piquant-run",
              bool serialized = false);
  ~Distributed();
  bool active() const { return size_ > 1; }
  int rank() const { return rank_; }
  int size() const { return size_; }

  /// Every rank: checks the ranks agree on the model file and on `options` (version + flags),
  /// then loads `path` (empty: `demo`), keeps this rank's slice and returns it. Ends every rank
  /// with one clear error when they differ or the split cannot work.
  std::shared_ptr<const piquant::Model> load(const std::string& path,
                                             const piquant::LoadOptions& lo,
                                             const std::string& options, const DistArgs& d,
                                             std::shared_ptr<const piquant::Model> demo);
  /// After load(): the weight bytes of the whole model (what one process would hold).
  size_t whole_weight_bytes() const { return whole_bytes_; }
  /// Rank 0's seed on every rank.
  uint64_t same_seed(uint64_t seed);
  /// One line per rank (rank 0 prints them all): compute and communication per token.
  void report(const piquant::Model& model, double gen_seconds, size_t n_tokens);
  /// Ends every rank: rank 0 prints `message` (others stay silent), all exit with `code`.
  [[noreturn]] void fail_all(const std::string& message, int code = 1);
  /// This rank alone failed: prints and aborts the job.
  [[noreturn]] void abort(const std::string& message);
  /// Where this rank's own messages go (rank 0: stderr; the others: their stderr, which is
  /// otherwise silenced).
  std::FILE* err() const { return err_; }

 private:
  int rank_ = 0, size_ = 1;
  size_t whole_bytes_ = 0;
  std::FILE* err_ = stderr;  // this rank's own messages (rank 0: stderr)
  std::string program_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};
