// GEMV and GEMM over packed q8 / q4 / q4m weights with AVX2 (+FMA, F16C), and f32/f16 GEMV.
//
// Packed group block (common/pack.hpp) read as two ymm per half-block: rows 0,1 and rows 2,3.
//     q4:  [d0..d3][ r0 qs | r1 qs ][ r2 qs | r3 qs ]     lo = q & 15 (k 0..15), hi = q >> 4
//     q8:  [d0..d3][ r0 k0:16 | r1 ][ r2 | r3 ][ r0 k16:32 | r1 ][ r2 | r3 ]
// The activation halves are broadcast to both 128-bit lanes. q4/q4m: vpmaddubsw (u8 nibble x
// s8, pairs fit int16: 2*15*127), lo + hi added in int16 (<= 7620), then ONE vphaddw of the
// rows-0,1 and rows-2,3 vectors (<= 15240, still int16) and ONE vpmaddwd with ones give the
// block's int32 sums in the order [r0 r0 r2 r2 | r1 r1 r3 r3]: one int -> float conversion,
// one scale product and one FMA per (4 rows, token) instead of two each. q4's -8 offset is the
// start value -4*s per lane (2 lanes per row). q8 uses the sign trick maddubs(|w|, sign(a, w))
// (pairs <= 2*128*127 = 32512, no saturation), widened per half, then one vphaddd.
// Tile: 4 rows x NT tokens (GEMV 1, GEMM 4: each unpacked weight block is reused 4 times), two
// float accumulators per token (even / odd blocks) to hide the FMA latency. GEMV and GEMM run
// the same per-token operation sequence, so they give identical bits. Counts (callgrind, q4):
// 30.5 instructions per group block in the GEMV (was 40.6 with two conversions/FMAs per
// block), 21.7 per (group block, token) in the GEMM (was 31.4); docs/kernels.md.
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

// One group's K-block, unpacked once and reused for every token of the tile.
template <WeightType T>
struct Unpacked {
  __m256 dw;                         // weight scales, [d0 d0 d2 d2 | d1 d1 d3 d3]
  __m256i lo01, hi01, lo23, hi23;    // q4: nibbles; q8: |w|
  __m256i sg01, sgh01, sg23, sgh23;  // q8 only: w (for the sign trick)
  __m128 m4;                         // q4m: per-row minimum

  inline void load(const uint8_t* __restrict blk) {
    const __m128 d4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk)));
    dw = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d4),
                                  _mm256_setr_epi32(0, 0, 2, 2, 1, 1, 3, 3));
    if (T == WeightType::kQ8) {
      sg01 = loadu256(blk + 8);
      sg23 = loadu256(blk + 40);
      sgh01 = loadu256(blk + 72);
      sgh23 = loadu256(blk + 104);
      lo01 = _mm256_abs_epi8(sg01);
      lo23 = _mm256_abs_epi8(sg23);
      hi01 = _mm256_abs_epi8(sgh01);
      hi23 = _mm256_abs_epi8(sgh23);
    } else {
      const __m256i mask = _mm256_set1_epi8(0x0F);
      const size_t off = T == WeightType::kQ4M ? 16 : 8;
      const __m256i q01 = loadu256(blk + off), q23 = loadu256(blk + off + 32);
      lo01 = _mm256_and_si256(q01, mask);
      hi01 = _mm256_and_si256(_mm256_srli_epi16(q01, 4), mask);
      lo23 = _mm256_and_si256(q23, mask);
      hi23 = _mm256_and_si256(_mm256_srli_epi16(q23, 4), mask);
    }
    if (T == WeightType::kQ4M) {
      m4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 8)));
    }
  }

  // Integer sums of the block for one token, [r0 r0 r2 r2 | r1 r1 r3 r3] (q4: offset applied).
  inline __m256i dot(const BlockQ8A* __restrict a) const {
    const __m256i alo =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a->qs)));
    const __m256i ahi =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a->qs + 16)));
    const __m256i ones = _mm256_set1_epi16(1);
    if (T == WeightType::kQ8) {
      const __m256i i01 = _mm256_add_epi32(
          _mm256_madd_epi16(_mm256_maddubs_epi16(lo01, _mm256_sign_epi8(alo, sg01)), ones),
          _mm256_madd_epi16(_mm256_maddubs_epi16(hi01, _mm256_sign_epi8(ahi, sgh01)), ones));
      const __m256i i23 = _mm256_add_epi32(
          _mm256_madd_epi16(_mm256_maddubs_epi16(lo23, _mm256_sign_epi8(alo, sg23)), ones),
          _mm256_madd_epi16(_mm256_maddubs_epi16(hi23, _mm256_sign_epi8(ahi, sgh23)), ones));
      return _mm256_hadd_epi32(i01, i23);
    }
    const __m256i p01 =
        _mm256_add_epi16(_mm256_maddubs_epi16(lo01, alo), _mm256_maddubs_epi16(hi01, ahi));
    const __m256i p23 =
        _mm256_add_epi16(_mm256_maddubs_epi16(lo23, alo), _mm256_maddubs_epi16(hi23, ahi));
    const __m256i i = _mm256_madd_epi16(_mm256_hadd_epi16(p01, p23), ones);
    if (T == WeightType::kQ4) {  // - 8 * s per row = - 4 * s per lane: one load, shift, sub
      const __m256i s = _mm256_set1_epi32(a->s);
      return _mm256_sub_epi32(i, _mm256_slli_epi32(s, 2));
    }
    return i;
  }
};

