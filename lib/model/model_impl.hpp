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

class Collective;

/// One rank's part of a model split across ranks (lib/dist/shard.hpp): its head, hidden and
/// classifier-row counts. The config stays the whole model's.
struct ShardInfo {
  int rank = 0;
  int n_ranks = 1;
  int n_heads = 0;     ///< query heads of this rank
  int n_kv_heads = 0;  ///< KV heads of this rank
  int hidden_dim = 0;  ///< FFN hidden columns of this rank
  int vocab0 = 0, vocab1 = 0;  ///< classifier rows [vocab0, vocab1)
  size_t copied_bytes = 0;     ///< weight bytes copied out of the file (the rest are views)
  std::string file;            ///< the file the views map ("" when everything was copied)
};

/// How RoPE pairs the dimensions of a head: adjacent (x[2i], x[2i+1]) as in GGUF and llama2.c,
/// or halves (x[i], x[i + d/2]) as in Hugging Face checkpoints.
enum class RopeLayout { kPairs, kHalves };

/// The container a model was loaded from (kMemory: built in memory: synthetic, demo, re-quantized
/// or sliced models, tests). Decisions that depend on it compare this, never the source text.
enum class ModelOrigin : uint8_t { kMemory, kLlama2c, kGguf, kPiq };

struct LayerWeights {
  Tensor attn_norm;           // [dim]
  Tensor wq, wk, wv, wo;      // [n_heads*hd, dim], [n_kv*hd, dim] x2, [dim, n_heads*hd]
  Tensor bq, bk, bv;          // biases (qwen2), f32 [rows]; empty when the model has none
  Tensor q_norm, k_norm;      // per-head RMSNorm weights [head_dim] (qwen3); empty when none
  Tensor ffn_norm;            // [dim]
  Tensor w_gate, w_down, w_up;  // [hidden, dim], [dim, hidden], [hidden, dim]
};

struct Model::Impl {
  ModelConfig config;
  RopeLayout rope_layout = RopeLayout::kPairs;
  std::optional<Tokenizer> tokenizer;
  ModelOrigin origin = ModelOrigin::kMemory;
  std::string source;  ///< for messages and describe(): "llama2.c checkpoint", "synthetic", ...
  std::string chat_template;  ///< Jinja text from the file, or ""
  std::vector<std::string> notices;  ///< one-line remarks from loading (format conversions)
  GenerationDefaults generation;     ///< sampling defaults the file ships (.piq), else unset
  size_t mapped_bytes = 0;           ///< weight bytes used in place from a file mapping (.piq)
  std::string path;                  ///< the file loaded ("" for a synthetic model)

  Tensor tok_embd;     // [vocab, dim], row-major (looked up by row)
  Tensor output_norm;  // [dim]
  Tensor output;       // [vocab, dim] in the kernels' layout; tok_embd's data when tied and f32
  std::vector<LayerWeights> layers;
  /// RoPE frequency per rotated pair (head_dim / 2): rope_theta, then rope scaling, then any
  /// per-frequency factors the file carries (GGUF rope_freqs.weight). Filled by finish_model.
  std::vector<float> rope_freqs;

  /// Set on a slice of a model split across ranks (tensor parallelism): the tensors hold only this
  /// rank's rows / columns, and the forward pass sums and gathers through `comm`.
  std::optional<ShardInfo> shard;
  std::shared_ptr<Collective> comm;

  /// Keeps mmaps and owned buffers alive for the tensors above.
  std::vector<std::shared_ptr<const void>> storage;
};

/// Checks that a config is internally consistent (positive sizes, heads divide dim, ...);
/// throws Error(kFormat) naming `source` and the field.
void validate_config(const ModelConfig& c, const std::string& source);

/// Completes a loaded model: checks every tensor's shape against the config (Error(kFormat)
/// naming the tensor, expected and found), and computes rope_freqs (freq_factors: optional
/// per-pair divisors, head_dim / 2 of them).
void finish_model(Model::Impl& m, const float* freq_factors = nullptr);

class LoadSlicer;
/// Model::load, with a `slicer` (tensor parallelism, lib/dist/load_slicer.hpp) that GGUF files
/// are read through: only a rank's slice of each tensor is loaded, and the model returned has
/// its `shard` set. Other formats ignore it (the model returned is whole: `shard` unset).
std::shared_ptr<const Model> load_model(const std::string& path, const LoadOptions& options,
                                        LoadSlicer* slicer);

/// True when every weight is f32 (the model can run through the plain reference forward).
bool all_f32(const Model::Impl& m);

}  // namespace piquant
