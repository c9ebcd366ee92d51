#pragma once
// The converter's weight quantizers: the kernels' block formats (q8, q4, q4m; block 32), with a
// per-block scale search that minimizes the (importance-)weighted squared error instead of
// plain round-to-nearest absmax.
//
// For every block of 32 weights x_i with weights w_i (calibration importance of input channel
// i, or 1), the search starts from the round-to-nearest absmax block (GGUF's quantizer), then
// tries a grid of scales (q8 / q4: the extreme value mapped to a shrinking or growing fraction
// of the integer range; q4m: the [min, max] range clipped at either end), and for each grid
// point re-fits the scale (and q4m's minimum) by weighted least squares for the chosen
// integers, rounds them to fp16 as stored, re-rounds the integers, and keeps whichever block
// has the lowest sum_i w_i (x_i - dequant_i)^2. The absmax block is a candidate, so the
// search is never worse than it under the weighted error.
#include <cstddef>

#include "common/quant.hpp"
#include "common/quant_k.hpp"

namespace piquant {

class ThreadPool;

struct QuantizeOptions {
  bool search = true;                 ///< false: plain round-to-nearest absmax (the kernels')
  const float* importance = nullptr;  ///< per input column (cols values, >= 0); null: uniform
};

/// Quantizes a row-major f32 matrix into row-major rows of type t (row_bytes(t, cols) each;
/// f32 copies, f16 rounds to nearest even). cols % 32 == 0 for the block types. pool may be
/// null. Output does not depend on the thread count.
void quantize_matrix(kernels::WeightType t, const float* w, size_t rows, size_t cols,
                     const QuantizeOptions& options, void* dst, ThreadPool* pool);

/// Quantizes a row-major f32 matrix into row-major rows of GGUF K-quant / Q5_0 / Q5_1 blocks
/// (kernels/common/quant_k.hpp; options.search false: plain round to nearest). Throws
/// Error(kInvalidArgument) when cols is not a multiple of the type's block (256 for the K
/// types, 32 for Q5_0 / Q5_1) or a value is not finite. pool may be null; the output does not
/// depend on the thread count.
void quantize_matrix_kquant(kernels::KQuant t, const float* w, size_t rows, size_t cols,
                            const QuantizeOptions& options, void* dst, ThreadPool* pool);

/// sqrt(sum (w - deq)^2 / sum w^2) of a row-major quantized matrix against its f32 source
/// (0 when the source is all zeros).
double relative_rms_error(kernels::WeightType t, const float* w, const void* rows_q, size_t rows,
                          size_t cols);

/// relative_rms_error for row-major GGUF K-quant / Q5_0 / Q5_1 rows.
double relative_rms_error_kquant(kernels::KQuant t, const float* w, const void* rows_q,
                                 size_t rows, size_t cols);

}  // namespace piquant
