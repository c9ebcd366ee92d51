// GEMV and GEMM over packed q8 / q4 / q4m weights with AVX2 (+FMA, F16C), and f32/f16 GEMV.
//
// Packed group block (common/pack.hpp) read as two ymm per half-block: rows 0,1 and rows 2,3.
//     q4:  [d0..d3][ r0 qs | r1 qs ][ r2 qs | r3 qs ]     lo = q & 15 (k 0..15), hi = q >> 4
//     q8:  [d0..d3][ r0 k0:16 | r1 ][ r2 | r3 ][ r0 k16:32 | r1 ][ r2 | r3 ]
// The activation halves are broadcast to both 128-bit lanes. q4/q4m: vpmaddubsw (u8 nibble x
// s8, pairs fit int16: 2*15*127), lo + hi added in int16 (<= 7620), then ONE vphaddw of the
// rows-0,1 and rows-2,3 vectors (<= 15240, still int16) and ONE vpmaddwd with ones give the
// group's int32 half-sums [r0 r0 r2 r2 | r1 r1 r3 r3]. q8 uses the sign trick
// maddubs(|w|, sign(a, w)) (pairs <= 2*128*127 = 32512, no saturation), widened per half; its
// two groups' partial sums are reduced by unpacks and adds (reduce4), q4's by one more vphaddd.
// Either way the two groups (8 rows) end as one full sum per row in one ymm, so
// q4's -8 offset (- 8 * s), the int -> float conversion, the scale product and the FMA are done
// once per (8 rows, token).
// Tile: 8 rows x NT tokens (GEMV 1, GEMM 4: each unpacked weight block is reused 4 times), one
// float accumulator per token; a lone group at the end of a range goes through the same lane
// operations paired with itself, so results do not depend on the split into tiles or threads,
// and GEMV and GEMM give identical bits. Counts (callgrind, per (group block, token)): GEMV q4
// 29.5 (with the prefetches), GEMM q4 17.4 (was 21.7 with 4-row tiles), GEMM q8 25.9 (22.9 with
// vphaddd in place of reduce4: more instructions, but faster); docs/kernels.md.
#include <immintrin.h>

#include "common/mca.hpp"
#include "common/pack.hpp"
#include "matmul/matmul.hpp"

namespace piquant::kernels {
namespace {

inline __m256i loadu256(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// One group's K-block (4 rows), unpacked once and reused for every token of the tile.
template <WeightType T>
struct Unpacked {
  const uint8_t* blk;
  __m128 d4;                         // weight scales d0..d3
  __m128 m4;                         // q4m: per-row minimum
  __m256i lo01, hi01, lo23, hi23;    // q4: nibbles; q8: |w| (w itself is read from `blk`)

  inline void load(const uint8_t* __restrict b) {
    blk = b;
    d4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b)));
    if (T == WeightType::kQ8) {
      lo01 = _mm256_abs_epi8(loadu256(b + 8));
      lo23 = _mm256_abs_epi8(loadu256(b + 40));
      hi01 = _mm256_abs_epi8(loadu256(b + 72));
      hi23 = _mm256_abs_epi8(loadu256(b + 104));
    } else {
      const __m256i mask = _mm256_set1_epi8(0x0F);
      const size_t off = T == WeightType::kQ4M ? 16 : 8;
      const __m256i q01 = loadu256(b + off), q23 = loadu256(b + off + 32);
      lo01 = _mm256_and_si256(q01, mask);
      hi01 = _mm256_and_si256(_mm256_srli_epi16(q01, 4), mask);
      lo23 = _mm256_and_si256(q23, mask);
      hi23 = _mm256_and_si256(_mm256_srli_epi16(q23, 4), mask);
    }
    if (T == WeightType::kQ4M) {
      m4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 8)));
    }
  }

  // Integer half-sums of the block for one token (activation halves broadcast to both lanes),
  // [r0 r0 r2 r2 | r1 r1 r3 r3]; q4's -8 offset is applied by the caller.
  inline __m256i dot(__m256i alo, __m256i ahi) const {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i p01 =
        _mm256_add_epi16(_mm256_maddubs_epi16(lo01, alo), _mm256_maddubs_epi16(hi01, ahi));
    const __m256i p23 =
        _mm256_add_epi16(_mm256_maddubs_epi16(lo23, alo), _mm256_maddubs_epi16(hi23, ahi));
    return _mm256_madd_epi16(_mm256_hadd_epi16(p01, p23), ones);
  }

  // q8 (sign trick; the signs come straight from the packed block): the int32 partial sums
  // [r0 x4 | r1 x4] and [r2 x4 | r3 x4], reduced by the caller (reduce4).
  inline void dot8(__m256i alo, __m256i ahi, __m256i& i01, __m256i& i23) const {
    const __m256i ones = _mm256_set1_epi16(1);
    i01 = _mm256_add_epi32(
        _mm256_madd_epi16(_mm256_maddubs_epi16(lo01, _mm256_sign_epi8(alo, loadu256(blk + 8))), ones),
        _mm256_madd_epi16(_mm256_maddubs_epi16(hi01, _mm256_sign_epi8(ahi, loadu256(blk + 72))), ones));
    i23 = _mm256_add_epi32(
        _mm256_madd_epi16(_mm256_maddubs_epi16(lo23, _mm256_sign_epi8(alo, loadu256(blk + 40))), ones),
        _mm256_madd_epi16(_mm256_maddubs_epi16(hi23, _mm256_sign_epi8(ahi, loadu256(blk + 104))), ones));
  }
};

