#include "piquant/session.hpp"

#include <chrono>
#include <optional>
#include <string>

#include "model/context_options.hpp"
#include "model/graph.hpp"
#include "piquant/error.hpp"
#include "model/model_impl.hpp"
#include "threads/thread_pool.hpp"
#include "util/stop_filter.hpp"

namespace piquant {

struct Session::Impl {
  std::shared_ptr<const Model> model;
  int n_ctx;
  ThreadPool pool;
  Forward forward;
  std::vector<float> logits;
  int pos = 0;
  std::vector<AdapterChoice> adapters;  // the forward reads them through a pointer
  std::shared_ptr<const GrammarVocab> grammar_vocab;  // built at the first constrained generate

  Impl(std::shared_ptr<const Model> m, int ctx, int threads, KvType kv)
      : model(std::move(m)),
        n_ctx(ctx),
        pool(threads),
        forward(model->impl(), ctx, kv, pool),
        logits(static_cast<size_t>(model->config().vocab_size)) {
    forward.set_adapters(&adapters);
  }
};

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

Session::Session(std::shared_ptr<const Model> model, const SessionOptions& options) {
  if (!model) throw Error(ErrorCode::kInvalidArgument, "Session: model is null");
  const int ctx = resolve_ctx(*model, options.n_ctx);
  const KvType kv = resolve_kv_type(*model, options.kv_type);
  impl_ = std::make_unique<Impl>(std::move(model), ctx, options.n_threads, kv);
}

Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

int Session::position() const { return impl_->pos; }
int Session::n_ctx() const { return impl_->n_ctx; }
void Session::reset() {
  impl_->pos = 0;
  impl_->forward.kv().truncate(0);
}

void Session::rewind(int position) {
  if (position < 0 || position > impl_->pos) {
    throw Error(ErrorCode::kOutOfRange, "rewind to position " + std::to_string(position) +
                                            ": the session holds " + std::to_string(impl_->pos) +
                                            " tokens");
  }
  impl_->pos = position;
  impl_->forward.kv().truncate(position);
}

size_t Session::kv_cache_bytes() const { return impl_->forward.kv().memory_bytes(); }
size_t Session::scratch_bytes() const { return impl_->forward.scratch_bytes(); }
std::string Session::kernel_names() const {
  return std::string("matmul: ") + linear_kernel_names() + "; attention: " +
         impl_->forward.kv().kernel_name() + "; lora: " + lora_kernel_names();
}
const Model& Session::model() const { return *impl_->model; }

void Session::set_adapters(std::vector<AdapterChoice> adapters) {
  check_adapters(adapters, impl_->model->impl());
  impl_->adapters = std::move(adapters);
}
const std::vector<AdapterChoice>& Session::adapters() const { return impl_->adapters; }

std::vector<const float*> decode_batch(const std::vector<Session*>& sessions,
                                       const std::vector<TokenId>& tokens) {
  if (sessions.empty() || sessions.size() != tokens.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "decode_batch: " + std::to_string(sessions.size()) + " sessions but " +
                    std::to_string(tokens.size()) + " tokens (one token per session, at least one)");
  }
  Batch batch;
  const Model* model = nullptr;
  for (size_t i = 0; i < sessions.size(); ++i) {
    Session* s = sessions[i];
    if (s == nullptr) throw Error(ErrorCode::kInvalidArgument, "decode_batch: session " + std::to_string(i) + " is null");
    for (size_t j = 0; j < i; ++j) {
      if (sessions[j] == s) {
        throw Error(ErrorCode::kInvalidArgument,
                    "decode_batch: session " + std::to_string(i) + " repeats session " + std::to_string(j));
      }
    }
    Session::Impl& si = s->impl();
    if (model == nullptr) model = si.model.get();
    if (si.model.get() != model) {
      throw Error(ErrorCode::kInvalidArgument, "decode_batch: session " + std::to_string(i) +
                                                   " uses another Model than session 0");
    }
    if (si.pos >= si.n_ctx) {
      throw Error(ErrorCode::kContextFull, "decode_batch: session " + std::to_string(i) +
                                               " has a full context (" + std::to_string(si.n_ctx) + ")");
    }
    if (tokens[i] < 0 || tokens[i] >= model->config().vocab_size) {
      throw Error(ErrorCode::kOutOfRange, "decode_batch: token id " + std::to_string(tokens[i]) +
                                              " for session " + std::to_string(i) +
                                              " is outside the vocabulary");
    }
    batch.push_back(BatchRow{tokens[i], si.pos, &si.forward.kv(), 0, true, &si.adapters});
  }
  // One pass on the first session's forward (its scratch and threads); each row reads and
  // writes its own session's KV cache.
  const size_t vocab = static_cast<size_t>(model->config().vocab_size);
  std::vector<float> logits(sessions.size() * vocab);
  sessions[0]->impl().forward.eval(batch, logits.data());
  std::vector<const float*> r;
  for (size_t i = 0; i < sessions.size(); ++i) {
    Session::Impl& si = sessions[i]->impl();
    std::copy(logits.begin() + static_cast<ptrdiff_t>(i * vocab),
              logits.begin() + static_cast<ptrdiff_t>((i + 1) * vocab), si.logits.begin());
    ++si.pos;
    r.push_back(si.logits.data());
  }
  return r;
}

