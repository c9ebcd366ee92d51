// The xsimd float ops on fma3<avx2>, plus F16C row conversions. Built with -mavx2 -mfma -mf16c.
#include <immintrin.h>

#include "attention/kv_format.hpp"
#include "vector/vector_impl.hpp"

namespace piquant::kernels {
namespace {

using Ops = VectorOps<xsimd::fma3<xsimd::avx2>>;

void cvt_f16_f32_avx2(uint16_t* dst, const float* src, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = f32_to_f16_scalar(src[i]);
}

void cvt_f32_f16_avx2(float* dst, const uint16_t* src, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) dst[i] = f16_to_f32_scalar(src[i]);
}

}  // namespace

const VectorKernels kVectorAvx2 = {
    "avx2",      CpuFeature::kAvx2, Ops::rmsnorm, Ops::rope_pairs,  Ops::rope_halves,
    Ops::swiglu, Ops::softmax,      Ops::add,     cvt_f16_f32_avx2, cvt_f32_f16_avx2,
};

}  // namespace piquant::kernels
