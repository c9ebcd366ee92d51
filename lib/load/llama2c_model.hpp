#pragma once
// Models from llama2.c checkpoints (the container: lib/format/llama2c.hpp). The weights stay in
// the mapping: f32 row-major is the kernels' layout already.
#include <cstdint>
#include <memory>
#include <string>

#include "format/llama2c.hpp"
#include "model/model_impl.hpp"

namespace piquant {

class MappedFile;

/// Loads a llama2.c checkpoint; weights stay in the mmap. Every size is checked against the file.
std::unique_ptr<Model::Impl> load_llama2c(std::shared_ptr<const MappedFile> file);

/// Seeded random weights at `config`'s shape (normal(0, 0.02)-ish, norms near 1).
Llama2cWeights random_llama2c_weights(const ModelConfig& config, uint64_t seed);
/// Builds an in-memory Model::Impl that owns `w`'s data.
std::unique_ptr<Model::Impl> model_from_llama2c_weights(Llama2cWeights w, std::string source);

}  // namespace piquant
