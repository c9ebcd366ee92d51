// The xsimd float ops on sse4_2, for x86-64 CPUs without AVX2. Built with -msse4.2. No F16C
// is assumed, so the f16 row conversions are the scalar ones.
#include "attention/kv_format.hpp"
#include "vector/vector_impl.hpp"

namespace piquant::kernels {
namespace {

using Ops = VectorOps<xsimd::sse4_2>;

void cvt_f16_f32_sse4_2(uint16_t* dst, const float* src, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f32_to_f16_scalar(src[i]);
}
void cvt_f32_f16_sse4_2(float* dst, const uint16_t* src, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32_scalar(src[i]);
}

}  // namespace

const VectorKernels kVectorSse42 = {
    "sse4_2",    CpuFeature::kSse42, Ops::rmsnorm, Ops::rope_pairs,    Ops::rope_halves,
    Ops::swiglu, Ops::softmax,       Ops::add,     cvt_f16_f32_sse4_2, cvt_f32_f16_sse4_2,
};

}  // namespace piquant::kernels
