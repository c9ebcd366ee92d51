#include "dist/distributed.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "util/cli.hpp"

#ifdef PIQUANT_MPI
#include <mpi.h>

#include "dist/mpi_collective.hpp"
#include "dist/shard.hpp"
#include "model/model_impl.hpp"
#endif

namespace {
bool under_mpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  return false;
}
}  // namespace

bool read_dist_flag(piquant::cli::ArgReader& args, const std::string& f, DistArgs& d,
                    const char* program) {
  if (f == "--mpi-act") {
    d.act = args.value();
    if (d.act != "f32" && d.act != "q8") {
      piquant::cli::die(program, "--mpi-act takes f32 or q8 (activations on the wire), not '" +
                                     d.act + "'");
    }
  } else if (f == "--mpi-overlap") {
    const std::string v = args.value();
    char* end = nullptr;
    const long k = std::strtol(v.c_str(), &end, 10);
    if (end == v.c_str() || *end != '\0' || k < 1 || k > 16) {
      piquant::cli::die(program,
                        "--mpi-overlap takes a number of chunks in [1, 16], not '" + v + "'");
    }
    d.overlap = static_cast<int>(k);
  } else if (f == "--mpi-timeout") {
    const std::string v = args.value();
    char* end = nullptr;
    d.timeout_s = std::strtod(v.c_str(), &end);
    // Finite and at most a day: an endless wait for a dead peer would be a hang.
    if (end == v.c_str() || *end != '\0' || !(d.timeout_s > 0) || !(d.timeout_s <= 86400)) {
      piquant::cli::die(program,
                        "--mpi-timeout takes a number of seconds in (0, 86400], not '" + v + "'");
    }
  } else {
    return false;
  }
  d.given = true;
  return true;
}

#ifdef PIQUANT_MPI

struct Distributed::Impl {
  std::unique_ptr<piquant::MpiRuntime> rt;
  std::shared_ptr<piquant::Collective> comm;
};

Distributed::Distributed(int* argc, char*** argv, const char* program, bool serialized)
    : program_(program), impl_(std::make_unique<Impl>()) {
  if (!under_mpirun()) return;
  impl_->rt = std::make_unique<piquant::MpiRuntime>(argc, argv, serialized);
  rank_ = impl_->rt->rank();
  size_ = impl_->rt->size();
  if (rank_ != 0) {
    // Rank 0 prints the text and the run's messages; the others keep their own stderr for what
    // concerns them alone (their slice, their failures: piquant::set_mpi_error_fd).
    const int err = dup(2);
    if (err >= 0) {
      piquant::set_mpi_error_fd(err);
      err_ = fdopen(err, "w");
    }
    if (std::freopen("/dev/null", "w", stdout) == nullptr ||
        std::freopen("/dev/null", "w", stderr) == nullptr) {
      piquant::set_mpi_error_fd(2);
      err_ = stderr;
    }
  }
}

Distributed::~Distributed() = default;

void Distributed::fail_all(const std::string& message, int code) {
  if (rank_ == 0) std::fprintf(stderr, "%s: error: %s\n", program_.c_str(), message.c_str());
  std::fflush(stderr);
  impl_->rt.reset();  // MPI_Finalize: every rank reaches this point with the same verdict
  std::exit(code);
}

void Distributed::abort(const std::string& message) { impl_->rt->abort(message, 1); }

