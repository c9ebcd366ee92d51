#include "dist/mpi_collective.hpp"

#include <mpi.h>
#include <sched.h>
#include <unistd.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "piquant/error.hpp"

namespace piquant {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(ErrorCode::kIo, std::string("MPI ") + what + ": " + std::string(msg, size_t(len)));
}

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int g_error_fd = 2;

[[noreturn]] void abort_world(const std::string& message, int code) {
  std::fflush(stderr);
  dprintf(g_error_fd, "piquant (rank %d): %s\n", world_rank(), message.c_str());
  // A rank's stderr reaches the user through Open MPI's I/O forwarding, which MPI_Abort can
  // overtake: the job ends before the message is forwarded, and the user sees only that some rank
  // aborted. Half a second lets it through (seen on a loaded 2-core CI machine).
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

// Waits for every request, polling, at most timeout_s; `peer[i]` is the rank request i receives
// from (>= 0), or -2 - the rank it sends to, or -1 (a collective: no one peer). On timeout names
// the ranks whose messages did not arrive and aborts the job (or throws Error(kIo) with the
// message when `throw_on_timeout`).
void wait_all(std::vector<MPI_Request>& req, const std::vector<int>& peer, double timeout_s,
              const char* what, uint64_t seq, bool throw_on_timeout = false) {
  const double start = now_s();
  size_t spins = 0;
  for (;;) {
    int done = 0;
    check_mpi(MPI_Testall(static_cast<int>(req.size()), req.data(), &done, MPI_STATUSES_IGNORE),
              what);
    if (done) return;
    if (++spins < 64) continue;
    sched_yield();  // oversubscribed test runs share cores: let the peer compute
    if (spins % 256 == 0 && now_s() - start > timeout_s) {
      // The peers whose data did not arrive; else those not taking ours (a send that cannot
      // complete: the peer stopped receiving).
      std::string who, not_taking;
      for (size_t i = 0; i < req.size(); ++i) {
        int flag = 0;
        MPI_Test(&req[i], &flag, MPI_STATUS_IGNORE);
        if (flag || peer[i] == -1) continue;
        const int p = peer[i] >= 0 ? peer[i] : -2 - peer[i];
        std::string& list = peer[i] >= 0 ? who : not_taking;
        const std::string name = std::to_string(p);
        if (list.find(name) == std::string::npos) list += (list.empty() ? "" : ", ") + name;
      }
      if (who.empty()) who = not_taking;
      char buf[256];
      std::snprintf(buf, sizeof buf, "no data from rank %s for %.0f s in %s #%llu: a rank died or "
                    "stalled (or waits for one that did); stopping every rank", who.empty() ? "?" : who.c_str(), timeout_s,
                    what, static_cast<unsigned long long>(seq));
      if (throw_on_timeout) throw Error(ErrorCode::kIo, buf);
      abort_world(buf, 2);
    }
  }
}

struct Q8Block {
  float d;
  int8_t q[32];
};

class MpiCollective final : public Collective {
 public:
  explicit MpiCollective(const MpiOptions& o) : opt_(o) {
    if (o.overlap_chunks < 1 || o.overlap_chunks > kMaxOverlapChunks) {
      throw Error(ErrorCode::kInvalidArgument,
                  "--mpi-overlap: " + std::to_string(o.overlap_chunks) + " chunks is not in [1, " +
                      std::to_string(kMaxOverlapChunks) + "]");
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const CollectiveStats& stats() const override { return stats_; }
  void reset_stats() override { stats_ = CollectiveStats{}; }
  int overlap_chunks() const override { return opt_.overlap_chunks; }

  void sum(float* x, size_t n) override {
    start_sum(x, 1, n, n);
    finish();
  }
  void gather(const float* mine, size_t n_mine, float* out, const size_t* counts) override {
    start_gather(mine, n_mine, out, counts);
    finish();
  }

  // Posts the block's bytes (f32, or q8 blocks of 32 over the block read row by row) to every
  // peer and the receives of theirs; finish() adds them up.
  void start_sum(float* x, size_t rows, size_t cols, size_t stride) override {
    const double t0 = now_s();
    Op& op = next_op();
    op.is_sum = true;
    op.x = x;
    op.rows = rows;
    op.cols = cols;
    op.stride = stride;
    const size_t n = rows * cols, N = static_cast<size_t>(size_);
    const float* src = x;
    if (!op.contiguous()) {  // a column chunk of several rows: packed row by row
      op.flat.resize(n);
      for (size_t i = 0; i < rows; ++i) {
        std::copy(x + i * stride, x + i * stride + cols, op.flat.data() + i * cols);
      }
      src = op.flat.data();
    }
    if (opt_.wire == WireType::kF32) {
      const size_t b = n * sizeof(float);
      op.all.resize(N * b);
      op.bytes.assign(N, b);
      post(op, src, b, "sum");
    } else {
      const size_t nb = (n + 31) / 32, b = nb * sizeof(Q8Block);
      op.send.resize(b);
      auto* blocks = reinterpret_cast<Q8Block*>(op.send.data());
      for (size_t j = 0; j < nb; ++j) {
        const size_t i0 = j * 32, len = std::min<size_t>(32, n - i0);
        float amax = 0.0f;
        for (size_t i = 0; i < len; ++i) amax = std::max(amax, std::fabs(src[i0 + i]));
        const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        blocks[j].d = d;
        for (size_t i = 0; i < 32; ++i) {
          blocks[j].q[i] = i < len ? static_cast<int8_t>(std::lrintf(src[i0 + i] * id)) : 0;
        }
      }
      op.all.resize(N * b);
      op.bytes.assign(N, b);
      post(op, op.send.data(), b, "sum");
    }
    stats_.comm_seconds += now_s() - t0;
  }

  void start_gather(const float* mine, size_t n_mine, float* out, const size_t* counts) override {
    const double t0 = now_s();
    Op& op = next_op();
    op.is_sum = false;
    op.bytes.resize(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r) op.bytes[size_t(r)] = counts[r] * sizeof(float);
    post(op, mine, n_mine * sizeof(float), "gather", out);
    stats_.comm_seconds += now_s() - t0;
  }

  void finish() override {
    const double t0 = now_s();
    const size_t n_ops = n_ops_;
    n_ops_ = 0;  // done, or abandoned when a wait throws (piquant-server's rank 0 then ends the job)
    for (size_t k = 0; k < n_ops; ++k) {
      Op& op = *ops_[k];
      wait_all(op.req, op.peer, opt_.timeout_s, op.is_sum ? "sum" : "gather", op.seq,
               opt_.throw_on_timeout);
      if (op.is_sum) reduce(op);
    }
    stats_.comm_seconds += now_s() - t0;
  }

 private:
  // One exchange in flight (kept for reuse: its buffers stay allocated).
  struct Op {
    bool is_sum = true;
    float* x = nullptr;  // sum: the block
    size_t rows = 0, cols = 0, stride = 0;
    std::vector<float> flat;          // sum: the block packed (when not contiguous), then its sum
    std::vector<uint8_t> send, all;   // q8: our blocks; sum: every rank's bytes in rank order
    std::vector<size_t> bytes;        // bytes from each rank
    std::vector<MPI_Request> req;
    std::vector<int> peer;
    uint64_t seq = 0;
    bool contiguous() const { return rows <= 1 || stride == cols; }
  };

  Op& next_op() {
    if (n_ops_ == ops_.size()) ops_.push_back(std::make_unique<Op>());
    return *ops_[n_ops_++];
  }

  // The sum of the ranks' parts, added in rank order, into the block.
  void reduce(Op& op) {
    const size_t n = op.rows * op.cols, N = static_cast<size_t>(size_);
    float* dst = op.contiguous() ? op.x : op.flat.data();
    if (opt_.wire == WireType::kF32) {
      const float* parts = reinterpret_cast<const float*>(op.all.data());
      std::copy(parts, parts + n, dst);
      for (size_t r = 1; r < N; ++r) {
        const float* p = parts + r * n;
        for (size_t i = 0; i < n; ++i) dst[i] += p[i];
      }
    } else {
      const size_t nb = (n + 31) / 32, b = op.bytes[0];
      std::fill(dst, dst + n, 0.0f);
      for (size_t r = 0; r < N; ++r) {
        const auto* p = reinterpret_cast<const Q8Block*>(op.all.data() + r * b);
        for (size_t j = 0; j < nb; ++j) {
          const size_t i0 = j * 32, len = std::min<size_t>(32, n - i0);
          for (size_t i = 0; i < len; ++i) dst[i0 + i] += p[j].d * static_cast<float>(p[j].q[i]);
        }
      }
    }
    if (!op.contiguous()) {
      for (size_t i = 0; i < op.rows; ++i) {
        std::copy(dst + i * op.cols, dst + (i + 1) * op.cols, op.x + i * op.stride);
      }
    }
  }

  // Posts the receives of every peer's bytes (op.bytes[r] from rank r) into `all` (op.all when
  // null) in rank order, our `mine` copied in place, and the sends of `mine` to every peer.
  void post(Op& op, const void* mine, size_t n_mine, const char* what, void* all = nullptr) {
    op.seq = ++seq_;
    const int tag = static_cast<int>(op.seq % 32768);
    ++stats_.calls;
    op.req.clear();
    op.peer.clear();
    auto* out = static_cast<uint8_t*>(all != nullptr ? all : op.all.data());
    size_t off = 0;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) {
        std::memcpy(out + off, mine, n_mine);
      } else {
        op.req.emplace_back();
        op.peer.push_back(r);
        check_mpi(MPI_Irecv(out + off, static_cast<int>(op.bytes[size_t(r)]), MPI_BYTE, r, tag,
                            MPI_COMM_WORLD, &op.req.back()),
                  what);
      }
      off += op.bytes[size_t(r)];
    }
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      op.req.emplace_back();
      op.peer.push_back(-2 - r);  // a send: its peer is named only when no receive is missing
      check_mpi(MPI_Isend(mine, static_cast<int>(n_mine), MPI_BYTE, r, tag, MPI_COMM_WORLD,
                          &op.req.back()),
                what);
      stats_.bytes_sent += n_mine;
    }
  }

  MpiOptions opt_;
  int rank_ = 0, size_ = 1;
  uint64_t seq_ = 0;
  CollectiveStats stats_;
  std::vector<std::unique_ptr<Op>> ops_;  // ops_[0, n_ops_) in flight, in the order started
  size_t n_ops_ = 0;
};

}  // namespace

