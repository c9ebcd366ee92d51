#include "engine.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace piquant::server {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Length of the longest suffix of `text` that is a proper prefix of one of `stops` (that much
/// text must be held back: the next piece may complete the stop string).
size_t held_suffix(const std::string& text, const std::vector<std::string>& stops) {
  size_t keep = 0;
  for (const std::string& s : stops) {
    for (size_t n = std::min(text.size(), s.size() - 1); n > keep; --n) {
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
    }
  }
  return keep;
}

}  // namespace

bool Job::take(std::string* text, int ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return done_ || !pending_.empty(); });
  text->append(pending_);
  pending_.clear();
  return done_;
}

void Job::push(const std::string& text) {
  if (text.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ += text;
  }
  cv_.notify_all();
}

void Job::finish(const std::string& reason, const std::string& err) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return;  // the first end wins (Engine::abort_jobs may end a job mid-step)
    finish_reason = reason;
    error = err;
    done_ = true;
  }
  cv_.notify_all();
}

namespace {

class ContextBackend final : public ModelBackend {
 public:
  ContextBackend(std::shared_ptr<const Model> model, const ContextOptions& options)
      : ctx_(std::move(model), options) {}
  int n_ctx() const override { return ctx_.n_ctx(); }
  int add_sequence() override { return ctx_.add_sequence(); }
  int fork(int src, int n_pos) override { return ctx_.fork(src, n_pos); }
  void remove_sequence(int seq) override { ctx_.remove_sequence(seq); }
  void rewind(int seq, int position) override { ctx_.rewind(seq, position); }
  void set_adapters(int seq, std::vector<AdapterChoice> adapters) override {
    ctx_.set_adapters(seq, std::move(adapters));
  }
  std::vector<const float*> decode(const std::vector<DecodeRow>& rows) override {
    return ctx_.decode(rows);
  }

 private:
  Context ctx_;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

size_t common_prefix(const std::vector<TokenId>& a, const std::vector<TokenId>& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t k = 0;
  while (k < n && a[k] == b[k]) ++k;
  return k;
}

}  // namespace

std::unique_ptr<ModelBackend> make_context_backend(std::shared_ptr<const Model> model,
                                                   const ContextOptions& options) {
  return std::make_unique<ContextBackend>(std::move(model), options);
}

namespace {

ContextOptions context_options(const EngineOptions& o) {
  ContextOptions c;
  c.n_ctx = o.session.n_ctx;
  c.n_seq = std::max(1, o.n_slots) + 1;  // one spare: a prefix copy is made before the old goes
  c.n_threads = o.session.n_threads;
  c.kv_type = o.session.kv_type;
  return c;
}

}  // namespace

Engine::Engine(std::shared_ptr<const Model> model, const EngineOptions& options)
    : Engine(model, make_context_backend(model, context_options(options)), options) {}

Engine::Engine(std::shared_ptr<const Model> model, std::unique_ptr<ModelBackend> backend,
               const EngineOptions& options)
    : model_(std::move(model)), backend_(std::move(backend)), opt_(options) {
  slots_.resize(static_cast<size_t>(std::max(1, opt_.n_slots)));
  for (Slot& s : slots_) s.seq = backend_->add_sequence();
  n_ctx_ = backend_->n_ctx();
  stats_.n_slots = static_cast<int>(slots_.size());
  stats_.n_ctx = n_ctx_;
  thread_ = std::thread([this] { run(); });
}

Engine::~Engine() { stop(); }

void Engine::abort_jobs(const std::string& error) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& job : queue_) job->finish("error", error);
  queue_.clear();
  for (auto& job : active_) job->finish("error", error);
}

void Engine::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Engine::submit(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A job may wait only if a slot is free for it or the queue has room.
    const size_t free_slots = slots_.size() - static_cast<size_t>(stats_.busy_slots);
    if (stopping_ || queue_.size() >= opt_.max_queue + free_slots) {
      ++stats_.requests_rejected;
      return false;
    }
    job->submitted = std::chrono::steady_clock::now();
    queue_.push_back(job);
    ++stats_.requests;
    stats_.queued = static_cast<int>(queue_.size());
  }
  cv_.notify_all();
  return true;
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

