#pragma once
// Models from GGUF files: see gguf_model.cpp.
#include <memory>

#include "format/gguf.hpp"
#include "model/model_impl.hpp"

namespace piquant {

class LoadSlicer;

/// What a GGUF file's metadata says about the model (no tensor data is read): the config
/// (vocab_size from token_embd.weight's shape) and how its Q/K rows are laid out for RoPE.
/// Same errors as load_gguf_model for unknown architectures and bad metadata.
struct GgufModelInfo {
  ModelConfig config;
  RopeLayout rope_layout = RopeLayout::kPairs;
};
GgufModelInfo read_gguf_model_info(const GgufFile& file);

/// How load_gguf_model keeps a tensor of ggml type `ggml_type` (a matrix; vectors are f32):
/// the piquant type ("q4_k", "q8", "f16", ...) and whether that is a re-quantization
/// (*converted, e.g. Q8_K -> q8) or a widening (BF16 -> f32). nullptr for a type piquant
/// refuses. For piquant-inspect.
const char* gguf_piquant_type(uint32_t ggml_type, bool* converted);

/// Builds a model from an open GGUF file (architectures llama, qwen2, qwen3, exaone). Throws
/// Error(kUnsupported) for other architectures or tensor types, Error(kFormat) naming the key
/// or tensor for missing or inconsistent data. With a `slicer` (tensor parallelism,
/// lib/dist/load_slicer.hpp) only the slice of each tensor it returns is read and kept.
std::unique_ptr<Model::Impl> load_gguf_model(std::shared_ptr<const GgufFile> file,
                                             LoadSlicer* slicer = nullptr);

}  // namespace piquant
