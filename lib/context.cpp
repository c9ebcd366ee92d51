// piquant::Context: many sequences in one KV store, decoded in passes of rows from any of them
// (model/graph.hpp's Forward::eval over a Batch). Also the option helpers Session shares.
#include "piquant/batch.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include "lora/apply.hpp"
#include "model/context_options.hpp"
#include "model/graph.hpp"
#include "model/model_impl.hpp"
#include "piquant/error.hpp"
#include "threads/thread_pool.hpp"

namespace piquant {

int resolve_ctx(const Model& m, int n_ctx) {
  if (n_ctx < 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "context length " + std::to_string(n_ctx) + " must be >= 0 (0: the model's)");
  }
  const int max_ctx = m.config().max_seq_len;
  if (n_ctx == 0) return max_ctx;
  if (n_ctx > max_ctx) {
    throw Error(ErrorCode::kInvalidArgument,
                "context length " + std::to_string(n_ctx) + " exceeds the model's maximum " +
                    std::to_string(max_ctx));
  }
  return n_ctx;
}

KvType resolve_kv_type(const Model& m, KvCacheType t) {
  switch (t) {
    case KvCacheType::kAuto: return all_f32(m.impl()) ? KvType::kF32 : KvType::kF16;
    case KvCacheType::kF32: return KvType::kF32;
    case KvCacheType::kF16: return KvType::kF16;
    case KvCacheType::kQ8: return KvType::kQ8;
  }
  return KvType::kF16;
}

struct Context::Impl {
  std::shared_ptr<const Model> model;
  int n_ctx;
  ThreadPool pool;
  Forward forward;
  std::vector<bool> used;
  std::vector<std::vector<AdapterChoice>> adapters;  // per sequence
  std::vector<float> logits;
  Batch batch;

  Impl(std::shared_ptr<const Model> m, int ctx, int n_seq, int threads, KvType kv)
      : model(std::move(m)),
        n_ctx(ctx),
        pool(threads),
        forward(model->impl(), ctx, kv, pool, n_seq),
        used(static_cast<size_t>(n_seq), false),
        adapters(static_cast<size_t>(n_seq)) {}

  void check_seq(int seq, const char* what) const {
    if (seq < 0 || seq >= static_cast<int>(used.size()) || !used[static_cast<size_t>(seq)]) {
      throw Error(ErrorCode::kOutOfRange, std::string("Context::") + what + ": sequence " +
                                              std::to_string(seq) + " is not in use");
    }
  }
};

Context::Context(std::shared_ptr<const Model> model, const ContextOptions& options) {
  if (!model) throw Error(ErrorCode::kInvalidArgument, "Context: model is null");
  if (options.n_seq < 1) {
    throw Error(ErrorCode::kInvalidArgument,
                "Context: n_seq " + std::to_string(options.n_seq) + " must be at least 1");
  }
  const int ctx = resolve_ctx(*model, options.n_ctx);
  const KvType kv = resolve_kv_type(*model, options.kv_type);
  impl_ = std::make_unique<Impl>(std::move(model), ctx, options.n_seq, options.n_threads, kv);
}

Context::~Context() = default;
Context::Context(Context&&) noexcept = default;
Context& Context::operator=(Context&&) noexcept = default;

int Context::add_sequence() {
  Impl& c = *impl_;
  for (size_t i = 0; i < c.used.size(); ++i) {
    if (c.used[i]) continue;
    c.used[i] = true;
    c.forward.kv().truncate(0, static_cast<int>(i));
    c.adapters[i].clear();
    return static_cast<int>(i);
  }
  throw Error(ErrorCode::kContextFull, "Context: all " + std::to_string(c.used.size()) +
                                           " sequences are in use (remove one or raise n_seq)");
}

int Context::fork(int src, int n_pos) {
  Impl& c = *impl_;
  c.check_seq(src, "fork");
  const int len = c.forward.kv().length(src);
  if (n_pos < 0) n_pos = len;
  if (n_pos > len) {
    throw Error(ErrorCode::kOutOfRange, "Context::fork: " + std::to_string(n_pos) +
                                            " positions but sequence " + std::to_string(src) +
                                            " holds " + std::to_string(len));
  }
  const int dst = add_sequence();
  c.forward.kv().copy_prefix(src, dst, n_pos);
  return dst;
}

void Context::remove_sequence(int seq) {
  Impl& c = *impl_;
  c.check_seq(seq, "remove_sequence");
  c.forward.kv().truncate(0, seq);
  c.adapters[static_cast<size_t>(seq)].clear();
  c.used[static_cast<size_t>(seq)] = false;
}

void Context::rewind(int seq, int position) {
  Impl& c = *impl_;
  c.check_seq(seq, "rewind");
  const int len = c.forward.kv().length(seq);
  if (position < 0 || position > len) {
    throw Error(ErrorCode::kOutOfRange, "Context::rewind: position " + std::to_string(position) +
                                            " but sequence " + std::to_string(seq) + " holds " +
                                            std::to_string(len) + " tokens");
  }
  c.forward.kv().truncate(position, seq);
}

int Context::position(int seq) const {
  impl_->check_seq(seq, "position");
  return impl_->forward.kv().length(seq);
}

void Context::set_adapters(int seq, std::vector<AdapterChoice> adapters) {
  Impl& c = *impl_;
  c.check_seq(seq, "set_adapters");
  check_adapters(adapters, c.model->impl());
  c.adapters[static_cast<size_t>(seq)] = std::move(adapters);
}

std::vector<const float*> Context::decode(const std::vector<DecodeRow>& rows) {
  Impl& c = *impl_;
  if (rows.empty()) throw Error(ErrorCode::kInvalidArgument, "Context::decode: no rows");
  c.batch.clear();
  size_t n_out = 0;
  std::vector<std::pair<int, int>> next;  // (seq, next position) of the sequences seen
  for (size_t i = 0; i < rows.size(); ++i) {
    const DecodeRow& r = rows[i];
    c.check_seq(r.seq, "decode");
    int pos = r.pos;
    if (pos < 0) {
      auto it = std::find_if(next.begin(), next.end(), [&](const auto& e) { return e.first == r.seq; });
      pos = it != next.end() ? it->second : c.forward.kv().length(r.seq);
    }
    auto it = std::find_if(next.begin(), next.end(), [&](const auto& e) { return e.first == r.seq; });
    if (it == next.end()) {
      next.emplace_back(r.seq, pos + 1);
    } else {
      it->second = pos + 1;
    }
    const auto& set = c.adapters[static_cast<size_t>(r.seq)];
    c.batch.push_back(BatchRow{r.token, pos, &c.forward.kv(), r.seq, r.logits,
                               set.empty() ? nullptr : &set});
    if (r.logits) ++n_out;
  }
  const size_t vocab = static_cast<size_t>(c.model->config().vocab_size);
  c.logits.resize(n_out * vocab);
  c.forward.eval(c.batch, c.logits.data());  // checks every row before changing anything
  std::vector<const float*> out(n_out);
  for (size_t k = 0; k < n_out; ++k) out[k] = c.logits.data() + k * vocab;
  return out;
}

int Context::n_ctx() const { return impl_->n_ctx; }
int Context::n_seq() const { return static_cast<int>(impl_->used.size()); }
size_t Context::kv_cache_bytes() const { return impl_->forward.kv().memory_bytes(); }
const Model& Context::model() const { return *impl_->model; }

}  // namespace piquant
