#pragma once
// What a loaded Model holds: config, tensors and the storage they point into.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/tensor.hpp"
#include "piquant/model.hpp"
#include "piquant/tokenizer.hpp"

namespace piquant {

/// How RoPE pairs the dimensions of a head: adjacent (x[2i], x[2i+1]) as in GGUF and llama2.c,
/// or halves (x[i], x[i + d/2]) as in Hugging Face checkpoints.
enum class RopeLayout { kPairs, kHalves };

struct LayerWeights {
  Tensor attn_norm;           // [dim]
  Tensor wq, wk, wv, wo;      // [n_heads*hd, dim], [n_kv*hd, dim] x2, [dim, n_heads*hd]
  Tensor ffn_norm;            // [dim]
  Tensor w_gate, w_down, w_up;  // [hidden, dim], [dim, hidden], [hidden, dim]
};

struct Model::Impl {
  ModelConfig config;
  RopeLayout rope_layout = RopeLayout::kPairs;
  std::optional<Tokenizer> tokenizer;
  std::string source;  ///< "llama2.c checkpoint", "synthetic", ...
  std::string chat_template;  ///< Jinja text from the file, or ""

  Tensor tok_embd;     // [vocab, dim]
  Tensor output_norm;  // [dim]
  Tensor output;       // [vocab, dim]; same data as tok_embd when tied
  std::vector<LayerWeights> layers;

  /// Keeps mmaps and owned buffers alive for the tensors above.
  std::vector<std::shared_ptr<const void>> storage;
};

/// Checks that a config is internally consistent (positive sizes, heads divide dim, ...);
/// throws Error(kFormat) naming `source` and the field.
void validate_config(const ModelConfig& c, const std::string& source);

}  // namespace piquant