// Gives each waiting job the free slot whose cache shares the longest prefix with its prompt
// (under the same adapters; ties: the least recently used slot), rewound to that prefix.
void Engine::admit_locked() {
  while (!queue_.empty()) {
    if (queue_.front()->cancelled()) {
      queue_.front()->finish("cancelled");
      ++stats_.requests_cancelled;
      queue_.pop_front();
      continue;
    }
    Slot* best = nullptr;
    size_t best_lcp = 0;
    const GenRequest& req = queue_.front()->req;
    for (Slot& s : slots_) {
      if (s.job) continue;
      const size_t lcp = s.adapter_key == req.adapter_key ? common_prefix(s.cached, req.prompt) : 0;
      if (!best || lcp > best_lcp || (lcp == best_lcp && s.last_used < best->last_used)) {
        best = &s;
        best_lcp = lcp;
      }
    }
    if (!best) break;
    Slot& s = *best;
    s.job = queue_.front();
    active_.push_back(s.job);
    queue_.pop_front();
    // At least the last prompt token is evaluated again: its logits choose the first token.
    const size_t keep = std::min(best_lcp, req.prompt.size() - 1);
    backend_->rewind(s.seq, static_cast<int>(keep));
    s.cached.resize(keep);
    backend_->set_adapters(s.seq, req.adapters);
    s.adapter_key = req.adapter_key;
    s.prompt_done = keep;
    s.next = -1;
    s.last_used = ++admissions_;
    s.passed_over = 0;
    s.sampler = std::make_unique<Sampler>(req.sampler);
    for (TokenId t : req.prompt) s.sampler->accept(t);
    s.stream = std::make_unique<TokenStream>(model_->tokenizer());
    s.stream->push(req.prompt.back());  // the reply continues the prompt's text
    s.stream->flush();
    s.held.clear();
    s.lazy_text.clear();
    s.prev = req.prompt.back();
    s.matcher.reset();
    if (req.grammar) {
      if (!grammar_vocab_) grammar_vocab_ = GrammarVocab::build(model_->tokenizer());
      if (req.grammar_triggers.empty()) s.matcher.emplace(req.grammar, grammar_vocab_);
    }
    s.job->slot = static_cast<int>(&s - slots_.data());
    s.job->prompt_tokens = static_cast<int>(req.prompt.size());
    s.job->cached_tokens = static_cast<int>(keep);
    stats_.prompt_tokens += req.prompt.size();
    stats_.prompt_tokens_cached += keep;
    ++stats_.busy_slots;
    if (opt_.verbose) {
      std::fprintf(stderr, "slot %d: %zu prompt tokens, %zu cached\n", s.job->slot,
                   req.prompt.size(), keep);
    }
  }
  stats_.queued = static_cast<int>(queue_.size());
}

void Engine::release(Slot& s, const std::string& reason, const std::string& error, bool flush) {
  if (!s.job) return;
  if (flush && reason != "cancelled" && reason != "error") {
    s.job->push(s.held + s.stream->flush());
  }
  s.held.clear();
  {  // the slot counts as free before the client hears the end
    std::lock_guard<std::mutex> lock(mu_);
    --stats_.busy_slots;
    if (reason == "cancelled") ++stats_.requests_cancelled;
    active_.erase(std::find(active_.begin(), active_.end(), s.job));
  }
  s.job->finish(reason, error);
  if (opt_.verbose) {
    std::fprintf(stderr, "slot %d: done (%s), %d tokens\n", s.job->slot, reason.c_str(),
                 s.job->completion_tokens);
  }
  s.job.reset();
  s.matcher.reset();
  s.next = -1;
}

