// quant_q8a_f32_avx512vnni: f32 -> BlockQ8A, two zmm per block (AVX-512F/BW). Bit-identical
// to quant_q8a_f32_ref (same float ops, cvtps2dq rounds half to even).
#include <immintrin.h>

#include "common/quant.hpp"

namespace piquant::kernels {

void quant_q8a_f32_avx512vnni(const float* x, BlockQ8A* y, size_t k) {
  const __m512i lim = _mm512_set1_epi32(127), nlim = _mm512_set1_epi32(-127);
  for (size_t b = 0; b < k / kBlock; ++b, x += kBlock) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m512 vid = _mm512_set1_ps(id);
    __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
    __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
    q0 = _mm512_max_epi32(nlim, _mm512_min_epi32(lim, q0));
    q1 = _mm512_max_epi32(nlim, _mm512_min_epi32(lim, q1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs), _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16), _mm512_cvtepi32_epi8(q1));
    y[b].d = d;
    y[b].s = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
  }
}

}  // namespace piquant::kernels