// GEMV software prefetch distance. Decode streams every weight from DRAM once per token and the
// hardware prefetcher alone does not run far enough ahead while the core is busy unpacking:
// prefetching 4 KB ahead (28 q4 / 15 q8 group blocks) took the 1-thread q4 GEMV of a
// 32000x2048 matrix from ~7.5 to ~10 GB/s and TinyLlama q4_0 decode from 13.2 to 17-19 tok/s
// (1 thread) on the AMD EPYC (Zen 3) box of docs/performance.md; 8 KB measured the same, 1-2 KB
// less. The GEMM (prefill) is compute-bound and does not prefetch.
constexpr size_t kPrefetchBytes = 4096;

// 4 rows (group at `w`) x NT tokens. Two float accumulators per token (even / odd blocks) hide
// the FMA latency in the GEMV; GEMM uses the same order so that its bits equal the GEMV's.
template <WeightType T, int NT>
inline void tile(const uint8_t* __restrict w, size_t nb, const BlockQ8A* const* act,
                 float* const* out, size_t row, size_t m0, size_t m1) {
  __m256 acc[2][NT];
  __m128 macc[NT];
  for (int t = 0; t < NT; ++t) {
    acc[0][t] = acc[1][t] = _mm256_setzero_ps();
    macc[t] = _mm_setzero_ps();
  }
  constexpr size_t gb = kGroupBytes<T>;
  auto step = [&](size_t b, int e) {
    const uint8_t* blk = w + b * gb;
    Unpacked<T> u;
    u.load(blk);
    for (int t = 0; t < NT; ++t) {
      const BlockQ8A* a = act[t] + b;
      const __m256 s = _mm256_mul_ps(u.dw, _mm256_set1_ps(a->d));
      acc[e][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(u.dot(a)), s, acc[e][t]);
      if (T == WeightType::kQ4M) {
        macc[t] = _mm_fmadd_ps(u.m4, _mm_set1_ps(a->d * static_cast<float>(a->s)), macc[t]);
      }
    }
  };
  size_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    if (NT == 1) {  // GEMV: weights stream from DRAM; see kPrefetchBytes
      const char* p = reinterpret_cast<const char*>(w + b * gb) + kPrefetchBytes;
      for (size_t off = 0; off < 2 * gb; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
    }
    step(b, 0);
    step(b + 1, 1);
  }
  if (b < nb) step(b, 0);
  for (int t = 0; t < NT; ++t) {
    // [r0 r0 r2 r2 | r1 r1 r3 r3] -> hadd: [r0 r2 r1 r3] -> [r0 r1 r2 r3]
    const __m256 v = _mm256_add_ps(acc[0][t], acc[1][t]);
    const __m128 h = _mm_hadd_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 y = _mm_shuffle_ps(h, h, _MM_SHUFFLE(3, 1, 2, 0));
    if (T == WeightType::kQ4M) y = _mm_add_ps(y, macc[t]);
    if (row >= m0 && row + 4 <= m1) {
      _mm_storeu_ps(out[t] + row, y);
    } else {
      alignas(16) float tmp[4];
      _mm_store_ps(tmp, y);
      for (size_t r = 0; r < 4; ++r) {
        if (row + r >= m0 && row + r < m1) out[t][row + r] = tmp[r];
      }
    }
  }
}

template <WeightType T, int NT>
inline void tile_rows(const GemmArgs& a, size_t n) {
  const BlockQ8A* act[NT];
  float* out[NT];
  for (int t = 0; t < NT; ++t) {
    act[t] =
        reinterpret_cast<const BlockQ8A*>(static_cast<const char*>(a.act) + (n + t) * a.act_stride);
    out[t] = a.dst + (n + t) * a.dst_stride;
  }
  const size_t nb = a.k / kBlock;
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += kRowInterleave) {
    tile<T, NT>(wt + row / kRowInterleave * nb * kGroupBytes<T>, nb, act, out, row, a.m0, a.m1);
  }
}

template <WeightType T>
void gemv(const GemmArgs& a) {
  for (size_t n = a.n0; n < a.n1; ++n) tile_rows<T, 1>(a, n);
}

// GEMM: per group of 4 rows, token tiles of 4 (then one tail tile), so the group's weights
// (K/32 * 72 bytes for q4: 12.7 KB at K = 5632) stay in L1 across the token tiles.
template <WeightType T>
void gemm(const GemmArgs& a) {
  constexpr size_t kNt = 4;
  for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += kRowInterleave) {
    GemmArgs r = a;
    r.m0 = row > a.m0 ? row : a.m0;
    r.m1 = row + kRowInterleave < a.m1 ? row + kRowInterleave : a.m1;
    size_t n = a.n0;
    for (; n + kNt <= a.n1; n += kNt) tile_rows<T, kNt>(r, n);
    switch (a.n1 - n) {
      case 3:
        tile_rows<T, 3>(r, n);
        break;
      case 2:
        tile_rows<T, 2>(r, n);
        break;
      case 1:
        tile_rows<T, 1>(r, n);
        break;
      default:
        break;
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
    const auto* x =
        reinterpret_cast<const float*>(static_cast<const char*>(a.act) + n * a.act_stride);
    for (size_t m = a.m0; m < a.m1; ++m) {
      __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                       _mm256_setzero_ps()};
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
