#pragma once
/// \file piquant/session.hpp
/// One conversation on a shared Model: its KV cache, position and sampler state.
/// A Session is used by one thread at a time; many Sessions may share one Model.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "piquant/grammar.hpp"
#include "piquant/lora.hpp"
#include "piquant/model.hpp"
#include "piquant/sampler.hpp"

namespace piquant {

/// Element type of the KV cache. kAuto: f32 for an all-f32 model (exact reference runs), f16
/// otherwise.
enum class KvCacheType { kAuto, kF16, kQ8, kF32 };

struct SessionOptions {
  int n_ctx = 0;      ///< context length; 0: the model's max_seq_len
  int n_threads = 0;  ///< 0: all hardware threads
  KvCacheType kv_type = KvCacheType::kAuto;
};

struct GenerateOptions {
  int max_tokens = 256;               ///< tokens to generate at most
  SamplerOptions sampler;
  /// Stop when the generated text contains one of these. The text API (generate) never streams
  /// any part of a stop string: text that could begin one is held back until it is decided, and
  /// GenerateResult::text ends just before the match. generate_ids reports every sampled id and
  /// stops after the one that completes a match (needs a model with a tokenizer).
  std::vector<std::string> stop;
  bool stop_at_end_of_generation = true;  ///< stop at EOS / end-of-turn tokens
  EncodeOptions encode;               ///< how the prompt text is tokenized
  /// Sees the logits of every evaluated position (prompt tokens included), before sampling.
  std::function<void(const float* logits, size_t n_vocab)> on_logits;
  /// Constrains the generated text to this grammar (Grammar::parse / from_json_schema /
  /// json_object): tokens that would leave it are masked before sampling, so it composes with
  /// every sampler setting. End-of-generation tokens are allowed only where the grammar can end;
  /// generation stops with kGrammarComplete when nothing else can follow. Needs a tokenizer.
  std::shared_ptr<const Grammar> grammar;
};

struct GenerateResult {
  std::vector<TokenId> prompt_ids;
  std::vector<TokenId> generated_ids;
  std::string text;
  double prompt_seconds = 0;  ///< time spent evaluating the prompt
  double gen_seconds = 0;     ///< time spent generating
  /// kGrammarComplete: the grammar admits no more text; kGrammarNoToken: no token of the
  /// vocabulary continues the grammar here (the text is then an unfinished sentence of it).
  enum class StopReason {
    kMaxTokens, kEndOfGeneration, kStopString, kCallback, kContextFull, kGrammarComplete,
    kGrammarNoToken
  } stop = StopReason::kMaxTokens;
};

/// Called with each new piece of text (whole UTF-8 characters); return false to stop.
using PieceCallback = std::function<bool(std::string_view piece)>;
/// Called with each generated token id; return false to stop.
using TokenCallback = std::function<bool(TokenId id)>;

class Session {
 public:
  explicit Session(std::shared_ptr<const Model> model, const SessionOptions& options = {});
  ~Session();
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;

  /// Evaluates `tokens` at the current position and advances it. Returns the logits after the
  /// last token (vocab_size floats, valid until the next call). With `all_logits`, appends the
  /// logits of every token. Throws kContextFull / kOutOfRange without changing the state.
  const float* eval(const std::vector<TokenId>& tokens, std::vector<float>* all_logits = nullptr);

  /// Tokenizes `prompt`, evaluates it and generates; streams text through on_piece.
  GenerateResult generate(std::string_view prompt, const PieceCallback& on_piece,
                          const GenerateOptions& options = {});
  /// Same from prompt ids (no BOS is added), streaming text.
  GenerateResult generate(const std::vector<TokenId>& prompt_ids, const PieceCallback& on_piece,
                          const GenerateOptions& options = {});
  /// Same from prompt ids; on_token sees each generated id.
  GenerateResult generate_ids(const std::vector<TokenId>& prompt_ids, const TokenCallback& on_token,
                              const GenerateOptions& options = {});

  int position() const;  ///< tokens in the KV cache
  int n_ctx() const;
  void reset();          ///< forget the conversation (position 0)
  /// Forgets the tokens from `position` on, keeping the ones before it (a shared prefix, such as
  /// a system prompt, need not be evaluated again). Throws kOutOfRange unless
  /// 0 <= position <= position().
  void rewind(int position);
  size_t kv_cache_bytes() const;  ///< memory of the KV cache for n_ctx positions
  size_t scratch_bytes() const;   ///< activation buffers
  std::string kernel_names() const;  ///< the kernels this session runs (for -v output)
  const Model& model() const;

  /// The LoRA adapters this session applies from its next eval on (empty: the base model).
  /// Adapters are shared and immutable; switching costs no reload of the model or adapters.
  /// Throws Error(kInvalidArgument) for an adapter loaded for another model shape.
  void set_adapters(std::vector<AdapterChoice> adapters);
  const std::vector<AdapterChoice>& adapters() const;

  /// The library's side of the session (opaque here; lib/ uses it, as Model::impl()).
  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  /// generate_ids without stop strings.
  GenerateResult generate_core(const std::vector<TokenId>& prompt_ids, const TokenCallback& on_token,
                               const GenerateOptions& options);
  std::unique_ptr<Impl> impl_;
};

/// One decode step for several sessions sharing one Model (each with its own KV cache, position
/// and adapters) in a single pass over the base weights: tokens[i] is evaluated by sessions[i].
/// (A program that schedules many sequences itself can use one Context, piquant/batch.hpp.)
/// Returns each session's logits (vocab_size floats, valid until its next eval). Runs on the
/// first session's threads. Throws without changing any session when a session is null or
/// repeated, the models differ, a context is full or a token is out of range.
std::vector<const float*> decode_batch(const std::vector<Session*>& sessions,
                                       const std::vector<TokenId>& tokens);

}  // namespace piquant
