#pragma once
// Models from GGUF files: see gguf_model.cpp.
#include <memory>

#include "format/gguf.hpp"
#include "model/model_impl.hpp"

namespace piquant {

/// Builds a model from an open GGUF file (architectures llama, qwen2, qwen3, exaone). Throws
/// Error(kUnsupported) for other architectures or tensor types, Error(kFormat) naming the key
/// or tensor for missing or inconsistent data.
std::unique_ptr<Model::Impl> load_gguf_model(std::shared_ptr<const GgufFile> file);

}  // namespace piquant
