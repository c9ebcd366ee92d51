#pragma once
/// \file piquant/model.hpp
/// A loaded model: configuration, weights (mmapped where the file allows), tokenizer.
/// Immutable after load; share one Model between any number of Sessions and threads.
#include <cstdint>
#include <memory>
#include <string>

#include "piquant/tokenizer.hpp"

namespace piquant {

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
};

struct LoadOptions {
  /// Tokenizer file for formats that do not carry one (llama2.c checkpoints). Empty: none.
  std::string tokenizer_path;
};

/// A seeded random model, so programs and tests can run without a model file.
struct SyntheticModelOptions {
  ModelConfig config;  ///< zero fields take small defaults (dim 288, 6 layers, ... as llama2.c's 15M)
  uint64_t seed = 1;
};

class Model {
 public:
  /// Loads a model file: a llama2.c checkpoint (tokenizer via options.tokenizer_path), ...
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
