#pragma once
// The server's scheduler: one engine thread owns a piquant::Context (one sequence per slot) and
// runs steps. Each step is ONE pass over the weights (Context::decode) whose rows are the next
// token of every slot in the decode phase and prompt chunks of the slots still prefilling (up to
// --prefill-chunk rows in all, the shortest remaining prompt first; a second slot's chunk only
// beside a short first one), so a long prompt never freezes the streams already running and
// short prompts share a pass; each sequence carries
// its own request's LoRA adapters. A prompt prefix that another slot holds (a shared system
// prompt) is copied from it (Context::fork) instead of evaluated again; a slot whose prefix is
// being evaluated by another waits for it. HTTP threads only submit requests to a bounded queue
// and read their events; a cancelled request frees its slot at the next step.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <piquant/piquant.hpp>

namespace piquant::server {

/// What a request asks the engine to do (validated by the HTTP layer).
struct GenRequest {
  std::vector<TokenId> prompt;
  int max_tokens = 256;
  SamplerOptions sampler;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  std::vector<AdapterChoice> adapters;
  std::string adapter_key;  ///< identifies the adapter set (the KV cache is only reusable under it)
  /// Constrains the reply (response_format, tools): tokens that would leave it are masked.
  std::shared_ptr<const Grammar> grammar;
  /// Non-empty (tool_choice "auto"): the grammar applies only once the reply, leading
  /// whitespace aside, starts with one of these; a reply that cannot is free text.
  std::vector<std::string> grammar_triggers;
};

/// What a reply turned out to be, for the HTTP side (tool calls are not streamed as text).
enum class ReplyMode : int { kText = 0, kUndecided = 1, kConstrained = 2 };

/// A request in flight: the engine appends text pieces, the HTTP thread takes them.
class Job {
 public:
  explicit Job(GenRequest r)
      : req(std::move(r)),
        mode(static_cast<int>(!req.grammar                  ? ReplyMode::kText
                              : req.grammar_triggers.empty() ? ReplyMode::kConstrained
                                                             : ReplyMode::kUndecided)) {}
  const GenRequest req;
  /// A ReplyMode; kUndecided turns into kText or kConstrained (set before the text that
  /// decided it is pushed).
  std::atomic<int> mode;
  ReplyMode reply_mode() const { return static_cast<ReplyMode>(mode.load()); }

  /// HTTP side: waits up to `ms` for new text or the end; moves out what is there. Returns true
  /// when the job has finished (and everything was taken).
  bool take(std::string* text, int ms);
  /// HTTP side: stop generating (client gone); the engine frees the slot at its next step.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

  // Engine side.
  void push(const std::string& text);
  void finish(const std::string& reason, const std::string& error = {});

