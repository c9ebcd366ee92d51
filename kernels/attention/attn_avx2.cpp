// attn_f32_{f32,f16,q8}_avx2: the xsimd attention core (attn_impl.hpp) on fma3<avx2>, with
// F16C / AVX2 tile converters. Built with -mavx2 -mfma -mf16c; x86-64 only.
#include <immintrin.h>

#include "attention/attn_impl.hpp"

namespace piquant::kernels {
namespace {

using Avx2 = xsimd::fma3<xsimd::avx2>;

struct LoadF16Avx2 {
  const float* operator()(const void* base, const float*, size_t t0, size_t nt, size_t hd,
                          float* buf) const {
    const uint16_t* src = static_cast<const uint16_t*>(base) + t0 * hd;
    const size_t n = nt * hd;  // a multiple of 32
    for (size_t i = 0; i < n; i += 16) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
      _mm256_storeu_ps(buf + i, _mm256_cvtph_ps(_mm256_castsi256_si128(h)));
      _mm256_storeu_ps(buf + i + 8, _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
    }
    return buf;
  }
};

struct LoadQ8Avx2 {
  const float* operator()(const void* base, const float* scales, size_t t0, size_t nt, size_t hd,
                          float* buf) const {
    const int8_t* src = static_cast<const int8_t*>(base) + t0 * hd;
    const float* d = scales + t0 * (hd / kKvQ8Block);
    const size_t nb = nt * hd / kKvQ8Block;
    for (size_t b = 0; b < nb; ++b) {
      const __m256 db = _mm256_set1_ps(d[b]);
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + b * 32));
      const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
      float* o = buf + b * 32;
      _mm256_storeu_ps(o, _mm256_mul_ps(db, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
      _mm256_storeu_ps(
          o + 8,
          _mm256_mul_ps(db, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
      _mm256_storeu_ps(o + 16, _mm256_mul_ps(db, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
      _mm256_storeu_ps(
          o + 24,
          _mm256_mul_ps(db, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
    }
    return buf;
  }
};

}  // namespace

void attn_f32_f32_avx2(const AttnArgs& a) { attn_simd<Avx2>(a, LoadF32{}); }
void attn_f32_f16_avx2(const AttnArgs& a) { attn_simd<Avx2>(a, LoadF16Avx2{}); }
void attn_f32_q8_avx2(const AttnArgs& a) { attn_simd<Avx2>(a, LoadQ8Avx2{}); }

}  // namespace piquant::kernels
