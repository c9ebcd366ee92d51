#pragma once
// A weight tensor as the forward pass sees it: rows x cols (rows = outputs, cols = inputs = the
// reduction dimension K), its element type, its layout and where its bytes are. Tensors never
// own memory: the Model keeps the mmaps and buffers they point into alive.
//
// Layouts: kRows is row-major (GGUF-style rows of blocks for the quantized types); kPacked is
// the matmul kernels' interleaved layout (kernels/common/pack.hpp, = the .piq on-disk layout).
// For f32 and f16 the two are the same bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/quant.hpp"

namespace piquant {

/// Element types: the kernels' WeightType itself (f32, f16, q8, q4, q4m, and GGUF's Q4_K, Q5_K,
/// Q6_K, Q5_0, Q5_1 blocks kept as the file stores them), so the two cannot disagree.
using DType = kernels::WeightType;
/// Every DType, in value order.
constexpr DType kAllDTypes[] = {DType::kF32,  DType::kF16,  DType::kQ8,  DType::kQ4,   DType::kQ4M,
                                DType::kQ4K, DType::kQ5K, DType::kQ6K, DType::kQ5_0, DType::kQ5_1};
static_assert(sizeof(kAllDTypes) / sizeof(kAllDTypes[0]) == kernels::kWeightTypeCount,
              "kAllDTypes lists every kernels::WeightType");
enum class TensorLayout : uint8_t { kRows, kPacked };

using kernels::block_values;  ///< values per block along a row (32, or 256 for the K-quants)
using kernels::is_quantized;
using kernels::to_string;

struct Tensor {
  std::string name;
  DType type = DType::kF32;
  TensorLayout layout = TensorLayout::kRows;
  int64_t rows = 0;  ///< output features (1 for a vector)
  int64_t cols = 0;  ///< input features (reduction dimension)
  const void* data = nullptr;

  bool empty() const { return data == nullptr; }
  size_t numel() const { return static_cast<size_t>(rows) * static_cast<size_t>(cols); }
  /// Bytes of the data in its layout (packing pads rows to the kernels' interleave).
  size_t bytes() const;
  const float* f32() const { return static_cast<const float*>(data); }
  /// True when the bytes are in the layout linear() reads.
  bool packed_for_kernels() const { return layout == TensorLayout::kPacked || !is_quantized(type); }
};

/// Row `r` of a row-major tensor as f32 (embedding lookup). Tensor must be kRows.
void tensor_row_f32(const Tensor& t, int64_t r, float* out);

}  // namespace piquant