TokenId Engine::sample(Slot& s, const float* logits) {
  const size_t n_vocab = static_cast<size_t>(model_->config().vocab_size);
  work_.assign(logits, logits + n_vocab);
  if (s.matcher) {
    // Nothing may follow (complete), or no token of the vocabulary continues the grammar: the
    // reply ends here (a reply that is not a whole sentence of the grammar shows in the API's
    // parse of it).
    if (s.matcher->is_complete() ||
        s.matcher->mask_logits(work_.data(), n_vocab, !s.job->req.ignore_eos) == 0) {
      if (opt_.verbose && !s.matcher->can_end()) {
        std::fprintf(stderr, "slot %d: no token can continue the grammar\n", s.job->slot);
      }
      release(s, "stop");
      return -1;
    }
  }
  const TokenId id = s.sampler->sample(work_.data(), n_vocab);
  if (s.matcher) s.matcher->accept_token(id);
  return id;
}

void Engine::decide_lazy(Slot& s) {
  const GenRequest& req = s.job->req;
  size_t b = 0;
  while (b < s.lazy_text.size() && is_space(s.lazy_text[b])) ++b;
  const std::string_view t = std::string_view(s.lazy_text).substr(b);
  if (t.empty()) return;
  for (const std::string& trigger : req.grammar_triggers) {
    if (t.compare(0, trigger.size(), trigger) != 0) continue;
    // The reply begins a call: from here on the grammar holds. A trigger that is not the
    // grammar's own start (Llama 3's <|python_tag|>) is left out of what it sees.
    std::string_view rest = t;
    if (trigger == "<|python_tag|>") {
      rest.remove_prefix(trigger.size());
      while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
    }
    s.matcher.emplace(req.grammar, grammar_vocab_);
    if (s.matcher->accept_text(rest)) {
      s.job->mode.store(static_cast<int>(ReplyMode::kConstrained));
    } else {
      s.matcher.reset();
      s.job->mode.store(static_cast<int>(ReplyMode::kText));
    }
    s.lazy_text.clear();
    return;
  }
  for (const std::string& trigger : req.grammar_triggers) {
    if (trigger.compare(0, t.size(), t) == 0) return;  // may still become one
  }
  s.job->mode.store(static_cast<int>(ReplyMode::kText));
  s.lazy_text.clear();
}

bool Engine::on_token(Slot& s, TokenId id) {
  Job& job = *s.job;
  if (job.completion_tokens++ == 0) job.ttft_seconds = seconds_since(job.submitted);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.generated_tokens;
  }
  const GenRequest& req = job.req;
  if (!req.ignore_eos && model_->tokenizer().is_end_of_generation(id)) {
    release(s, "stop");
    return false;
  }
  if (s.job->reply_mode() == ReplyMode::kUndecided) {
    s.lazy_text += model_->tokenizer().token_bytes(id, s.prev);
    decide_lazy(s);
  }
  s.prev = id;
  s.held += s.stream->push(id);
  for (const std::string& stop : req.stop) {
    const size_t at = s.held.find(stop);
    if (at != std::string::npos) {
      job.push(s.held.substr(0, at));  // nothing of the stop string or after it
      release(s, "stop", {}, false);
      return false;
    }
  }
  const size_t keep = held_suffix(s.held, req.stop);
  job.push(s.held.substr(0, s.held.size() - keep));
  s.held.erase(0, s.held.size() - keep);
  if (s.matcher && s.matcher->is_complete()) {  // no need to evaluate it: nothing may follow
    release(s, "stop");
    return false;
  }
  if (job.completion_tokens >= req.max_tokens || static_cast<int>(s.cached.size()) >= n_ctx_) {
    release(s, "length");
    return false;
  }
  s.next = id;
  return true;
}