void set_mpi_error_fd(int fd) { g_error_fd = fd; }

const char* to_string(WireType t) { return t == WireType::kF32 ? "f32" : "q8"; }

WireType parse_wire_type(const std::string& s) {
  if (s == "f32") return WireType::kF32;
  if (s == "q8") return WireType::kQ8;
  throw Error(ErrorCode::kInvalidArgument, "--mpi-act: '" + s + "' is not f32 or q8");
}

MpiRuntime::MpiRuntime(int* argc, char*** argv, bool serialized) {
  int provided = 0;
  const int wanted = serialized ? MPI_THREAD_SERIALIZED : MPI_THREAD_FUNNELED;
  MPI_Init_thread(argc, argv, wanted, &provided);
  if (provided < wanted) {
    std::fprintf(stderr, "piquant: error: this MPI library does not support the thread level "
                         "needed (%s; it gives %d)\n",
                 serialized ? "MPI_THREAD_SERIALIZED" : "MPI_THREAD_FUNNELED", provided);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

MpiRuntime::~MpiRuntime() { MPI_Finalize(); }

void MpiRuntime::abort(const std::string& message, int code) { abort_world(message, code); }

std::string MpiRuntime::compare(const std::string& what, const std::string& value,
                                double timeout_s) {
  const size_t N = static_cast<size_t>(size_);
  std::vector<int> lens(N);
  int mine = static_cast<int>(value.size());
  std::vector<MPI_Request> req(1);
  const std::vector<int> peer{-1};
  check_mpi(MPI_Iallgather(&mine, 1, MPI_INT, lens.data(), 1, MPI_INT, MPI_COMM_WORLD, &req[0]),
            "compare");
  wait_all(req, peer, timeout_s, "the start-up check", 0);
  std::vector<int> displs(N);
  int total = 0;
  for (size_t r = 0; r < N; ++r) {
    displs[r] = total;
    total += lens[r];
  }
  std::string all(static_cast<size_t>(total), '\0');
  check_mpi(MPI_Iallgatherv(value.data(), mine, MPI_CHAR, all.data(), lens.data(), displs.data(),
                            MPI_CHAR, MPI_COMM_WORLD, &req[0]),
            "compare");
  wait_all(req, peer, timeout_s, "the start-up check", 0);
  const std::string v0 = all.substr(0, size_t(lens[0]));
  for (size_t r = 1; r < N; ++r) {
    const std::string vr = all.substr(size_t(displs[r]), size_t(lens[r]));
    if (vr != v0) {
      return "rank " + std::to_string(r) + " has a different " + what + " than rank 0: " + vr +
             " vs " + v0;
    }
  }
  return "";
}

struct MpiCommandChannel::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 1;
};

MpiCommandChannel::MpiCommandChannel() : impl_(std::make_unique<Impl>()) {
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &impl_->comm), "command channel");
  MPI_Comm_set_errhandler(impl_->comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(impl_->comm, &impl_->rank);
  MPI_Comm_size(impl_->comm, &impl_->size);
}