  // Results, valid once finished.
  std::string finish_reason;  ///< "stop", "length", "cancelled" or "error"
  std::string error;
  int prompt_tokens = 0;
  int cached_tokens = 0;      ///< prompt tokens reused from the slot's cache
  int completion_tokens = 0;
  int slot = -1;
  double ttft_seconds = 0;    ///< submit -> first token sampled
  std::chrono::steady_clock::time_point submitted;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::string pending_;
  bool done_ = false;
  std::atomic<bool> cancelled_{false};
};

/// The engine's only way to the model: a small seam. Here a piquant::Context; an MPI job's rank
/// 0 can put a distributed model behind the same calls (same semantics as Context's).
class ModelBackend {
 public:
  virtual ~ModelBackend() = default;
  virtual int n_ctx() const = 0;
  virtual int add_sequence() = 0;
  virtual int fork(int src, int n_pos) = 0;
  virtual void remove_sequence(int seq) = 0;
  virtual void rewind(int seq, int position) = 0;
  virtual void set_adapters(int seq, std::vector<AdapterChoice> adapters) = 0;
  virtual std::vector<const float*> decode(const std::vector<DecodeRow>& rows) = 0;
};

/// A piquant::Context of `n_seq` sequences behind the seam.
std::unique_ptr<ModelBackend> make_context_backend(std::shared_ptr<const Model> model,
                                                   const ContextOptions& options);

struct EngineOptions {
  int n_slots = 4;
  SessionOptions session;
  int prefill_chunk = 64;   ///< rows per pass: prompt chunks fill what the decode rows leave
  size_t max_queue = 16;    ///< requests waiting for a slot; more are refused (503)
  bool verbose = false;
};

/// Counters for /metrics and /health.
struct EngineStats {
  uint64_t requests = 0, requests_cancelled = 0, requests_rejected = 0;
  uint64_t prompt_tokens = 0, prompt_tokens_cached = 0, generated_tokens = 0;
  uint64_t prompt_tokens_evaluated = 0;  ///< prompt tokens run through the model
  uint64_t prompt_tokens_forked = 0;     ///< prompt tokens copied from another slot's cache
  double prompt_seconds = 0, decode_seconds = 0;
  uint64_t decode_steps = 0;
  int busy_slots = 0, queued = 0, n_slots = 0;
  int n_ctx = 0;
};

class Engine {
 public:
  /// A Context of n_slots sequences (options.session: context per slot, threads, KV type).
  Engine(std::shared_ptr<const Model> model, const EngineOptions& options);
  /// On another backend (with at least n_slots + 1 free sequences: one spare for prefix copies).
  Engine(std::shared_ptr<const Model> model, std::unique_ptr<ModelBackend> backend,
         const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Queues a job; false when the queue is full (the caller answers 503).
  bool submit(const std::shared_ptr<Job>& job);
  EngineStats stats() const;
  int n_ctx() const { return n_ctx_; }
  /// Ends every queued and running job now with `error` (any thread; the engine thread may be
  /// inside a step: what it produces for those jobs afterwards is dropped). For a stop that must
  /// not wait for the step (piquant-server under mpirun: a rank that died holds it up).
  void abort_jobs(const std::string& error);
  void stop();

 private:
  struct Slot {
    int seq = -1;                 ///< its sequence in the backend
    std::vector<TokenId> cached;  ///< tokens in the KV cache (positions 0 .. size)
    std::string adapter_key;
    std::shared_ptr<Job> job;
    size_t prompt_done = 0;       ///< prompt tokens in the cache
    TokenId next = -1;            ///< sampled, not yet evaluated (decode phase)
    std::unique_ptr<Sampler> sampler;
    std::unique_ptr<TokenStream> stream;
    std::string held;             ///< text held back: it may begin a stop string
    std::optional<GrammarMatcher> matcher;  ///< the job's grammar state (once it applies)
    std::string lazy_text;        ///< reply bytes while a lazy grammar is undecided
    TokenId prev = -1;            ///< the last token (for token_bytes)
    uint64_t last_used = 0;       ///< step of its last admission (least recently used is reused)
    int passed_over = 0;          ///< passes in a row it got no prompt rows while prefilling
  };
  static constexpr int kMaxPassedOver = 4;
  /// A prefilling slot's chunk joins a pass only while it holds fewer prompt rows than this.
  static constexpr size_t kShareRows = 16;
  void run();
  void admit_locked();
  /// One pass: prompt chunks of `prefill` (in that order, each taking what is left of
  /// --prefill-chunk rows beside the decode rows, the second and later only while the pass
  /// has fewer than kShareRows prompt rows; a slot may get none) and the next token of every
  /// slot in `decoding`.
  void step(const std::vector<Slot*>& prefill, const std::vector<Slot*>& decoding);
  /// The prefilling slots that may advance this step: all but those whose next prompt tokens
  /// another slot admitted earlier is evaluating (they fork it when it is there).
  std::vector<Slot*> pick_prefill();
  /// The order in which prefilling slots take the pass's prompt rows: a slot passed over in
  /// kMaxPassedOver passes in a row first (no prompt waits longer), then the shortest remaining
  /// prompt (a short request's first token does not wait for a long prompt), then the oldest.
  void order_prefill(std::vector<Slot*>* prefill) const;
  /// Copies the longest prefix of s's prompt that another slot holds, if longer than its own.
  void fork_prefix(Slot& s);
  /// Samples the slot's next token (under its grammar); -1 when the job ended instead (the
  /// grammar is complete, or no token can continue it).
  TokenId sample(Slot& s, const float* logits);
  /// Handles a sampled token; returns false when the job ended with it.
  bool on_token(Slot& s, TokenId id);
  /// A lazy grammar (tool_choice "auto"): decides from the reply so far whether it applies.
  void decide_lazy(Slot& s);
  /// Ends the slot's job (the slot keeps its cache); `flush` sends the text still held back.
  void release(Slot& s, const std::string& reason, const std::string& error = {},
               bool flush = true);

  std::shared_ptr<const Model> model_;
  std::unique_ptr<ModelBackend> backend_;
  EngineOptions opt_;
  int n_ctx_ = 0;
  std::vector<Slot> slots_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::vector<std::shared_ptr<Job>> active_;  ///< the jobs in slots (for abort_jobs)
  uint64_t admissions_ = 0;
  std::vector<float> work_;       ///< logits copy the sampler modifies
  std::shared_ptr<const GrammarVocab> grammar_vocab_;  ///< built at the first grammar
  bool stopping_ = false;
  EngineStats stats_;
  std::thread thread_;
};

}  // namespace piquant::server
