#pragma once
// Where the converter reads a model from: a Hugging Face directory, a GGUF file or a llama2.c
// checkpoint, all seen through one interface that yields the model's metadata and then its
// tensors one at a time (so a checkpoint larger than RAM converts in bounded memory).
//
// Tensor names are piquant's (GGUF-style: token_embd.weight, blk.N.attn_q.weight, ...). A
// weight matrix is [rows = outputs, cols = inputs]; a vector has rows = 1. Q/K rows come out
// in the RoPE layout given by rope_layout(): Hugging Face's halves are permuted to pairs on
// the way out (as llama.cpp's converter does); GGUF files keep whatever layout they have.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/quant.hpp"
#include "model/model_impl.hpp"

namespace piquant {

struct SourceTensor {
  std::string name;  ///< piquant name
  int64_t rows = 1;  ///< 1 for vectors
  int64_t cols = 0;
  std::string file_type;    ///< as stored in the source ("BF16", "Q4_0", "F32", ...)
  uint64_t file_bytes = 0;  ///< bytes in the source (progress)
  /// The type the source stores losslessly in a piquant type (GGUF Q8_0 -> q8, F16 -> f16, ...);
  /// empty when it has none (BF16, K-quants).
  std::optional<kernels::WeightType> native;
  /// The piquant type nearest to the stored one (BF16 -> f32, Q4_K -> q4m, Q6_K -> q8), for
  /// --type keep.
  kernels::WeightType nearest = kernels::WeightType::kF32;
};

class ModelSource {
 public:
  virtual ~ModelSource() = default;

  const ModelConfig& config() const { return config_; }
  RopeLayout rope_layout() const { return rope_layout_; }
  /// The tokenizer the source carries (or -z gave), if any.
  const std::optional<Tokenizer>& tokenizer() const { return tokenizer_; }
  const std::string& chat_template() const { return chat_template_; }
  const GenerationDefaults& generation() const { return generation_; }
  /// {"format": "huggingface", "path": ..., "architecture": ..., ...}
  const nlohmann::json& provenance() const { return provenance_; }
  /// Every tensor the model needs, in forward-pass order.
  const std::vector<SourceTensor>& tensors() const { return tensors_; }
  uint64_t total_bytes() const;
  /// Remarks for the user (unused tensors skipped, ...).
  const std::vector<std::string>& notices() const { return notices_; }

  /// Tensor i as row-major f32 (rows * cols floats), Q/K rows in rope_layout().
  virtual void read_f32(size_t i, float* out) const = 0;
  /// Tensor i's stored bytes when tensors()[i].native is set: row-major rows of that type
  /// (GGUF blocks are piquant's blocks), ready to copy without loss.
  virtual std::vector<uint8_t> read_native(size_t i) const;

  /// Replaces the tokenizer (-z). Error(kFormat) when it has more tokens than the vocabulary.
  void set_tokenizer(Tokenizer t, const std::string& path);

 protected:
  ModelConfig config_;
  RopeLayout rope_layout_ = RopeLayout::kPairs;
  std::optional<Tokenizer> tokenizer_;
  std::string chat_template_;
  GenerationDefaults generation_;
  nlohmann::json provenance_ = nlohmann::json::object();
  std::vector<SourceTensor> tensors_;
  std::vector<std::string> notices_;
};

/// Drops the pages of [p, p + n) of a read-only file mapping from this process's resident set
/// (madvise MADV_DONTNEED: they stay in the page cache and fault back in if touched again), so
/// a streaming conversion's RSS stays bounded. Only for file mappings (never heap memory).
void release_mapped_pages(const void* p, size_t n);

/// Opens INPUT: a directory (Hugging Face: config.json + safetensors), a .gguf file (by magic)
/// or a llama2.c checkpoint. tokenizer_path (-z) overrides / supplies the tokenizer (needed
/// for llama2.c checkpoints, which carry none).
std::unique_ptr<ModelSource> open_model_source(const std::string& input,
                                               const std::string& tokenizer_path = "");

/// A source over an in-memory model whose weights are f32 (or f16): llama2.c checkpoints and
/// tests. The Impl's tensors must stay valid while the source lives (it owns the Impl).
std::unique_ptr<ModelSource> model_impl_source(std::unique_ptr<Model::Impl> model,
                                               nlohmann::json provenance);

std::unique_ptr<ModelSource> open_hf_source(const std::string& dir);
std::unique_ptr<ModelSource> open_gguf_source(const std::string& path);

}  // namespace piquant
