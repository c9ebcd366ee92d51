// GEMV and GEMM over packed q8 / q4 / q4m weights with AVX2 (+FMA, F16C), and f32/f16 GEMV.
//
// Packed group block (common/pack.hpp) read as two ymm per half-block: rows 0,1 and rows 2,3.
//     q4:  [d0..d3][ r0 qs | r1 qs ][ r2 qs | r3 qs ]     lo = q & 15 (k 0..15), hi = q >> 4
//     q8:  [d0..d3][ r0 k0:16 | r1 ][ r2 | r3 ][ r0 k16:32 | r1 ][ r2 | r3 ]
// The activation halves are broadcast to both 128-bit lanes. q4/q4m: vpmaddubsw (u8 nibble x
// s8, pairs fit int16: 2*15*127), lo + hi added in int16 (<= 7620), vpmaddwd with ones ->
// 4 int32 lanes per row; q4's -8 offset is the start value -2*s per lane. q8 uses the sign
// trick maddubs(|w|, sign(a, w)) (pairs <= 2*128*127 = 32512, no saturation), lo and hi
// widened separately. Tile: 4 rows x NT tokens (NT = 4 for GEMM, 1 for GEMV), one float
// accumulator pair (rows 0,1 / rows 2,3) per token; GEMV and GEMM give identical bits.
#include <immintrin.h>

#include "common/pack.hpp"
#include "matmul/matmul.hpp"

namespace piquant::kernels {
namespace {

template <WeightType T>
constexpr size_t kGroupBytes = kRowInterleave * sizeof(BlockQ4);
template <>
constexpr size_t kGroupBytes<WeightType::kQ8> = kRowInterleave * sizeof(BlockQ8);
template <>
constexpr size_t kGroupBytes<WeightType::kQ4M> = kRowInterleave * sizeof(BlockQ4M);

inline __m256i loadu256(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

template <WeightType T, int NT>
struct Tile {
  __m256 acc01[NT], acc23[NT];
  __m128 macc[NT];

  inline void step(const uint8_t* __restrict blk, const BlockQ8A* const* __restrict act, size_t b) {
    const __m128 d4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk)));
    const __m256 d8 = _mm256_castps128_ps256(d4);
    const __m256 d01 = _mm256_permutevar8x32_ps(d8, _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
    const __m256 d23 = _mm256_permutevar8x32_ps(d8, _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3));
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i lo01, hi01, lo23, hi23;
    if (T == WeightType::kQ8) {
      lo01 = loadu256(blk + 8);
      lo23 = loadu256(blk + 40);
      hi01 = loadu256(blk + 72);
      hi23 = loadu256(blk + 104);
    } else {
      const __m256i mask = _mm256_set1_epi8(0x0F);
      const size_t off = T == WeightType::kQ4M ? 16 : 8;
      const __m256i q01 = loadu256(blk + off), q23 = loadu256(blk + off + 32);
      lo01 = _mm256_and_si256(q01, mask);
      hi01 = _mm256_and_si256(_mm256_srli_epi16(q01, 4), mask);
      lo23 = _mm256_and_si256(q23, mask);
      hi23 = _mm256_and_si256(_mm256_srli_epi16(q23, 4), mask);
    }
    __m128 m4 = _mm_setzero_ps();
    if (T == WeightType::kQ4M) {
      m4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 8)));
    }
    for (int t = 0; t < NT; ++t) {
      const BlockQ8A* a = act[t] + b;
      const __m256i alo = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a->qs)));
      const __m256i ahi = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a->qs + 16)));
      __m256i i01, i23;
      if (T == WeightType::kQ8) {
        auto dot = [&](__m256i w, __m256i x) {
          return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)), ones);
        };
        i01 = _mm256_add_epi32(dot(lo01, alo), dot(hi01, ahi));
        i23 = _mm256_add_epi32(dot(lo23, alo), dot(hi23, ahi));
      } else {
        i01 = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo01, alo), _mm256_maddubs_epi16(hi01, ahi)), ones);
        i23 = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo23, alo), _mm256_maddubs_epi16(hi23, ahi)), ones);
        if (T == WeightType::kQ4) {
          const __m256i bias = _mm256_set1_epi32(-2 * a->s);
          i01 = _mm256_add_epi32(i01, bias);
          i23 = _mm256_add_epi32(i23, bias);
        }
      }
      const __m256 da = _mm256_set1_ps(a->d);
      acc01[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i01), _mm256_mul_ps(d01, da), acc01[t]);
      acc23[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i23), _mm256_mul_ps(d23, da), acc23[t]);
      if (T == WeightType::kQ4M) {
        macc[t] = _mm_fmadd_ps(m4, _mm_set1_ps(a->d * static_cast<float>(a->s)), macc[t]);
      }
    }
  }

  inline void run(const uint8_t* __restrict w, size_t nb, const BlockQ8A* const* act,
                  float* const* out, size_t row, size_t m0, size_t m1) {
    for (int t = 0; t < NT; ++t) {
      acc01[t] = acc23[t] = _mm256_setzero_ps();
      macc[t] = _mm_setzero_ps();
    }
    for (size_t b = 0; b < nb; ++b) step(w + b * kGroupBytes<T>, act, b);
    for (int t = 0; t < NT; ++t) {
      // acc01 = [r0 x4 | r1 x4], acc23 = [r2 x4 | r3 x4] -> [r0 r1 r2 r3]
      const __m256 h = _mm256_hadd_ps(acc01[t], acc23[t]);  // [r0 r0 r2 r2 | r1 r1 r3 r3]
      const __m256 h2 = _mm256_hadd_ps(h, h);                // [r0 r2 r0 r2 | r1 r3 r1 r3]
      __m128 y = _mm_unpacklo_ps(_mm256_castps256_ps128(h2), _mm256_extractf128_ps(h2, 1));
      if (T == WeightType::kQ4M) y = _mm_add_ps(y, macc[t]);
      alignas(16) float tmp[4];
      _mm_store_ps(tmp, y);
      for (size_t r = 0; r < 4; ++r) {
        if (row + r >= m0 && row + r < m1) out[t][row + r] = tmp[r];
      }
    }
  }
};