void Engine::fork_prefix(Slot& s) {
  const GenRequest& req = s.job->req;
  const Slot* src = nullptr;
  size_t best = s.prompt_done;
  for (const Slot& t : slots_) {
    if (&t == &s || t.adapter_key != req.adapter_key) continue;  // other adapters: other keys/values
    // At least the last prompt token is evaluated: its logits choose the first token.
    const size_t n = std::min(common_prefix(t.cached, req.prompt), req.prompt.size() - 1);
    if (n > best) {
      best = n;
      src = &t;
    }
  }
  if (!src) return;
  // A copy of the source's first `best` positions (in the spare sequence) takes the place of
  // the slot's own sequence, which then becomes the spare.
  int copy = -1;
  try {
    copy = backend_->fork(src->seq, static_cast<int>(best));
    backend_->set_adapters(copy, req.adapters);
  } catch (const std::exception& e) {  // not expected; the slot just evaluates its prompt
    if (copy >= 0) backend_->remove_sequence(copy);
    if (opt_.verbose) std::fprintf(stderr, "slot %d: no prefix copy: %s\n", s.job->slot, e.what());
    return;
  }
  backend_->remove_sequence(s.seq);
  s.seq = copy;
  const size_t gained = best - s.prompt_done;
  s.cached.assign(req.prompt.begin(), req.prompt.begin() + static_cast<long>(best));
  s.prompt_done = best;
  s.job->cached_tokens += static_cast<int>(gained);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.prompt_tokens_cached += gained;
    stats_.prompt_tokens_forked += gained;
  }
  if (opt_.verbose) {
    std::fprintf(stderr, "slot %d: %zu prompt tokens copied from slot %d\n", s.job->slot, gained,
                 static_cast<int>(src - slots_.data()));
  }
}

std::vector<Engine::Slot*> Engine::pick_prefill() {
  std::vector<Slot*> out;
  for (Slot& s : slots_) {
    if (!s.job || s.next >= 0) continue;
    const std::vector<TokenId>& prompt = s.job->req.prompt;
    bool waits = false;
    for (const Slot& t : slots_) {
      if (&t == &s || !t.job || t.next >= 0 || t.last_used > s.last_used ||
          t.adapter_key != s.adapter_key) {
        continue;
      }
      // t, admitted earlier and still reading its prompt, will hold s's next tokens: wait.
      const size_t shared = std::min(common_prefix(t.job->req.prompt, prompt), prompt.size() - 1);
      if (shared > s.prompt_done && t.prompt_done < shared) waits = true;
    }
    if (!waits) out.push_back(&s);
  }
  return out;
}

void Engine::order_prefill(std::vector<Slot*>* prefill) const {
  std::stable_sort(prefill->begin(), prefill->end(), [](const Slot* a, const Slot* b) {
    const bool wa = a->passed_over >= kMaxPassedOver, wb = b->passed_over >= kMaxPassedOver;
    if (wa != wb) return wa;
    const size_t ra = a->job->req.prompt.size() - a->prompt_done;
    const size_t rb = b->job->req.prompt.size() - b->prompt_done;
    if (ra != rb) return ra < rb;
    return a->last_used < b->last_used;
  });
}

