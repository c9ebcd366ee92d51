#pragma once
/// \file piquant/model.hpp
/// A loaded model: configuration, weights (mmapped where the file allows), tokenizer.
/// Immutable after load; share one Model between any number of Sessions and threads.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "piquant/tokenizer.hpp"

namespace piquant {

/// RoPE frequency scaling for long contexts. kNone is plain RoPE; kLinear divides every
/// frequency by factor; kLlama3 is Llama 3.1's piecewise scaling: wavelengths shorter than
/// original_max_position / high_freq_factor keep their frequency, longer than
/// original_max_position / low_freq_factor are divided by factor, smoothly blended between.
enum class RopeScalingType { kNone, kLinear, kLlama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position = 0; ///< the context length before scaling (llama3: 8192)
};

/// The architecture as piquant runs it.
struct ModelConfig {
  std::string arch = "llama";  ///< llama, qwen2, qwen3, exaone
  int dim = 0;                 ///< embedding width
  int hidden_dim = 0;          ///< FFN width
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;          ///< < n_heads: grouped-query attention
  int head_dim = 0;
  int vocab_size = 0;
  int max_seq_len = 0;         ///< context length the model was trained for
  float rope_theta = 10000.0f;
  float norm_eps = 1e-5f;
  bool tied_classifier = true; ///< classifier shares the token embedding
  RopeScaling rope_scaling;    ///< none unless rope_scaling.type says otherwise
  bool qkv_bias = false;       ///< q/k/v projections have biases (qwen2)
  bool qk_norm = false;        ///< per-head RMSNorm of q and k before RoPE (qwen3)
  std::string activation = "silu";  ///< FFN gate activation; every supported architecture: silu
  // Notes: the RoPE layout (adjacent pairs vs halves) is a property of how the Q/K weight rows
  // are stored, not of the architecture: files record it next to the weights (.piq
  // "rope_layout"). BOS/EOS ids and whether to add BOS belong to the tokenizer.
};

/// Sampling defaults a model ships with (Hugging Face generation_config.json). A field left
/// unset means the model has no preference and the caller's own default applies.
struct GenerationDefaults {
  bool has_temperature = false;
  float temperature = 1.0f;
  bool has_top_p = false;
  float top_p = 1.0f;
  bool has_top_k = false;
  int top_k = 0;
  bool has_min_p = false;
  float min_p = 0.0f;
  bool has_repetition_penalty = false;
  float repetition_penalty = 1.0f;
  bool do_sample = true;              ///< false: the model's authors recommend greedy decoding
  int max_new_tokens = 0;             ///< 0: unset
  std::vector<TokenId> eos_token_ids; ///< extra stop tokens (e.g. Llama 3's <|eot_id|>)
};

struct LoadOptions {
  /// Tokenizer file for formats that do not carry one (llama2.c checkpoints). Empty: none.
  std::string tokenizer_path;
};

/// A seeded random model, so programs and tests can run without a model file.
struct SyntheticModelOptions {
  ModelConfig config;  ///< zero fields take small defaults (dim 288, 6 layers, ... as llama2.c's 15M)
  uint64_t seed = 1;
  /// The demo model piquant-run runs without -m: an untied classifier built so that greedy and
  /// sampled text is varied and made of the demo tokenizer's readable pieces (letters, words,
  /// punctuation) rather than one repeated token. Still random weights: the text is not language.
  bool demo_text = false;
};

class Model {
 public:
  /// Loads a model file: a piquant .piq file (mmapped, weights used in place), a GGUF file, or
  /// a llama2.c checkpoint (tokenizer via options.tokenizer_path); recognised by content.
  /// Throws piquant::Error naming the file, the field or tensor, and what is wrong.
  static std::shared_ptr<const Model> load(const std::string& path, const LoadOptions& options = {});
  /// A seeded random llama model with a byte-level demo tokenizer.
  static std::shared_ptr<const Model> synthetic(const SyntheticModelOptions& options = {});

  const ModelConfig& config() const;
  /// The model's tokenizer; throws if the model was loaded without one.
  const Tokenizer& tokenizer() const;
  bool has_tokenizer() const;
  /// The chat template the model file carries (Jinja text, as in GGUF / tokenizer_config.json);
  /// empty when it has none. See ChatTemplate::detect.
  const std::string& chat_template() const;
  /// One-line remarks from loading, e.g. "12 Q6_K tensor(s) converted to q8 at load".
  const std::vector<std::string>& notices() const;
  /// Sampling defaults the model file ships (a .piq copy of generation_config.json); every
  /// field unset when the file has none.
  const GenerationDefaults& generation_defaults() const;
  /// Bytes of weights used in place from the memory-mapped file (zero copy; .piq files);
  /// 0 when the loader copied or repacked them.
  size_t mapped_bytes() const;
  /// Bytes of weight data the forward pass reads per token.
  size_t weight_bytes() const;
  /// One line: "llama 4L dim 64 heads 4/4 vocab 512 f32 (llama2.c checkpoint)".
  std::string describe() const;

  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace piquant
