#pragma once
// Re-quantizes a loaded model's weight matrices in memory (round to nearest, the kernels' own
// quantizers): piquant-run --quantize on f32 checkpoints, and tests comparing the quantized
// paths with the f32 reference on the same weights.
#include <memory>

#include "model/model_impl.hpp"

namespace piquant {

struct QuantizeModelOptions {
  DType type = DType::kQ8;             ///< for the layer matrices
  DType embedding_type = DType::kQ8;   ///< token embedding and classifier
};

/// A new Model::Impl whose matrices are quantized and packed; norms and biases stay f32.
/// Matrices whose K is not a multiple of 32 stay f32. The source model must be all-f32 or f16.
std::unique_ptr<Model::Impl> quantize_model(const Model::Impl& src, const QuantizeModelOptions& o);

/// Parses "f32", "f16", "q8", "q4", "q4m" (also "q8_0", "q4_0", "q4_1"); Error otherwise.
DType parse_dtype(const std::string& name);

}  // namespace piquant
