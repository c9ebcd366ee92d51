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

/// Element types; the values are kernels::WeightType's (q4_k..q5_1: GGUF's Q4_K, Q5_K, Q6_K,
/// Q5_0, Q5_1 blocks, kept as the file stores them).
enum class DType : uint8_t {
  kF32 = 0,
  kF16 = 1,
  kQ8 = 2,
  kQ4 = 3,
  kQ4M = 4,
  kQ4K = 5,
  kQ5K = 6,
  kQ6K = 7,
  kQ5_0 = 8,
  kQ5_1 = 9,
};
/// Every DType, in value order.
constexpr DType kAllDTypes[] = {DType::kF32,  DType::kF16,  DType::kQ8,  DType::kQ4,   DType::kQ4M,
                                DType::kQ4K, DType::kQ5K, DType::kQ6K, DType::kQ5_0, DType::kQ5_1};
static_assert(sizeof(kAllDTypes) / sizeof(kAllDTypes[0]) == kernels::kWeightTypeCount,
              "DType mirrors kernels::WeightType");
enum class TensorLayout : uint8_t { kRows, kPacked };

const char* to_string(DType t);
inline kernels::WeightType to_weight_type(DType t) { return static_cast<kernels::WeightType>(t); }
inline bool is_quantized(DType t) { return t != DType::kF32 && t != DType::kF16; }
/// Values per block of t along a row (32, or 256 for the K-quants).
inline size_t block_values(DType t) { return kernels::block_values(to_weight_type(t)); }

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
