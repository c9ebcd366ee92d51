#include "model/tensor.hpp"

#include <algorithm>

#include "common/pack.hpp"
#include "piquant/error.hpp"

namespace piquant {

size_t Tensor::bytes() const {
  const auto wt = type;
  const size_t r = static_cast<size_t>(rows), c = static_cast<size_t>(cols);
  if (!is_quantized(type)) return r * c * (type == DType::kF32 ? 4 : 2);
  return layout == TensorLayout::kPacked ? kernels::packed_size(wt, r, c)
                                         : r * kernels::row_bytes(wt, c);
}

void tensor_row_f32(const Tensor& t, int64_t r, float* out) {
  if (t.layout != TensorLayout::kRows || r < 0 || r >= t.rows) {
    throw Error(ErrorCode::kInternal, t.name + ": row lookup needs a row-major tensor and a valid row");
  }
  const size_t c = static_cast<size_t>(t.cols);
  if (t.type == DType::kF32) {
    const float* src = t.f32() + static_cast<size_t>(r) * c;
    std::copy(src, src + c, out);
    return;
  }
  const auto wt = t.type;
  const size_t rb = t.type == DType::kF16 ? c * 2 : kernels::row_bytes(wt, c);
  kernels::dequantize_rows(wt, static_cast<const uint8_t*>(t.data) + static_cast<size_t>(r) * rb,
                           1, c, out);
}

}  // namespace piquant
