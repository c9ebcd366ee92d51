#pragma once
// y = W x for every token: what the forward pass calls for each weight matrix. W is a packed
// quantized (or f32/f16) matrix (kernels/common/pack.hpp: the .piq on-disk layout) held by a
// LinearWeight: the weight checked once, when the handle is made (at load: Forward makes one per
// projection), with the GEMV and GEMM kernels chosen for it; linear() re-checks nothing of the
// weight. x holds n_tokens rows of f32 activations. Activations are quantized once (q8 blocks),
// then output rows are split across the thread pool in multiples of linear_chunk_rows() (two row
// groups of the packing's interleave for quantized types), and each range runs the handle's GEMV
// (n_tokens == 1) or GEMM kernel. Results are bit-identical for any thread count.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/aligned.hpp"
#include "common/quant.hpp"

namespace piquant {
namespace kernels {
struct GemmArgs;
struct GemmKernel;
}  // namespace kernels

class ThreadPool;
using kernels::WeightType;

/// A weight matrix as the kernels read it: rows = outputs, cols = inputs (K, % 32 == 0).
struct QuantWeight {
  WeightType type = WeightType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* packed = nullptr;  ///< packed_bytes() bytes, not owned
  size_t packed_bytes() const;
};

/// A QuantWeight that owns its packed bytes (built by the helpers below), 64-byte aligned.
struct OwnedQuantWeight {
  QuantWeight weight;
  kernels::AlignedBytes storage;
  OwnedQuantWeight() = default;
  OwnedQuantWeight(OwnedQuantWeight&&) = default;
  OwnedQuantWeight& operator=(OwnedQuantWeight&&) = default;
};

/// Quantizes row-major f32 weights (rows x cols) to `type` (round to nearest, as GGUF's
/// reference quantizers) and packs them. Throws Error(kInvalidArgument) if cols % 32 != 0 or
/// a size is not positive.
OwnedQuantWeight quantize_weight(WeightType type, const float* w, int64_t rows, int64_t cols);
/// Packs row-major GGUF-style rows (Q8_0 / Q4_0 / Q4_1 blocks, or f32 / f16 values).
OwnedQuantWeight pack_weight(WeightType type, const void* rows_data, int64_t rows, int64_t cols);
/// Throws Error(kInvalidArgument) naming `what` when w is not usable by linear().
void validate_weight(const QuantWeight& w, const std::string& what);

/// A weight checked once, with its kernels: what linear() and linear_multi() run. Made at load
/// (one per projection, Forward's constructor); the per-call work is the product only.
class LinearWeight {
 public:
  LinearWeight() = default;  ///< empty: linear() refuses it
  /// Checks w (validate_weight(w, what): Error(kInvalidArgument)) and PIQUANT_ISA
  /// (check_kernel_isa(): Error(kUnsupported)), then chooses its GEMV and GEMM kernels (the GEMM
  /// kernel holds the small-batch path of 2-3 tokens where one exists). w.packed is not owned.
  explicit LinearWeight(const QuantWeight& w, const std::string& what = "linear");
  bool empty() const { return gemv_ == nullptr; }
  const QuantWeight& weight() const { return w_; }
  /// The kernel for n_tokens rows: the GEMV for one, the GEMM for more. Not empty().
  const kernels::GemmKernel& kernel(size_t n_tokens) const { return n_tokens == 1 ? *gemv_ : *gemm_; }

 private:
  QuantWeight w_;
  const kernels::GemmKernel* gemv_ = nullptr;
  const kernels::GemmKernel* gemm_ = nullptr;
};

/// Reusable buffers for linear() (quantized activations); one per thread that calls linear().
struct LinearScratch {
  std::vector<uint8_t> act;
};

/// y[t * y_stride + r] = sum_c W[r][c] * x[t * x_stride + c] for t < n_tokens, r < rows.
/// pool may be null (single thread). Throws Error(kInvalidArgument) for an empty handle, a null
/// x or y, or strides shorter than the rows.
void linear(const LinearWeight& w, const float* x, size_t n_tokens, size_t x_stride, float* y,
            size_t y_stride, ThreadPool* pool, LinearScratch& scratch);

/// For linear() and linear_multi(): throws Error(kInvalidArgument) for a null x or y or strides
/// shorter than the rows (k inputs, m outputs) when n_tokens > 1.
void check_linear_io(const float* x, const float* y, size_t n_tokens, size_t x_stride,
                     size_t y_stride, size_t k, size_t m);
/// For linear() and linear_multi(): sets args.act / act_stride for `kern`, quantizing the
/// n_tokens rows of x (k inputs each) to q8 blocks in scratch first when the kernel reads
/// those (across the pool for 4 or more tokens).
void set_activations(const kernels::GemmKernel& kern, const float* x, size_t n_tokens,
                     size_t x_stride, size_t k, ThreadPool* pool, LinearScratch& scratch,
                     kernels::GemmArgs& args);
/// Row alignment of the pool's chunks for weights of `type`: two row groups for the quantized
/// types (the x86 kernels' 8-row tiles), so no chunk starts or ends inside a tile.
size_t linear_chunk_rows(WeightType type);

/// Throws Error(kUnsupported) when PIQUANT_ISA asks for a kernel path this CPU lacks or names
/// an unknown level: forcing a path must never fall back silently. LinearWeight's constructor
/// calls it (so making a handle, hence loading a model for a forward pass, refuses).
void check_kernel_isa();

/// The kernels linear() uses on this CPU, e.g. for piquant-run -v (checks PIQUANT_ISA too).
std::string linear_kernel_names();

}  // namespace piquant