void Engine::step(const std::vector<Slot*>& prefill, const std::vector<Slot*>& decoding) {
  std::vector<DecodeRow> rows;
  // Prompt rows fill the pass up to --prefill-chunk rows beside the generating slots' rows (at
  // least one), taken by the prefilling slots in order: each takes what is left, the second
  // and later only while the pass has fewer than kShareRows prompt rows.
  const size_t chunk = static_cast<size_t>(opt_.prefill_chunk);
  size_t budget = decoding.size() + 1 < chunk ? chunk - decoding.size() : 1;
  std::vector<size_t> n_chunk(prefill.size(), 0);
  size_t n_prompt = 0;
  for (size_t i = 0; i < prefill.size(); ++i) {
    Slot& s = *prefill[i];
    const std::vector<TokenId>& prompt = s.job->req.prompt;
    // Another slot's chunk joins only a pass with few prompt rows yet: sharing a pass saves
    // one read of the weights, which matters next to a short chunk; past a few rows a pass
    // costs about the same per row, and a second prompt would only delay the first's token.
    const size_t n = n_prompt >= kShareRows ? 0 : std::min(prompt.size() - s.prompt_done, budget);
    n_chunk[i] = n;
    s.passed_over = n == 0 ? s.passed_over + 1 : 0;
    const bool last = s.prompt_done + n == prompt.size();
    for (size_t k = 0; k < n; ++k) {
      DecodeRow r;
      r.token = prompt[s.prompt_done + k];
      r.seq = s.seq;
      r.logits = last && k + 1 == n;  // the logits of the prompt's last token only
      rows.push_back(r);
    }
    budget -= n;
    n_prompt += n;
  }
  for (Slot* s : decoding) {
    DecodeRow r;
    r.token = s->next;
    r.seq = s->seq;
    rows.push_back(r);
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<const float*> logits;
  try {
    logits = backend_->decode(rows);
  } catch (const std::exception& e) {
    for (size_t i = 0; i < prefill.size(); ++i) {
      if (n_chunk[i] > 0) release(*prefill[i], "error", e.what());
    }
    for (Slot* s : decoding) release(*s, "error", e.what());
    return;
  }
  {
    // A mixed pass's time is shared between prompt and generation by rows.
    const double dt = seconds_since(t0);
    const double share = static_cast<double>(n_prompt) / static_cast<double>(rows.size());
    std::lock_guard<std::mutex> lock(mu_);
    stats_.prompt_seconds += dt * share;
    stats_.decode_seconds += dt * (1 - share);
    stats_.prompt_tokens_evaluated += n_prompt;
    if (!decoding.empty()) ++stats_.decode_steps;
  }
  size_t out = 0;
  for (size_t i = 0; i < prefill.size(); ++i) {
    if (n_chunk[i] == 0) continue;
    Slot& s = *prefill[i];
    const std::vector<TokenId>& prompt = s.job->req.prompt;
    s.cached.insert(s.cached.end(), prompt.begin() + static_cast<long>(s.prompt_done),
                    prompt.begin() + static_cast<long>(s.prompt_done + n_chunk[i]));
    s.prompt_done += n_chunk[i];
    if (s.prompt_done == prompt.size()) {
      const float* l = logits[out++];
      if (s.job->cancelled()) {
        release(s, "cancelled");
      } else {
        const TokenId id = sample(s, l);
        if (id >= 0) on_token(s, id);
      }
    }
  }
  for (Slot* sp : decoding) {
    Slot& s = *sp;
    const float* l = logits[out++];
    s.cached.push_back(s.next);
    s.next = -1;
    if (s.job->cancelled()) {
      release(s, "cancelled");
      continue;
    }
    const TokenId id = sample(s, l);
    if (id >= 0) on_token(s, id);
  }
}

void Engine::run() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stopping_) break;
      admit_locked();
      const bool busy = std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) {
        return static_cast<bool>(s.job);
      });
      if (!busy) {
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        continue;
      }
    }
    for (Slot& s : slots_) {
      if (s.job && s.job->cancelled()) release(s, "cancelled");
    }
    // One pass: the next token of every generating slot and prompt chunks of the prefilling
    // slots (each one's prefix copied first from another slot where one holds it), the
    // shortest remaining prompt first.
    std::vector<Slot*> prefill = pick_prefill();
    for (Slot* s : prefill) fork_prefix(*s);
    order_prefill(&prefill);
    std::vector<Slot*> decoding;
    for (Slot& s : slots_) {
      if (s.job && s.next >= 0) decoding.push_back(&s);
    }
    if (!prefill.empty() || !decoding.empty()) step(prefill, decoding);
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& job : queue_) job->finish("error", "the server is shutting down");
  queue_.clear();
  for (Slot& s : slots_) {
    if (s.job) s.job->finish("error", "the server is shutting down");
    s.job.reset();
  }
}

}  // namespace piquant::server