std::shared_ptr<const piquant::Model> Distributed::load(
    const std::string& path, const piquant::LoadOptions& lo, const std::string& options,
    const DistArgs& d, std::shared_ptr<const piquant::Model> demo) {
  std::string fp;
  try {
    fp = path.empty() ? "the demo model" : piquant::file_fingerprint(path);
  } catch (const piquant::Error& e) {
    fp = std::string("no model: ") + e.what();
  }
  std::string diff = impl_->rt->compare("model file", fp);
  if (diff.empty()) diff = impl_->rt->compare("piquant version or options", options);
  if (diff.empty() && fp.rfind("no model: ", 0) == 0) diff = fp.substr(10);
  if (!diff.empty()) fail_all(diff);
  piquant::MpiOptions mo;
  try {
    mo.wire = piquant::parse_wire_type(d.act);
  } catch (const piquant::Error& e) {
    fail_all(e.what());
  }
  mo.timeout_s = d.timeout_s;
  if (d.overlap > 0) mo.overlap_chunks = d.overlap;
  mo.throw_on_timeout = d.throw_on_timeout;
  // Each rank loads only its slice (lib/dist: a GGUF file through the loader's slicing hook, a
  // .piq file mapped slice by slice): the peak resident set during the load says so.
  const bool peak_known = piquant::reset_peak_resident();
  const size_t rss0 = piquant::resident_bytes();
  size_t whole = 0;
  std::shared_ptr<const piquant::Model> mine;
  impl_->comm = piquant::make_mpi_collective(mo);
  try {
    mine = demo ? piquant::shard_model(demo, rank_, size_, impl_->comm)
                : piquant::load_shard(path, lo, rank_, size_, impl_->comm, &whole);
    if (demo) whole = demo->weight_bytes();
  } catch (const piquant::Error& e) {
    // A split that cannot work: the same verdict on every rank (same file, same N). Anything
    // else after the files matched: this rank alone failed (memory, I/O).
    if (e.code() == piquant::ErrorCode::kInvalidArgument) fail_all(e.what());
    abort(e.what());
  }
  whole_bytes_ = whole;
  const size_t rss1 = piquant::resident_bytes();
  const size_t peak = peak_known ? piquant::peak_resident_bytes() : 0;
  const piquant::ShardInfo& s = *mine->impl().shard;
  char peak_buf[32] = "unknown";
  if (peak_known) {
    std::snprintf(peak_buf, sizeof peak_buf, "%.2f MiB",
                  (peak > rss0 ? peak - rss0 : 0) / 1048576.0);
  }
  const std::string peak_text = peak_buf;
  char line[640];
  std::snprintf(line, sizeof line,
                "%s: rank %d/%d: its slice holds %.2f MiB of weights (whole model "
                "%.2f MiB, 1/%d = %.2f MiB) | heads %d kv %d ffn %d vocab [%d, %d) | process "
                "resident grew %.2f MiB (peak during the load: +%s) | activations on the "
                "wire: %s\n",
                program_.c_str(), rank_, size_, mine->weight_bytes() / 1048576.0, whole / 1048576.0, size_,
                whole / 1048576.0 / size_, s.n_heads, s.n_kv_heads, s.hidden_dim,
                s.vocab0, s.vocab1, (rss1 > rss0 ? rss1 - rss0 : 0) / 1048576.0,
                peak_text.c_str(), piquant::to_string(mo.wire));
  // Rank order on stderr: each rank prints after the one before it (a barrier per rank).
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) {
      std::fputs(line, err_);
      std::fflush(err_);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  return mine;
}

uint64_t Distributed::same_seed(uint64_t seed) {
  MPI_Bcast(&seed, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  return seed;
}

void Distributed::report(const piquant::Model& model, double gen_seconds, size_t n_tokens) {
  const piquant::CollectiveStats& st = impl_->comm->stats();
  const double n = static_cast<double>(std::max<size_t>(n_tokens, 1));
  // The weight memory this rank holds after running: its copies plus the pages of the file it
  // has mapped in (every page of its slice has been read by now).
  const piquant::ShardInfo& s = *model.impl().shard;
  const double held =
      static_cast<double>(s.copied_bytes + piquant::mapped_resident_bytes(s.file));
  double mine[4] = {st.comm_seconds, static_cast<double>(st.bytes_sent), gen_seconds, held};
  std::vector<double> all(4 * static_cast<size_t>(size_));
  MPI_Gather(mine, 4, MPI_DOUBLE, all.data(), 4, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  if (rank_ != 0) return;
  for (int r = 0; r < size_; ++r) {
    const double* v = all.data() + 4 * r;
    std::fprintf(stderr,
                 "%s: rank %d/%d: %.3f ms in communication and %.1f KiB sent per "
                 "generated token (generation %.3f s) | weights held %.2f MiB (copied + file "
                 "pages mapped in)\n",
                 program_.c_str(), r, size_, v[0] * 1e3 / n, v[1] / 1024.0 / n, v[2],
                 v[3] / 1048576.0);
  }
}

#else  // !PIQUANT_MPI

struct Distributed::Impl {};

Distributed::Distributed(int*, char***, const char* program, bool) : program_(program) {
  if (under_mpirun() && std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr &&
      std::atoi(std::getenv("OMPI_COMM_WORLD_SIZE")) > 1) {
    piquant::cli::die(program_.c_str(),
                      "started by mpirun with several ranks, but this " + program_ +
                      " was built without MPI: rebuild with -DPIQUANT_MPI=ON "
                      "(docs/distributed.md)");
  }
}
Distributed::~Distributed() = default;
void Distributed::fail_all(const std::string& message, int) {
  piquant::cli::die(program_.c_str(), message);
}
void Distributed::abort(const std::string& message) {
  piquant::cli::die(program_.c_str(), message);
}
std::shared_ptr<const piquant::Model> Distributed::load(const std::string&,
                                                        const piquant::LoadOptions&,
                                                        const std::string&, const DistArgs&,
                                                        std::shared_ptr<const piquant::Model>) {
  return nullptr;
}
uint64_t Distributed::same_seed(uint64_t seed) { return seed; }
void Distributed::report(const piquant::Model&, double, size_t) {}

#endif

std::string dist_options_key(const char* program, int argc, char** argv, bool threads_agree) {
  std::string key = std::string(program) + " " + piquant::version();
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    const bool skip = f == "-m" || f == "--model" || (!threads_agree && (f == "-t" || f == "--threads"));
    if (skip && i + 1 < argc) {
      ++i;
      continue;
    }
    if (f.rfind("--model=", 0) == 0 || (!threads_agree && f.rfind("--threads=", 0) == 0)) continue;
    key += " " + f;
  }
  return key;
}