// Four vectors of per-row partial sums, [a x4 | b x4] each, -> one full sum per row:
// [p_lo q_lo r_lo u_lo | p_hi q_hi r_hi u_hi]. Unpacks and adds rather than vphaddd: on Zen 3 a
// ymm vphaddd issues once per 2 cycles, and the q8 GEMM (three vphaddd per 8 rows and token)
// measured faster this way (2048x5632/128, 1 thread, median of 12 interleaved runs: 69 -> 83
// GOP/s; docs/kernels.md). Same integers, so the same bits.
inline __m256i reduce4(__m256i p, __m256i q, __m256i r, __m256i u) {
  const __m256i t0 = _mm256_add_epi32(_mm256_unpacklo_epi32(p, q), _mm256_unpackhi_epi32(p, q));
  const __m256i t1 = _mm256_add_epi32(_mm256_unpacklo_epi32(r, u), _mm256_unpackhi_epi32(r, u));
  return _mm256_add_epi32(_mm256_unpacklo_epi64(t0, t1), _mm256_unpackhi_epi64(t0, t1));
}

// [a0 a1 a2 a3], [b0 b1 b2 b3] -> [a0 a2 b0 b2 | a1 a3 b1 b3]: the lane order of one vphaddd of
// two groups' half-sums (q4) and of reduce4 (q8), below.
inline __m256 lane_order(__m128 a, __m128 b) {
  const __m256 ab = _mm256_insertf128_ps(_mm256_castps128_ps256(a), b, 1);
  return _mm256_permutevar8x32_ps(ab, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
}

// GEMV software prefetch distance. Decode streams every weight from DRAM once per token and the
// hardware prefetcher alone does not run far enough ahead while the core is busy unpacking:
// prefetching 4 KB ahead (28 q4 / 15 q8 group blocks) took the 1-thread q4 GEMV of a
// 32000x2048 matrix from ~7.5 to ~10 GB/s and TinyLlama q4_0 decode from 13.2 to 17-19 tok/s
// (1 thread) on the AMD EPYC (Zen 3) box of docs/performance.md; 8 KB measured the same, 1-2 KB
// less. The GEMM (prefill) is compute-bound and does not prefetch.
constexpr size_t kPrefetchBytes = 4096;

// G groups (G = 2: 8 rows, G = 1: 4 rows; group g at w + g * nb * group bytes) x NT tokens.
// One vphaddd of the two groups' half-sums gives one full int32 sum per row, [A0 A2 B0 B2 | A1
// A3 B1 B3], so the offset, the int -> float conversion, the scale product and the FMA are done
// once per 8 rows and token instead of once per 4. With G = 1 the group is paired with itself:
// every row goes through exactly the same lane operations either way, so a row's bits do not
// depend on how rows were split into tiles or threads, and GEMV (NT = 1) and GEMM give identical
// bits. One float accumulator per token and 8 rows, blocks in order.
template <WeightType T, int G, int NT>
inline void tile(const uint8_t* __restrict w, size_t nb, const BlockQ8A* const* act,
                 float* const* out, size_t row, size_t m0, size_t m1) {
  constexpr size_t gb = kGroupBytes<T>;
  const size_t gstride = nb * gb;
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  for (size_t b = 0; b < nb; ++b) {
    PIQUANT_MCA_BEGIN(T, 4 * G, NT, 1);
    const uint8_t* blk = w + b * gb;
    if (NT == 1 && (b & 1) == 0) {  // GEMV: weights stream from DRAM; see kPrefetchBytes
      for (int g = 0; g < G; ++g) {
        const char* p = reinterpret_cast<const char*>(blk + size_t(g) * gstride) + kPrefetchBytes;
        for (size_t off = 0; off < 2 * gb; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
      }
    }
    Unpacked<T> ua, ub;
    ua.load(blk);
    if (G == 2) ub.load(blk + gstride);
    const __m256 dw = lane_order(ua.d4, G == 2 ? ub.d4 : ua.d4);
    __m256 mw;
    if (T == WeightType::kQ4M) mw = lane_order(ua.m4, G == 2 ? ub.m4 : ua.m4);
    for (int t = 0; t < NT; ++t) {
      const BlockQ8A* a = act[t] + b;
      const __m256i alo =
          _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a->qs)));
      const __m256i ahi = _mm256_broadcastsi128_si256(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(a->qs + 16)));
      __m256i v;
      if (T == WeightType::kQ8) {
        __m256i p, q;
        ua.dot8(alo, ahi, p, q);
        if (G == 2) {
          __m256i r, u;
          ub.dot8(alo, ahi, r, u);
          v = reduce4(p, q, r, u);
        } else {
          v = reduce4(p, q, p, q);
        }
      } else {
        const __m256i ia = ua.dot(alo, ahi);
        v = _mm256_hadd_epi32(ia, G == 2 ? ub.dot(alo, ahi) : ia);
      }
      if (T == WeightType::kQ4) {  // w = q - 8: subtract 8 * (sum of the activation block)
        v = _mm256_sub_epi32(v, _mm256_slli_epi32(_mm256_set1_epi32(a->s), 3));
      }
      const __m256 da = _mm256_set1_ps(a->d);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(dw, da), acc[t]);
      if (T == WeightType::kQ4M) {
        acc[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a->d * static_cast<float>(a->s)), acc[t]);
      }
    }
    PIQUANT_MCA_END();
  }
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // -> A0..A3 B0..B3
  for (int t = 0; t < NT; ++t) {
    const __m256 y = _mm256_permutevar8x32_ps(acc[t], order);
    const size_t rows = 4 * size_t(G);
    if (row >= m0 && row + rows <= m1) {
      if (G == 2) {
        _mm256_storeu_ps(out[t] + row, y);
      } else {
        _mm_storeu_ps(out[t] + row, _mm256_castps256_ps128(y));
      }
    } else {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, y);
      for (size_t r = 0; r < rows; ++r) {
        if (row + r >= m0 && row + r < m1) out[t][row + r] = tmp[r];
      }
    }
  }
}

