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

/// Element types; the values are kernels::WeightType's.
enum class DType : uint8_t { kF32 = 0, kF16 = 1, kQ8 = 2, kQ4 = 3, kQ4M = 4 };
enum class TensorLayout : uint8_t { kRows, kPacked };

const char* to_string(DType t);
inline kernels::WeightType to_weight_type(DType t) { return static_cast<kernels::WeightType>(t); }
inline bool is_quantized(DType t) { return t == DType::kQ8 || t == DType::kQ4 || t == DType::kQ4M; }

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
