// The xsimd float ops on avx512bw, plus AVX-512F row conversions. Built with -mavx512f
// -mavx512bw -mavx512vl -mavx512dq + the AVX2 flags; gated on CpuFeature::kAvx512Vnni (the
// AVX-512 tier cpu.hpp knows).
#include <immintrin.h>

#include "attention/kv_format.hpp"
#include "vector/vector_impl.hpp"

namespace piquant::kernels {
namespace {

using Ops = VectorOps<xsimd::avx512bw>;

void cvt_f16_f32_avx512(uint16_t* dst, const float* src, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = f32_to_f16_scalar(src[i]);
}

void cvt_f32_f16_avx512(float* dst, const uint16_t* src, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
  }
  for (; i < n; ++i) dst[i] = f16_to_f32_scalar(src[i]);
}

}  // namespace

const VectorKernels kVectorAvx512 = {
    "avx512",           CpuFeature::kAvx512Vnni,
    Ops::rmsnorm,       Ops::rope_pairs,
    Ops::rope_halves,   Ops::swiglu,
    Ops::softmax,       Ops::add,
    cvt_f16_f32_avx512, cvt_f32_f16_avx512,
};

}  // namespace piquant::kernels