const float* Session::eval(const std::vector<TokenId>& tokens, std::vector<float>* all_logits) {
  Impl& s = *impl_;
  const ModelConfig& c = s.model->config();
  if (tokens.empty()) throw Error(ErrorCode::kInvalidArgument, "eval: no tokens given");
  if (tokens.size() > static_cast<size_t>(s.n_ctx - s.pos)) {
    throw Error(ErrorCode::kContextFull,
                std::to_string(tokens.size()) + " tokens do not fit in the context: position " +
                    std::to_string(s.pos) + " of " + std::to_string(s.n_ctx) +
                    " (raise the context length or shorten the prompt)");
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= c.vocab_size) {
      throw Error(ErrorCode::kOutOfRange, "token id " + std::to_string(tokens[i]) +
                                              " at index " + std::to_string(i) +
                                              " is outside the vocabulary (0.." +
                                              std::to_string(c.vocab_size - 1) + ")");
    }
  }
  s.forward.eval(tokens.data(), static_cast<int>(tokens.size()), s.pos, s.logits.data(),
                 all_logits);
  s.pos += static_cast<int>(tokens.size());
  return s.logits.data();
}

GenerateResult Session::generate_core(const std::vector<TokenId>& prompt_ids,
                                      const TokenCallback& on_token,
                                      const GenerateOptions& options) {
  GenerateResult r;
  r.prompt_ids = prompt_ids;
  Sampler sampler(options.sampler);
  const Model& m = *impl_->model;
  const size_t n_vocab = static_cast<size_t>(m.config().vocab_size);
  for (TokenId t : prompt_ids) sampler.accept(t);

  auto t0 = std::chrono::steady_clock::now();
  std::vector<float> prompt_logits;
  const float* logits = eval(prompt_ids, options.on_logits ? &prompt_logits : nullptr);
  for (size_t p = 0; options.on_logits && p < prompt_ids.size(); ++p) {
    options.on_logits(prompt_logits.data() + p * n_vocab, n_vocab);
  }
  r.prompt_seconds = seconds_since(t0);
  std::vector<float> work(logits, logits + n_vocab);
  std::optional<GrammarMatcher> grammar;
  if (options.grammar) {
    if (!impl_->grammar_vocab) impl_->grammar_vocab = GrammarVocab::build(m.tokenizer());
    grammar.emplace(options.grammar, impl_->grammar_vocab);
  }

  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < options.max_tokens; ++i) {
    if (grammar) {  // mask before sampling; stop when nothing (or only the end) may follow
      if (grammar->is_complete()) {
        r.stop = GenerateResult::StopReason::kGrammarComplete;
        break;
      }
      if (grammar->mask_logits(work.data(), n_vocab, options.stop_at_end_of_generation) == 0) {
        r.stop = grammar->can_end() ? GenerateResult::StopReason::kGrammarComplete
                                    : GenerateResult::StopReason::kGrammarNoToken;
        break;
      }
    }
    const TokenId next = sampler.sample(work.data(), n_vocab);
    if (grammar) grammar->accept_token(next);
    r.generated_ids.push_back(next);
    if (options.stop_at_end_of_generation && m.has_tokenizer() &&
        m.tokenizer().is_end_of_generation(next)) {
      r.stop = GenerateResult::StopReason::kEndOfGeneration;
      break;
    }
    if (on_token && !on_token(next)) {
      r.stop = GenerateResult::StopReason::kCallback;
      break;
    }
    if (i + 1 == options.max_tokens) break;  // the last token needs no forward pass
    if (impl_->pos >= impl_->n_ctx) {
      r.stop = GenerateResult::StopReason::kContextFull;
      break;
    }
    logits = eval({next});
    if (options.on_logits) options.on_logits(logits, n_vocab);
    work.assign(logits, logits + n_vocab);
  }
  r.gen_seconds = seconds_since(t0);
  return r;
}

