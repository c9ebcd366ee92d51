// attn_f32_{f32,f16,q8}_avx512: the xsimd attention core (attn_impl.hpp) on avx512bw (16 floats
// per vector, so a 32-position tile is two score vectors), with AVX-512F tile converters.
// Built with -mavx512f -mavx512bw -mavx512vl -mavx512dq (+ the AVX2 flags); x86-64 only.
// Gated on CpuFeature::kAvx512Vnni, the AVX-512 tier cpu.hpp knows (it implies F/BW/VL, and
// every VNNI CPU has DQ).
#include <immintrin.h>

#include "attention/attn_impl.hpp"

namespace piquant::kernels {
namespace {

using Avx512 = xsimd::avx512bw;

}  // namespace

namespace {

// xsimd 8.1's haddp for avx512 returns the row sums with lanes 2-5 and 10-13 permuted (sums of
// rows 4,5,2,3 in lanes 2..5), so fold each row to 256 bits and use the AVX2 haddp, which is right.
template <>
struct HsumRows<Avx512> {
  static xsimd::batch<float, Avx512> run(const xsimd::batch<float, Avx512>* rows) {
    using H = xsimd::batch<float, xsimd::fma3<xsimd::avx2>>;
    H lo[8], hi[8];
    for (size_t r = 0; r < 8; ++r) {
      const __m512 a = rows[r], b = rows[r + 8];
      lo[r] = H(_mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1)));
      hi[r] = H(_mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1)));
    }
    const __m256 l = xsimd::haddp(lo), h = xsimd::haddp(hi);
    return xsimd::batch<float, Avx512>(_mm512_insertf32x8(_mm512_castps256_ps512(l), h, 1));
  }
};

struct LoadF16Avx512 {
  const float* operator()(const void* base, const float*, size_t t0, size_t nt, size_t hd,
                          float* buf) const {
    const uint16_t* src = static_cast<const uint16_t*>(base) + t0 * hd;
    const size_t n = nt * hd;  // a multiple of 32
    for (size_t i = 0; i < n; i += 16) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
      _mm512_storeu_ps(buf + i, _mm512_cvtph_ps(h));
    }
    return buf;
  }
};

struct LoadQ8Avx512 {
  const float* operator()(const void* base, const float* scales, size_t t0, size_t nt, size_t hd,
                          float* buf) const {
    const int8_t* src = static_cast<const int8_t*>(base) + t0 * hd;
    const float* d = scales + t0 * (hd / kKvQ8Block);
    const size_t nb = nt * hd / kKvQ8Block;
    for (size_t b = 0; b < nb; ++b) {
      const __m512 db = _mm512_set1_ps(d[b]);
      const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + b * 32));
      const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + b * 32 + 16));
      _mm512_storeu_ps(buf + b * 32,
                       _mm512_mul_ps(db, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo))));
      _mm512_storeu_ps(buf + b * 32 + 16,
                       _mm512_mul_ps(db, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi))));
    }
    return buf;
  }
};

}  // namespace

void attn_f32_f32_avx512(const AttnArgs& a) { attn_simd<Avx512>(a, LoadF32{}); }
void attn_f32_f16_avx512(const AttnArgs& a) { attn_simd<Avx512>(a, LoadF16Avx512{}); }
void attn_f32_q8_avx512(const AttnArgs& a) { attn_simd<Avx512>(a, LoadQ8Avx512{}); }

}  // namespace piquant::kernels
