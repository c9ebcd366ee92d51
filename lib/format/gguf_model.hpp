#pragma once
// Models from GGUF files: see gguf_model.cpp.
#include <memory>

#include "format/gguf.hpp"
#include "model/model_impl.hpp"

namespace piquant {

/// What a GGUF file's metadata says about the model (no tensor data is read): the config
/// (vocab_size from token_embd.weight's shape) and how its Q/K rows are laid out for RoPE.
/// Same errors as load_gguf_model for unknown architectures and bad metadata.
struct GgufModelInfo {
  ModelConfig config;
  RopeLayout rope_layout = RopeLayout::kPairs;
};
GgufModelInfo read_gguf_model_info(const GgufFile& file);

/// Builds a model from an open GGUF file (architectures llama, qwen2, qwen3, exaone). Throws
/// Error(kUnsupported) for other architectures or tensor types, Error(kFormat) naming the key
/// or tensor for missing or inconsistent data.
std::unique_ptr<Model::Impl> load_gguf_model(std::shared_ptr<const GgufFile> file);

}  // namespace piquant