template <WeightType T, int NT>
inline void tile_rows(const GemmArgs& a, size_t n) {
  const BlockQ8A* act[NT];
  float* out[NT];
  for (int t = 0; t < NT; ++t) {
    act[t] = reinterpret_cast<const BlockQ8A*>(static_cast<const char*>(a.act) + (n + t) * a.act_stride);
    out[t] = a.dst + (n + t) * a.dst_stride;
  }
  const size_t nb = a.k / kBlock;
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  Tile<T, NT> tile;
  for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += kRowInterleave) {
    tile.run(wt + row / kRowInterleave * nb * kGroupBytes<T>, nb, act, out, row, a.m0, a.m1);
  }
}

template <WeightType T>
void gemv(const GemmArgs& a) {
  for (size_t n = a.n0; n < a.n1; ++n) tile_rows<T, 1>(a, n);
}

template <WeightType T>
void gemm(const GemmArgs& a) {
  for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += kRowInterleave) {
    GemmArgs r = a;
    r.m0 = row > a.m0 ? row : a.m0;
    r.m1 = row + kRowInterleave < a.m1 ? row + kRowInterleave : a.m1;
    size_t n = a.n0;
    for (; n + 4 <= a.n1; n += 4) tile_rows<T, 4>(r, n);
    switch (a.n1 - n) {
      case 3: tile_rows<T, 3>(r, n); break;
      case 2: tile_rows<T, 2>(r, n); break;
      case 1: tile_rows<T, 1>(r, n); break;
      default: break;
    }
  }
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// f32 / f16 weights, row-major: one row at a time, 32 elements per step in four chains.
template <bool kF16>
void gemv_float(const GemmArgs& a) {
  for (size_t n = a.n0; n < a.n1; ++n) {
    const auto* x = reinterpret_cast<const float*>(static_cast<const char*>(a.act) + n * a.act_stride);
    for (size_t m = a.m0; m < a.m1; ++m) {
      __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      for (size_t i = 0; i < a.k; i += 32) {
        for (int j = 0; j < 4; ++j) {
          __m256 w;
          if (kF16) {
            w = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(
                static_cast<const uint16_t*>(a.wt) + m * a.k + i + 8 * j)));
          } else {
            w = _mm256_loadu_ps(static_cast<const float*>(a.wt) + m * a.k + i + 8 * j);
          }
          acc[j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + i + 8 * j), acc[j]);
        }
      }
      a.dst[n * a.dst_stride + m] =
          hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    }
  }
}

}  // namespace

void gemv_f32_q8_q8_avx2(const GemmArgs& a) { gemv<WeightType::kQ8>(a); }
void gemv_f32_q8_q4_avx2(const GemmArgs& a) { gemv<WeightType::kQ4>(a); }
void gemv_f32_q8_q4m_avx2(const GemmArgs& a) { gemv<WeightType::kQ4M>(a); }
void gemm_f32_q8_q8_4x4_avx2(const GemmArgs& a) { gemm<WeightType::kQ8>(a); }
void gemm_f32_q8_q4_4x4_avx2(const GemmArgs& a) { gemm<WeightType::kQ4>(a); }
void gemm_f32_q8_q4m_4x4_avx2(const GemmArgs& a) { gemm<WeightType::kQ4M>(a); }
void gemv_f32_f32_f32_avx2(const GemmArgs& a) { gemv_float<false>(a); }
void gemv_f32_f32_f16_avx2(const GemmArgs& a) { gemv_float<true>(a); }

}  // namespace piquant::kernels