MpiCommandChannel::~MpiCommandChannel() {
  if (impl_->comm != MPI_COMM_NULL) MPI_Comm_free(&impl_->comm);
}

void MpiCommandChannel::send(const std::vector<int32_t>& msg, double timeout_s) {
  std::vector<MPI_Request> req;
  std::vector<int> peer;
  for (int r = 1; r < impl_->size; ++r) {
    req.emplace_back();
    peer.push_back(-2 - r);
    check_mpi(MPI_Isend(msg.data(), static_cast<int>(msg.size()), MPI_INT32_T, r, 1, impl_->comm,
                        &req.back()),
              "command");
  }
  static uint64_t seq = 0;
  wait_all(req, peer, timeout_s, "command", ++seq, true);
}

bool MpiCommandChannel::receive(std::vector<int32_t>* msg,
                                const std::function<bool()>& keep_waiting) {
  const double start = now_s();
  double last_check = start;
  for (size_t spins = 0;; ++spins) {
    int flag = 0;
    MPI_Status st;
    check_mpi(MPI_Iprobe(0, 1, impl_->comm, &flag, &st), "command");
    if (flag) {
      int count = 0;
      MPI_Get_count(&st, MPI_INT32_T, &count);
      msg->resize(static_cast<size_t>(count));
      check_mpi(MPI_Recv(msg->data(), count, MPI_INT32_T, 0, 1, impl_->comm, MPI_STATUS_IGNORE),
                "command");
      return true;
    }
    // Busy for the first ~50 ms (the next command of a running generation comes at once), then
    // 1 ms sleeps: an idle server's ranks wait without using a core.
    const double t = now_s();
    if (t - start < 0.05) {
      if (spins % 64 == 63) sched_yield();
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (t - last_check > 0.01) {
      last_check = t;
      if (!keep_waiting()) return false;
    }
  }
}

std::shared_ptr<Collective> make_mpi_collective(const MpiOptions& options) {
  return std::make_shared<MpiCollective>(options);
}

MpiTiming mpi_time_exchange(size_t floats, int reps) {
  MpiTiming t;
  t.floats = floats;
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::vector<float> buf(floats, 1.0f);
  std::vector<double> times;
  auto median = [&]() {
    std::sort(times.begin(), times.end());
    const double m = times.empty() ? 0 : times[times.size() / 2];
    times.clear();
    return m * 1e6;
  };
  MPI_Barrier(MPI_COMM_WORLD);
  if (size >= 2 && rank < 2) {
    for (int i = 0; i < reps; ++i) {
      const double t0 = now_s();
      if (rank == 0) {
        MPI_Send(buf.data(), int(floats), MPI_FLOAT, 1, 7, MPI_COMM_WORLD);
        MPI_Recv(buf.data(), int(floats), MPI_FLOAT, 1, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      } else {
        MPI_Recv(buf.data(), int(floats), MPI_FLOAT, 0, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(buf.data(), int(floats), MPI_FLOAT, 0, 7, MPI_COMM_WORLD);
      }
      times.push_back(now_s() - t0);
    }
    t.pingpong_us = median();
  }
  MPI_Barrier(MPI_COMM_WORLD);
  for (WireType w : {WireType::kF32, WireType::kQ8}) {
    MpiOptions o;
    o.wire = w;
    auto c = make_mpi_collective(o);
    for (int i = 0; i < reps; ++i) {
      std::fill(buf.begin(), buf.end(), 1.0f);
      const double t0 = now_s();
      c->sum(buf.data(), floats);
      times.push_back(now_s() - t0);
    }
    (w == WireType::kF32 ? t.sum_f32_us : t.sum_q8_us) = median();
    MPI_Barrier(MPI_COMM_WORLD);
  }
  return t;
}

}  // namespace piquant
