#pragma once
// linear() for several weights over the same input: the q/k/v projections of a layer, or the
// gate and up projections of its feed-forward. When the weights share the type and K, the
// activations are quantized once and the rows of all outputs are split across the threads in
// one pass: one barrier instead of one per weight, which is most of the cost outside the
// kernels in a decode step. Results are the bytes of separate linear() calls.
#include <cstddef>

#include "model/linear.hpp"

namespace piquant {

/// One output of linear_multi(): y[t * y_stride + r] = sum_c W[r][c] * x[t * x_stride + c].
struct LinearOut {
  const LinearWeight* w;
  float* y;
  size_t y_stride;
};

/// Computes every output in `outs` from the same x (n_tokens rows). Weights of different
/// types or K go one linear() each. Throws Error(kInvalidArgument) as linear() does.
void linear_multi(const LinearOut* outs, size_t n_outs, const float* x, size_t n_tokens,
                  size_t x_stride, ThreadPool* pool, LinearScratch& scratch);

}  // namespace piquant
