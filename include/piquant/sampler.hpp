#pragma once
/// \file piquant/sampler.hpp
/// Next-token choice from logits: greedy, temperature, top-k, top-p, min-p, penalties, seed.
#include <cstdint>
#include <vector>

#include "piquant/tokenizer.hpp"

namespace piquant {

/// Defaults follow llama.cpp's. temperature <= 0 means greedy (argmax).
struct SamplerOptions {
  float temperature = 0.8f;
  int top_k = 40;              ///< <= 0: off
  float top_p = 0.95f;         ///< >= 1: off
  float min_p = 0.05f;         ///< <= 0: off
  float repeat_penalty = 1.0f; ///< 1: off (llama.cpp's repeat penalty over the last repeat_last_n)
  int repeat_last_n = 64;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0xC0FFEE;    ///< same seed, same logits -> same tokens
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& options = {});
  /// Chooses a token from `logits` (n_vocab values; modified in place by penalties and scaling).
  TokenId sample(float* logits, size_t n_vocab);
  /// Records a token in the history the penalties look at (sample() does this for its choice;
  /// call it for prompt tokens).
  void accept(TokenId id);
  void reset();
  const SamplerOptions& options() const { return options_; }

 private:
  SamplerOptions options_;
  uint64_t state_;
  std::vector<TokenId> history_;
  std::vector<std::pair<float, TokenId>> candidates_;
  float next_uniform();
};

/// Index of the largest logit (first on ties).
TokenId argmax(const float* logits, size_t n);

}  // namespace piquant