// Rows [a.m0, a.m1) for tokens n .. n + NT: pairs of groups, a single group where only one is
// left in the range.
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
  size_t row = a.m0 - a.m0 % kRowInterleave;
  for (; row + kRowInterleave < a.m1; row += 2 * kRowInterleave) {
    tile<T, 2, NT>(wt + row / kRowInterleave * nb * kGroupBytes<T>, nb, act, out, row, a.m0, a.m1);
  }
  if (row < a.m1) {
    tile<T, 1, NT>(wt + row / kRowInterleave * nb * kGroupBytes<T>, nb, act, out, row, a.m0, a.m1);
  }
}

template <WeightType T>
void gemv(const GemmArgs& a) {
  for (size_t n = a.n0; n < a.n1; ++n) tile_rows<T, 1>(a, n);
}

// GEMM: per 8 rows (two groups), token tiles of 4 (then one tail tile), so the rows' weights
// (2 x K/32 x 72 bytes for q4: 25 KB at K = 5632) stay in L1/L2 across the token tiles.
template <WeightType T>
void gemm(const GemmArgs& a) {
  constexpr size_t kNt = 4;  // q8: 2 and 3 measured slower
  constexpr size_t kRows = 2 * kRowInterleave;
  for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += kRows) {
    GemmArgs r = a;
    r.m0 = row > a.m0 ? row : a.m0;
    r.m1 = row + kRows < a.m1 ? row + kRows : a.m1;
    size_t n = a.n0;
    for (; n + kNt <= a.n1; n += kNt) tile_rows<T, kNt>(r, n);
    switch (a.n1 - n) {  // fewer than kNt tokens left
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
void gemm_f32_q8_q8_8x4_avx2(const GemmArgs& a) { gemm<WeightType::kQ8>(a); }
void gemm_f32_q8_q4_8x4_avx2(const GemmArgs& a) { gemm<WeightType::kQ4>(a); }
void gemm_f32_q8_q4m_8x4_avx2(const GemmArgs& a) { gemm<WeightType::kQ4M>(a); }
void gemv_f32_f32_f32_avx2(const GemmArgs& a) { gemv_float<false>(a); }
void gemv_f32_f32_f16_avx2(const GemmArgs& a) { gemv_float<true>(a); }

}  // namespace piquant::kernels
