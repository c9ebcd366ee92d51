#include "mpi_backend.hpp"

#include <chrono>
#include <cstring>
#include <mutex>

#include "dist/mpi_collective.hpp"

namespace piquant::server {

namespace {

// The commands, as int32 words: the op, then its arguments.
enum Op : int32_t {
  kAddSequence = 1,  // id (rank 0's result)
  kFork = 2,         // src, n_pos, id
  kRemove = 3,       // seq
  kRewind = 4,       // seq, position
  kAdapters = 5,     // seq, n, n x (adapter index, scale bits)
  kDecode = 6,       // n, n x (token, seq, logits, pos)
  kQuit = 7,
};

int32_t float_bits(float f) {
  int32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}
float bits_float(int32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

class MpiBackend final : public ModelBackend {
 public:
  MpiBackend(std::shared_ptr<const Model> slice, const ContextOptions& options,
             std::shared_ptr<MpiCommandChannel> channel,
             std::vector<std::shared_ptr<const LoraAdapter>> adapters, double timeout_s,
             std::function<void(const std::string&)> on_failure)
      : ctx_(std::move(slice), options),
        channel_(std::move(channel)),
        adapters_(std::move(adapters)),
        timeout_s_(timeout_s),
        on_failure_(std::move(on_failure)) {}

  int n_ctx() const override { return ctx_.n_ctx(); }

  // The KV operations run here first (they may throw: nothing was changed, nothing is sent),
  // then go to the others with the result, which they check.
  int add_sequence() override {
    check();
    const int id = ctx_.add_sequence();
    send({kAddSequence, id});
    return id;
  }
  int fork(int src, int n_pos) override {
    check();
    const int id = ctx_.fork(src, n_pos);
    send({kFork, src, n_pos, id});
    check();
    return id;
  }
  void remove_sequence(int seq) override {
    if (!failed_.empty()) return;
    ctx_.remove_sequence(seq);
    send({kRemove, seq});
  }
  void rewind(int seq, int position) override {
    if (!failed_.empty()) return;
    ctx_.rewind(seq, position);
    send({kRewind, seq, position});
  }
  void set_adapters(int seq, std::vector<AdapterChoice> adapters) override {
    if (!failed_.empty()) return;
    std::vector<int32_t> msg{kAdapters, seq, static_cast<int32_t>(adapters.size())};
    for (const AdapterChoice& a : adapters) {
      int32_t index = -1;
      for (size_t i = 0; i < adapters_.size(); ++i) {
        if (adapters_[i] == a.adapter) index = static_cast<int32_t>(i);
      }
      if (index < 0) {
        throw Error(ErrorCode::kInternal, "an adapter that was not loaded at start (under mpirun "
                                          "every rank loads the --lora adapters in order)");
      }
      msg.push_back(index);
      msg.push_back(float_bits(a.scale));
    }
    ctx_.set_adapters(seq, std::move(adapters));
    send(std::move(msg));
  }
  // A decode goes to the others first: their forward passes meet this one's in its sums.
  std::vector<const float*> decode(const std::vector<DecodeRow>& rows) override {
    check();
    std::vector<int32_t> msg{kDecode, static_cast<int32_t>(rows.size())};
    for (const DecodeRow& r : rows) {
      msg.insert(msg.end(), {r.token, r.seq, r.logits ? 1 : 0, r.pos});
    }
    send(std::move(msg));
    check();
    try {
      return ctx_.decode(rows);
    } catch (const Error& e) {
      // Bad rows are refused before the forward pass, alike on every rank; an I/O error is the
      // transport's (a peer's timeout): the job cannot go on.
      if (e.code() == ErrorCode::kIo) fail(e.what());
      throw;
    }
  }

 private:
  void check() const {
    if (!failed_.empty()) throw Error(ErrorCode::kIo, failed_);
  }
  void fail(const std::string& why) {
    if (!failed_.empty()) return;
    failed_ = why;
    if (on_failure_) on_failure_(why);
  }
  void send(std::vector<int32_t> msg) {
    try {
      channel_->send(msg, timeout_s_);
    } catch (const std::exception& e) {
      fail(e.what());
    }
  }

  Context ctx_;
  std::shared_ptr<MpiCommandChannel> channel_;
  std::vector<std::shared_ptr<const LoraAdapter>> adapters_;
  double timeout_s_;
  std::function<void(const std::string&)> on_failure_;
  std::string failed_;  // the engine thread alone calls the backend
};

}  // namespace

std::unique_ptr<ModelBackend> make_mpi_backend(
    std::shared_ptr<const Model> slice, const ContextOptions& options,
    std::shared_ptr<MpiCommandChannel> channel, std::vector<std::shared_ptr<const LoraAdapter>> adapters,
    double timeout_s, std::function<void(const std::string&)> on_failure) {
  return std::make_unique<MpiBackend>(std::move(slice), options, std::move(channel),
                                      std::move(adapters), timeout_s, std::move(on_failure));
}

void send_quit(MpiCommandChannel& channel, double timeout_s) { channel.send({kQuit}, timeout_s); }

bool follow_rank0(std::shared_ptr<const Model> slice, const ContextOptions& options,
                  MpiCommandChannel& channel,
                  const std::vector<std::shared_ptr<const LoraAdapter>>& adapters,
                  const std::atomic<bool>& stop_requested, double timeout_s, std::string* why) {
  Context ctx(std::move(slice), options);
  std::vector<int32_t> msg;
  std::vector<DecodeRow> rows;
  using clock = std::chrono::steady_clock;
  clock::time_point stop_seen{};
  auto keep_waiting = [&] {
    if (!stop_requested.load()) return true;
    if (stop_seen == clock::time_point{}) stop_seen = clock::now();
    return std::chrono::duration<double>(clock::now() - stop_seen).count() < timeout_s;
  };
  auto expect = [&](int got, int want, const char* what) {
    if (got != want) {
      throw Error(ErrorCode::kInternal, std::string(what) + " gave sequence " +
                                            std::to_string(got) + " here and " +
                                            std::to_string(want) + " on rank 0: the ranks' "
                                            "caches went apart");
    }
  };
  for (;;) {
    if (!channel.receive(&msg, keep_waiting)) {
      *why = "stopped by a signal, and rank 0 did not end the job within " +
             std::to_string(static_cast<int>(timeout_s)) + " s";
      return false;
    }
    if (msg.empty()) throw Error(ErrorCode::kInternal, "an empty command from rank 0");
    const auto need = [&](size_t n) {
      if (msg.size() < n) {
        throw Error(ErrorCode::kInternal, "a command of " + std::to_string(msg.size()) +
                                              " words from rank 0 (op " +
                                              std::to_string(msg[0]) + ")");
      }
    };
    switch (msg[0]) {
      case kAddSequence:
        need(2);
        expect(ctx.add_sequence(), msg[1], "add_sequence");
        break;
      case kFork:
        need(4);
        expect(ctx.fork(msg[1], msg[2]), msg[3], "fork");
        break;
      case kRemove:
        need(2);
        ctx.remove_sequence(msg[1]);
        break;
      case kRewind:
        need(3);
        ctx.rewind(msg[1], msg[2]);
        break;
      case kAdapters: {
        need(3);
        const size_t n = static_cast<size_t>(msg[2]);
        need(3 + 2 * n);
        std::vector<AdapterChoice> choice;
        for (size_t i = 0; i < n; ++i) {
          const int32_t index = msg[3 + 2 * i];
          if (index < 0 || static_cast<size_t>(index) >= adapters.size()) {
            throw Error(ErrorCode::kInternal, "adapter " + std::to_string(index) +
                                                  " from rank 0; this rank loaded " +
                                                  std::to_string(adapters.size()));
          }
          choice.push_back({adapters[static_cast<size_t>(index)], bits_float(msg[4 + 2 * i])});
        }
        ctx.set_adapters(msg[1], std::move(choice));
        break;
      }
      case kDecode: {
        need(2);
        const size_t n = static_cast<size_t>(msg[1]);
        need(2 + 4 * n);
        rows.resize(n);
        for (size_t i = 0; i < n; ++i) {
          const int32_t* w = msg.data() + 2 + 4 * i;
          rows[i].token = w[0];
          rows[i].seq = w[1];
          rows[i].logits = w[2] != 0;
          rows[i].pos = w[3];
        }
        try {
          ctx.decode(rows);
        } catch (const Error& e) {
          // Refused rows are refused on rank 0 alike (before the forward pass): go on.
          if (e.code() == ErrorCode::kIo || e.code() == ErrorCode::kInternal) throw;
        }
        break;
      }
      case kQuit:
        return true;
      default:
        throw Error(ErrorCode::kInternal, "unknown command " + std::to_string(msg[0]) +
                                              " from rank 0");
    }
  }
}

}  // namespace piquant::server