GenerateResult Session::generate_ids(const std::vector<TokenId>& prompt_ids,
                                     const TokenCallback& on_token,
                                     const GenerateOptions& options) {
  if (options.stop.empty()) return generate_core(prompt_ids, on_token, options);
  const Model& m = *impl_->model;
  if (!m.has_tokenizer()) {
    throw Error(ErrorCode::kInvalidArgument,
                "generate_ids: stop strings need a model with a tokenizer");
  }
  StopFilter filter(options.stop);
  TokenStream stream(m.tokenizer());
  bool user_stop = false;
  GenerateResult r = generate_core(prompt_ids, [&](TokenId id) {
    if (on_token && !on_token(id)) {
      user_stop = true;
      return false;
    }
    filter.push(stream.push(id));
    return !filter.stopped();
  }, options);
  if (filter.stopped() && !user_stop) r.stop = GenerateResult::StopReason::kStopString;
  return r;
}

GenerateResult Session::generate(std::string_view prompt, const PieceCallback& on_piece,
                                 const GenerateOptions& options) {
  // A session past position 0 continues its text: BOS belongs at the start only, unless the
  // caller asks for one.
  EncodeOptions encode = options.encode;
  if (position() > 0 && !encode.add_bos.has_value()) encode.add_bos = false;
  const std::vector<TokenId> ids = impl_->model->tokenizer().encode(prompt, encode);
  if (ids.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "generate: the prompt is empty and adds no BOS");
  }
  return generate(ids, on_piece, options);
}

GenerateResult Session::generate(const std::vector<TokenId>& prompt_ids,
                                 const PieceCallback& on_piece, const GenerateOptions& options) {
  if (!impl_->model->has_tokenizer()) {
    throw Error(ErrorCode::kInvalidArgument,
                "generate: this model has no tokenizer; use generate_ids for token ids");
  }
  // The text continues the prompt: the stream starts after its last token, so the first word
  // generated keeps its leading space (SentencePiece drops it only at the start of a text).
  TokenStream stream(impl_->model->tokenizer());
  if (!prompt_ids.empty()) {
    stream.push(prompt_ids.back());
    stream.flush();
  }
  StopFilter filter(options.stop);
  bool user_stop = false;
  // Shows the filter's output; false when the caller asks to stop.
  auto show = [&](const std::string& text) {
    if (text.empty() || !on_piece || on_piece(text)) return true;
    user_stop = true;
    return false;
  };
  GenerateResult r = generate_core(prompt_ids, [&](TokenId id) {
    const std::string out = filter.push(stream.push(id));
    return show(out) && !filter.stopped();
  }, options);
  if (!filter.stopped() && !user_stop) {
    std::string tail = filter.push(stream.flush());
    tail += filter.finish();
    if (!tail.empty() && on_piece) on_piece(tail);  // generation is over either way
  }
  if (user_stop) {
    r.stop = GenerateResult::StopReason::kCallback;
  } else if (filter.stopped()) {
    r.stop = GenerateResult::StopReason::kStopString;
  }
  r.text = filter.text();
  return r;
}

}  // namespace piquant
