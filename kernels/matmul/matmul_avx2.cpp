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

#include <cstring>
#include <type_traits>
#include <vector>

#include "common/mca.hpp"
#include "common/pack.hpp"
#include "matmul/matmul.hpp"
#include "matmul/tile_driver.hpp"

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
  tiles::token_ptrs(a, n, NT, 0, act, out);
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

// The tile drivers (matmul/tile_driver.hpp) with this file's tiles. GEMM: per 8 rows (two
// groups), token tiles of 4 (then one tail tile), so the rows' weights (2 x K/32 x 72 bytes for
// q4: 25 KB at K = 5632) stay in L1/L2 across the token tiles.
constexpr int kNt = 4;  // q8: 2 and 3 measured slower
template <WeightType T>
void gemv(const GemmArgs& a) {
  tiles::gemv(a, [](const GemmArgs& r, auto nt, size_t n) PIQUANT_TILE_INLINE {
    tile_rows<T, decltype(nt)::value>(r, n);
  });
}
template <WeightType T>
void gemm(const GemmArgs& a) {
  constexpr size_t kRows = 2 * kRowInterleave;
  tiles::gemm<kNt>(a, kRows, [](const GemmArgs& r, auto nt, size_t n) PIQUANT_TILE_INLINE {
    tile_rows<T, decltype(nt)::value>(r, n);
  });
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

// --- GGUF types: q4_k, q5_k, q6_k (256-value super-blocks), q5_0, q5_1 ----------------------
//
// Each 32-value sub-block of the packed GGUF blocks (4 rows' blocks one after the other) is
// decoded into the q4 register form (lane-128 = row: rows 0,1 and rows 2,3, lo = values 0..15,
// hi = 16..31), then per token vpmaddubsw (u8 weights x s8 activations; q6_k: u8 activations +
// 128 x s8 weights q - 32, pairs <= 16320), lo + hi in int16 (<= 15872; q6_k keeps its halves
// apart: they have their own scales), one vphaddw of the two row pairs (<= 32640) and one
// vpmaddwd by ones give int32 [r0 r0 r2 r2 | r1 r1 r3 r3].
// q5_0 / q5_1 (KTile): 4 rows x NT tokens, decoded once per tile; acc += float(isum) * (d *
// d_a) per lane, q5_1's minimum as a 4-row FMA by d_a * s. GEMV = the 1-token tile, GEMM =
// 4-token tiles over one group: same bits. q4_k / q5_k / q6_k: 8-row panels (below).

inline __m128 kf16x4(const uint8_t* p, size_t stride) {
  uint16_t h[4];
  for (int r = 0; r < 4; ++r) std::memcpy(h + r, p + r * stride, 2);
  return _mm_cvtph_ps(_mm_setr_epi16(short(h[0]), short(h[1]), short(h[2]), short(h[3]), 0, 0, 0, 0));
}
// Row pair (a, b) of 32 bytes each -> lo = [a 0..15 | b 0..15], hi = [a 16..31 | b 16..31].
inline void kpair32(const uint8_t* a, const uint8_t* b, __m256i* lo, __m256i* hi) {
  const __m256i x = loadu256(a), y = loadu256(b);
  *lo = _mm256_permute2x128_si256(x, y, 0x20);
  *hi = _mm256_permute2x128_si256(x, y, 0x31);
}
inline void kscales4(const uint8_t* s12, uint8_t* sc, uint8_t* mn) {
  uint32_t u[4];
  std::memcpy(u, s12, 12);
  constexpr uint32_t m1 = 0x3f3f3f3f, m2 = 0x0f0f0f0f, m3 = 0x03030303;
  u[3] = ((u[2] >> 4) & m2) | (((u[1] >> 6) & m3) << 4);
  const uint32_t a = u[1] & m1;
  u[1] = (u[2] & m2) | (((u[0] >> 6) & m3) << 4);
  u[2] = a;
  u[0] &= m1;
  std::memcpy(sc, u, 8);
  std::memcpy(mn, u + 2, 8);
}
// 32 bytes [r * 8 + j] (4 rows x 8) -> [j * 4 + r].
inline __m256i ktranspose_4x8(__m256i x) {
  const __m256i shuf = _mm256_setr_epi8(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15,
                                        0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
  const __m256i y = _mm256_shuffle_epi8(x, shuf);  // lane 0: [j*2 + r], lane 1: [j*2 + r - 2]
  const __m128i lo = _mm256_castsi256_si128(y), hi = _mm256_extracti128_si256(y, 1);
  return _mm256_setr_m128i(_mm_unpacklo_epi16(lo, hi), _mm_unpackhi_epi16(lo, hi));
}

template <WeightType T, int NT>
struct KTile {
  static constexpr bool kSuper = T == WeightType::kQ4K || T == WeightType::kQ5K || T == WeightType::kQ6K;
  static constexpr size_t kBb = T == WeightType::kQ4K   ? sizeof(BlockQ4K)
                                : T == WeightType::kQ5K ? sizeof(BlockQ5K)
                                : T == WeightType::kQ6K ? sizeof(BlockQ6K)
                                : T == WeightType::kQ5_0 ? sizeof(BlockQ5_0)
                                                         : sizeof(BlockQ5_1);
  __m256 acc[NT][2];
  __m128 macc[NT];

  static inline __m256 lanes(__m128 d4) {  // [r0 r0 r2 r2 | r1 r1 r3 r3]
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d4), _mm256_setr_epi32(0, 0, 2, 2, 1, 1, 3, 3));
  }

  // u8 weights (values < 32) of one sub-block: rows 0,1 and 2,3, lo and hi halves.
  inline void dot(__m256i lo01, __m256i hi01, __m256i lo23, __m256i hi23, __m256 d8, __m128 m4,
                  const BlockQ8A* const* act, size_t blk, int par) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int t = 0; t < NT; ++t) {
      const BlockQ8A* x = act[t] + blk;
      const __m256i alo = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x->qs)));
      const __m256i ahi = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x->qs + 16)));
      const __m256i p01 = _mm256_add_epi16(_mm256_maddubs_epi16(lo01, alo), _mm256_maddubs_epi16(hi01, ahi));
      const __m256i p23 = _mm256_add_epi16(_mm256_maddubs_epi16(lo23, alo), _mm256_maddubs_epi16(hi23, ahi));
      __m256i v = _mm256_madd_epi16(_mm256_hadd_epi16(p01, p23), ones);
      if (T == WeightType::kQ5_0) v = _mm256_sub_epi32(v, _mm256_slli_epi32(_mm256_set1_epi32(x->s), 3));
      acc[t][par] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(d8, _mm256_set1_ps(x->d)), acc[t][par]);
      if (T != WeightType::kQ5_0) {
        macc[t] = _mm_fmadd_ps(m4, _mm_set1_ps(x->d * static_cast<float>(x->s)), macc[t]);
      }
    }
  }
  inline void block(const uint8_t* p, const BlockQ8A* const* act, size_t b0) {
    static_assert(!kSuper, "q4_k / q5_k / q6_k run on the 8-row panels (kdecode_q4k, kdecode_q6k)");
    const __m256i m4b = _mm256_set1_epi8(0x0F);
    const size_t s1 = kBb, s2 = 2 * kBb, s3 = 3 * kBb;
    {  // q5_0 / q5_1
      const bool q51 = T == WeightType::kQ5_1;
      const __m128 d4 = kf16x4(p, kBb);
      const __m128 m4 = q51 ? kf16x4(p + 2, kBb) : _mm_setzero_ps();
      const size_t qh = q51 ? 4 : 2, qs = q51 ? 8 : 6;
      // fifth bits: byte i of the 32 -> bit i of qh, as 0x10
      const __m256i bsel = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
      const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
      auto fifth = [&](const uint8_t* row) {  // 32 bytes: 0x10 where the value's qh bit is set
        uint32_t h;
        std::memcpy(&h, row + qh, 4);
        const __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(h)), bsel);
        return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit), _mm256_set1_epi8(0x10));
      };
      auto quad = [&](const uint8_t* a, const uint8_t* b, __m256i* lo, __m256i* hi) {
        const __m256i q = _mm256_setr_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + qs)),
                                            _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + qs)));
        const __m256i fa = fifth(a), fb = fifth(b);
        *lo = _mm256_or_si256(_mm256_and_si256(q, m4b), _mm256_permute2x128_si256(fa, fb, 0x20));
        *hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4b), _mm256_permute2x128_si256(fa, fb, 0x31));
      };
      __m256i lo01, hi01, lo23, hi23;
      quad(p, p + s1, &lo01, &hi01);
      quad(p + s2, p + s3, &lo23, &hi23);
      dot(lo01, hi01, lo23, hi23, lanes(d4), m4, act, b0, int(b0 & 1));
    }
  }

  inline void run(const uint8_t* __restrict w, size_t nsb, const BlockQ8A* const* act,
                  float* const* out, size_t row, size_t m0, size_t m1) {
    for (int t = 0; t < NT; ++t) {
      acc[t][0] = acc[t][1] = _mm256_setzero_ps();
      macc[t] = _mm_setzero_ps();
    }
    constexpr size_t per = kSuper ? kSuperBlock / kBlock : 1;
    // No llvm-mca markers: a super-block's body holds loops (sub-blocks x tokens) that the
    // compiler need not unroll, which a straight-line pipeline model would misread.
    for (size_t b = 0; b < nsb; ++b) block(w + b * 4 * kBb, act, b * per);
    for (int t = 0; t < NT; ++t) {
      const __m256 v = _mm256_add_ps(acc[t][0], acc[t][1]);
      // [r0 r0 r2 r2 | r1 r1 r3 r3] -> [r0 r2 r1 r3] -> [r0 r1 r2 r3]
      const __m128 h = _mm_hadd_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
      __m128 y = _mm_shuffle_ps(h, h, _MM_SHUFFLE(3, 1, 2, 0));
      if (T != WeightType::kQ6K && T != WeightType::kQ5_0) y = _mm_add_ps(y, macc[t]);
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
};

template <WeightType T, int NT>
inline void ktile_rows(const GemmArgs& a, size_t n) {
  using Tl = KTile<T, NT>;
  const size_t nsb = a.k / (Tl::kSuper ? kSuperBlock : kBlock);
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  Tl tile;
  auto group = [&](const BlockQ8A* const* act, float* const* out, size_t row) PIQUANT_TILE_INLINE {
    tile.run(wt + row / kRowInterleave * nsb * kGroupBytes<T>, nsb, act, out, row, a.m0, a.m1);
  };
  tiles::group_rows<NT>(a, n, group);
}

// The tile drivers with the K-quant tiles: GEMM per 4 rows, token tiles of 4 (then the tail).
template <WeightType T>
void kgemv(const GemmArgs& a) {
  tiles::gemv(a, [](const GemmArgs& r, auto nt, size_t n) PIQUANT_TILE_INLINE {
    ktile_rows<T, decltype(nt)::value>(r, n);
  });
}
template <WeightType T>
void kgemm(const GemmArgs& a) {
  tiles::gemm<4>(a, kRowInterleave, [](const GemmArgs& r, auto nt, size_t n) PIQUANT_TILE_INLINE {
    ktile_rows<T, decltype(nt)::value>(r, n);
  });
}


// --- q4_k / q5_k / q6_k: 8-row panels ---------------------------------------------------------
//
// The register shape of the q4 tile above: two groups (8 rows), lanes [A0 A2 B0 B2 | A1 A3 B1
// B3] after one vphaddd of the two groups' int32 half-sums, so the conversion, the scale
// product and the FMAs run once per (8 rows, token, sub-block) and no lane is wasted (the
// 4-row tile had two lanes per row and the minimum as a separate 128-bit FMA). The GEMM decodes
// each super-block of an 8-row panel once per chunk of kKChunk super-blocks into a stack buffer
// (KSub / K6Sub per 32-value sub-block: 8 ymm of one-byte values, the scales as f32 in lane
// order), not once per 4-token tile as the 4-row tile did, then runs 4-token tiles over the
// chunk; the partial sums of a chunk pass to the next through dst (masked store / load:
// exact). The q4_k / q5_k GEMV (q6_k's is row-major: kgemv_q6k_rows, at the end, with its own
// float order) decodes one group (4 rows, one sequential stream, as before) and pairs it
// with itself, as the q4 tile's lone group: every row goes through the same lane operations
// in GEMV and GEMM, so they give identical bits per token, and no split of rows or tokens
// changes a bit. Per lane, sub-blocks in order, two accumulators:
//   q4_k / q5_k: a0 = fma(float(isum), D * d_a, a0); a1 = fma(-M, d_a * s, a1)
//                (D = d * sc_j, M = dmin * mn_j, both exact products)
//   q6_k:        a0 = fma(float(isum_lo), D_lo * d_a, a0); a1 = fma(float(isum_hi), D_hi * d_a, a1)
// and a0 += a1, a1 = 0 at the end of each chunk of kKChunk super-blocks (two FMA chains: one
// chain of 16 dependent FMAs per super-block had cost the GEMV its latency).
// Integer bounds (vpmaddubsw pairs, int16 adds) as the 4-row tile: q4_k / q5_k u8 values <= 31
// x s8 activations, lo + hi <= 15872, one vphaddw <= 31744; q6_k u8 activations + 128 x s8
// values q - 32, one vphaddw of two pairs <= 32640, the + 128 taken out by the start value
// -128 * sum(q - 32) per (row, half), computed when the values are decoded.

// q4_k / q5_k: f(j, lo01, hi01, lo23, hi23, D, M) for the 8 sub-blocks of one group's
// super-block at p (lo = values 0..15, hi = 16..31; lane-128 = row). D and M hold the scales of
// sub-blocks j & ~1 (elements 0..3, row r = element r) and j | 1 (4..7): D = d * sc, M = -dmin
// * mn, converted for all 8 sub-blocks at once (4 ymm each) rather than per sub-block.
template <WeightType T, class F>
inline void kdecode_q4k(const uint8_t* p, F&& f) {
  constexpr size_t bb = T == WeightType::kQ5K ? sizeof(BlockQ5K) : sizeof(BlockQ4K);
  constexpr size_t s1 = bb, s2 = 2 * bb, s3 = 3 * bb;
  const __m256i m4b = _mm256_set1_epi8(0x0F);
  alignas(32) uint8_t sc[32], mn[32];
  for (int r = 0; r < 4; ++r) kscales4(p + r * bb + 4, sc + 8 * r, mn + 8 * r);
  // [j * 4 + r] bytes, kept in registers (no store and reload)
  const __m256i sct = ktranspose_4x8(_mm256_load_si256(reinterpret_cast<const __m256i*>(sc)));
  const __m256i mnt = ktranspose_4x8(_mm256_load_si256(reinterpret_cast<const __m256i*>(mn)));
  const __m128 d4 = kf16x4(p, bb);
  const __m128 nd4 = _mm_sub_ps(_mm_setzero_ps(), kf16x4(p + 2, bb));
  const __m256 d8 = _mm256_set_m128(d4, d4), nd8 = _mm256_set_m128(nd4, nd4);
  const auto bytes8 = [](__m256i v, int q) {  // bytes 8q .. 8q + 7 -> the low 8 bytes
    const __m128i h = q < 2 ? _mm256_castsi256_si128(v) : _mm256_extracti128_si256(v, 1);
    return q & 1 ? _mm_unpackhi_epi64(h, h) : h;
  };
  __m256 D2[4], M2[4];  // sub-blocks 2q (elements 0..3) and 2q + 1 (4..7)
  for (int q = 0; q < 4; ++q) {
    D2[q] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes8(sct, q))), d8);
    M2[q] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes8(mnt, q))), nd8);
  }
  constexpr size_t qs = T == WeightType::kQ4K ? 16 : 48;
  __m256i ha01 = _mm256_setzero_si256(), hb01 = ha01, ha23 = ha01, hb23 = ha01;
  if (T == WeightType::kQ5K) {
    kpair32(p + 16, p + s1 + 16, &ha01, &hb01);
    kpair32(p + s2 + 16, p + s3 + 16, &ha23, &hb23);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    __m256i a01, b01, a23, b23;
    kpair32(p + qs + 32 * c, p + s1 + qs + 32 * c, &a01, &b01);
    kpair32(p + s2 + qs + 32 * c, p + s3 + qs + 32 * c, &a23, &b23);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const int j = 2 * c + h;
      const __m128i sh = _mm_cvtsi32_si128(4 * h);
      __m256i lo01 = _mm256_and_si256(_mm256_srl_epi16(a01, sh), m4b);
      __m256i hi01 = _mm256_and_si256(_mm256_srl_epi16(b01, sh), m4b);
      __m256i lo23 = _mm256_and_si256(_mm256_srl_epi16(a23, sh), m4b);
      __m256i hi23 = _mm256_and_si256(_mm256_srl_epi16(b23, sh), m4b);
      if (T == WeightType::kQ5K) {  // bit j of qh[l] -> bit 4
        const __m256i one = _mm256_set1_epi8(1);
        const __m128i sj = _mm_cvtsi32_si128(j);
        lo01 = _mm256_or_si256(lo01, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(ha01, sj), one), 4));
        hi01 = _mm256_or_si256(hi01, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hb01, sj), one), 4));
        lo23 = _mm256_or_si256(lo23, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(ha23, sj), one), 4));
        hi23 = _mm256_or_si256(hi23, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hb23, sj), one), 4));
      }
      f(j, lo01, hi01, lo23, hi23, D2[c], M2[c]);
    }
  }
}

// q6_k: f(j, lo01, hi01, lo23, hi23, Dlo, Dhi) for the 8 sub-blocks (values q - 32 as s8; Dlo
// = d * sc_2j for values 0..15, Dhi = d * sc_2j+1 for 16..31).
template <class F>
inline void kdecode_q6k(const uint8_t* p, F&& f) {
  constexpr size_t bb = sizeof(BlockQ6K);
  constexpr size_t s1 = bb, s2 = 2 * bb, s3 = 3 * bb;
  const __m256i m4b = _mm256_set1_epi8(0x0F);
  const __m128 d4 = kf16x4(p + 208, bb);
  // int8 scales [r * 16 + k] -> [k * 4 + r] (two 4x8 transposes of the k halves)
  alignas(32) int8_t sk[64], st[64];
  for (int r = 0; r < 4; ++r) {
    std::memcpy(sk + 8 * r, p + r * bb + 192, 8);
    std::memcpy(sk + 32 + 8 * r, p + r * bb + 200, 8);
  }
  _mm256_store_si256(reinterpret_cast<__m256i*>(st), ktranspose_4x8(_mm256_load_si256(reinterpret_cast<const __m256i*>(sk))));
  _mm256_store_si256(reinterpret_cast<__m256i*>(st + 32), ktranspose_4x8(_mm256_load_si256(reinterpret_cast<const __m256i*>(sk + 32))));
  const __m256i k32 = _mm256_set1_epi8(32), m3 = _mm256_set1_epi8(0x30);
#pragma GCC unroll 2
  for (int hh = 0; hh < 2; ++hh) {
    __m256i ha01, hb01, ha23, hb23;
    kpair32(p + 128 + 32 * hh, p + s1 + 128 + 32 * hh, &ha01, &hb01);
    kpair32(p + s2 + 128 + 32 * hh, p + s3 + 128 + 32 * hh, &ha23, &hb23);
    // both 32-byte halves of the low-nibble bytes first: the sub-blocks are passed in order
    // (j = 4 hh + i; ip = i & 1 picks the bytes, ih = i >> 1 the nibble), so a GEMV that
    // accumulates as it goes has the GEMM's float order
    __m256i a01[2], b01[2], a23[2], b23[2];
    for (int ip = 0; ip < 2; ++ip) {
      const size_t o = 64 * hh + 32 * ip;
      kpair32(p + o, p + s1 + o, &a01[ip], &b01[ip]);
      kpair32(p + s2 + o, p + s3 + o, &a23[ip], &b23[ip]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      const int ip = i & 1, ih = i >> 1, j = 4 * hh + i;
      const __m128i sh = _mm_cvtsi32_si128(4 * ih);
      const __m128i up = _mm_cvtsi32_si128(2 * i <= 4 ? 4 - 2 * i : 0);
      const __m128i dn = _mm_cvtsi32_si128(2 * i <= 4 ? 0 : 2);
      auto six = [&](__m256i q, __m256i h) {
        const __m256i l = _mm256_and_si256(_mm256_srl_epi16(q, sh), m4b);
        const __m256i u = _mm256_and_si256(_mm256_srl_epi16(_mm256_sll_epi16(h, up), dn), m3);
        return _mm256_sub_epi8(_mm256_or_si256(l, u), k32);
      };
      const int k = 2 * j;
      int32_t slo, shi;
      std::memcpy(&slo, st + (k < 8 ? 4 * k : 32 + 4 * (k - 8)), 4);
      std::memcpy(&shi, st + (k + 1 < 8 ? 4 * (k + 1) : 32 + 4 * (k + 1 - 8)), 4);
      const __m128 dlo = _mm_mul_ps(_mm_cvtepi32_ps(_mm_cvtepi8_epi32(_mm_cvtsi32_si128(slo))), d4);
      const __m128 dhi = _mm_mul_ps(_mm_cvtepi32_ps(_mm_cvtepi8_epi32(_mm_cvtsi32_si128(shi))), d4);
      f(j, six(a01[ip], ha01), six(b01[ip], hb01), six(a23[ip], ha23), six(b23[ip], hb23), dlo, dhi);
    }
  }
}

// One group's int32 half-sums of a sub-block, [r0 r0 r2 r2 | r1 r1 r3 r3]: q4_k / q5_k u8
// values x s8 activations, lo + hi added in int16.
inline __m256i kdot4(__m256i lo01, __m256i hi01, __m256i lo23, __m256i hi23, __m256i alo, __m256i ahi) {
  const __m256i p01 = _mm256_add_epi16(_mm256_maddubs_epi16(lo01, alo), _mm256_maddubs_epi16(hi01, ahi));
  const __m256i p23 = _mm256_add_epi16(_mm256_maddubs_epi16(lo23, alo), _mm256_maddubs_epi16(hi23, ahi));
  return _mm256_madd_epi16(_mm256_hadd_epi16(p01, p23), _mm256_set1_epi16(1));
}
// q6_k: one half (16 values) of a group's sub-block, u8 activations + 128 x s8 values q - 32.
inline __m256i kdot6(__m256i w01, __m256i w23, __m256i au) {
  return _mm256_madd_epi16(_mm256_hadd_epi16(_mm256_maddubs_epi16(au, w01), _mm256_maddubs_epi16(au, w23)),
                           _mm256_set1_epi16(1));
}
inline __m256i kbcast16(const int8_t* p) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// The float steps of one (8 rows, token, sub-block), shared by GEMV and GEMM: two accumulators
// (two independent FMA chains), added at the end of each chunk of kKChunk super-blocks.
inline void kstep4(__m256i v, __m256 D, __m256 M, const BlockQ8A& x, __m256& a0, __m256& a1) {
  a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(D, _mm256_set1_ps(x.d)), a0);
  a1 = _mm256_fmadd_ps(M, _mm256_set1_ps(x.d * static_cast<float>(x.s)), a1);
}
inline void kstep6(__m256i vlo, __m256i vhi, __m256 Dlo, __m256 Dhi, const BlockQ8A& x, __m256& a0,
                   __m256& a1) {
  const __m256 da = _mm256_set1_ps(x.d);
  a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(vlo), _mm256_mul_ps(Dlo, da), a0);
  a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(vhi), _mm256_mul_ps(Dhi, da), a1);
}

// q6_k: 128 * sum(q - 32) per row of a half, in the lanes of one group's half-sums (what the
// activations' + 128 adds; subtracted from the dot products).
inline __m256i kq6_start(__m256i w01, __m256i w23) {
  return kdot6(w01, w23, _mm256_set1_epi8(static_cast<char>(0x80)));
}

// Rows [row, row + 8) of the panel that lie in [m0, m1): the maskstore / maskload mask.
inline __m256i kmask8(size_t row, size_t m0, size_t m1) {
  alignas(32) int32_t m[8];
  for (size_t i = 0; i < 8; ++i) m[i] = row + i >= m0 && row + i < m1 ? -1 : 0;
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(m));
}
// [A0 A2 B0 B2 | A1 A3 B1 B3] <-> [A0 A1 A2 A3 B0 B1 B2 B3]
inline __m256i kto_rows() { return _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7); }
inline __m256i kto_lanes() { return _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7); }

struct alignas(32) KSub {  // q4_k / q5_k sub-block of an 8-row panel
  __m256i w[8];            // group A lo01 hi01 lo23 hi23, then group B
  __m256 d;                // D, lane order
  __m256 m;                // -M, lane order
};
struct alignas(32) K6Sub {  // q6_k
  __m256i w[8];             // group A lo01 hi01 lo23 hi23 (values q - 32), then group B
  __m256i c[2];             // start values of the halves, lane order
  __m256 d[2];              // D_lo, D_hi, lane order
};
constexpr size_t kKChunk = 4;  // super-blocks per GEMM chunk: 32 sub-blocks, 10 / 12 KB

template <WeightType T>
inline void kbuild(const uint8_t* pa, const uint8_t* pb, KSub* ks) {
  const auto half = [](__m256 v, int j) {  // the 4 rows' scales of sub-block j
    return j & 1 ? _mm256_extractf128_ps(v, 1) : _mm256_castps256_ps128(v);
  };
  __m128 D[8], M[8];
  kdecode_q4k<T>(pa, [&](int j, __m256i lo01, __m256i hi01, __m256i lo23, __m256i hi23, __m256 d, __m256 m) {
    ks[j].w[0] = lo01, ks[j].w[1] = hi01, ks[j].w[2] = lo23, ks[j].w[3] = hi23;
    D[j] = half(d, j), M[j] = half(m, j);
  });
  kdecode_q4k<T>(pb, [&](int j, __m256i lo01, __m256i hi01, __m256i lo23, __m256i hi23, __m256 d, __m256 m) {
    ks[j].w[4] = lo01, ks[j].w[5] = hi01, ks[j].w[6] = lo23, ks[j].w[7] = hi23;
    ks[j].d = lane_order(D[j], half(d, j));
    ks[j].m = lane_order(M[j], half(m, j));
  });
}
inline void kbuild6(const uint8_t* pa, const uint8_t* pb, K6Sub* ks) {
  __m128 Dl[8], Dh[8];
  __m256i cl[8], ch[8];
  kdecode_q6k(pa, [&](int j, __m256i lo01, __m256i hi01, __m256i lo23, __m256i hi23, __m128 dl, __m128 dh) {
    ks[j].w[0] = lo01, ks[j].w[1] = hi01, ks[j].w[2] = lo23, ks[j].w[3] = hi23;
    Dl[j] = dl, Dh[j] = dh;
    cl[j] = kq6_start(lo01, lo23), ch[j] = kq6_start(hi01, hi23);
  });
  kdecode_q6k(pb, [&](int j, __m256i lo01, __m256i hi01, __m256i lo23, __m256i hi23, __m128 dl, __m128 dh) {
    ks[j].w[4] = lo01, ks[j].w[5] = hi01, ks[j].w[6] = lo23, ks[j].w[7] = hi23;
    ks[j].d[0] = lane_order(Dl[j], dl);
    ks[j].d[1] = lane_order(Dh[j], dh);
    ks[j].c[0] = _mm256_hadd_epi32(cl[j], kq6_start(lo01, lo23));
    ks[j].c[1] = _mm256_hadd_epi32(ch[j], kq6_start(hi01, hi23));
  });
}

// NT tokens x 8 rows over nsub decoded sub-blocks (act[t] at the chunk's first sub-block).
template <WeightType T, int NT>
inline void ksub_tokens(const KSub* ks, size_t nsub, const BlockQ8A* const* act, __m256* a0, __m256* a1) {
  for (size_t j = 0; j < nsub; ++j) {
    if (NT == 4) PIQUANT_MCA_BEGIN(T, 8, NT, 1);  // the full tile only (llvm-mca table)
    const KSub& k = ks[j];
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) {
      const BlockQ8A& x = act[t][j];
      const __m256i alo = kbcast16(x.qs), ahi = kbcast16(x.qs + 16);
      const __m256i v = _mm256_hadd_epi32(kdot4(k.w[0], k.w[1], k.w[2], k.w[3], alo, ahi),
                                          kdot4(k.w[4], k.w[5], k.w[6], k.w[7], alo, ahi));
      kstep4(v, k.d, k.m, x, a0[t], a1[t]);
    }
    if (NT == 4) PIQUANT_MCA_END();
  }
}
template <WeightType T, int NT>
inline void ksub_tokens(const K6Sub* ks, size_t nsub, const BlockQ8A* const* act, __m256* a0, __m256* a1) {
  const __m256i k128 = _mm256_set1_epi8(static_cast<char>(0x80));
  for (size_t j = 0; j < nsub; ++j) {
    if (NT == 4) PIQUANT_MCA_BEGIN(T, 8, NT, 1);  // the full tile only (llvm-mca table)
    const K6Sub& k = ks[j];
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) {
      const BlockQ8A& x = act[t][j];
      const __m256i alo = _mm256_xor_si256(kbcast16(x.qs), k128), ahi = _mm256_xor_si256(kbcast16(x.qs + 16), k128);
      const __m256i vlo = _mm256_sub_epi32(_mm256_hadd_epi32(kdot6(k.w[0], k.w[2], alo), kdot6(k.w[4], k.w[6], alo)), k.c[0]);
      const __m256i vhi = _mm256_sub_epi32(_mm256_hadd_epi32(kdot6(k.w[1], k.w[3], ahi), kdot6(k.w[5], k.w[7], ahi)), k.c[1]);
      kstep6(vlo, vhi, k.d[0], k.d[1], x, a0[t], a1[t]);
    }
    if (NT == 4) PIQUANT_MCA_END();
  }
}

template <WeightType T, class Sub, int NT>
inline void kpanel_tile(const GemmArgs& a, const Sub* ks, size_t j0, size_t nsub, size_t n, size_t row,
                        __m256i mask) {
  const BlockQ8A* act[NT];
  float* out[NT];
  __m256 a0[NT], a1[NT];
  for (int t = 0; t < NT; ++t) {
    act[t] = reinterpret_cast<const BlockQ8A*>(static_cast<const char*>(a.act) + (n + t) * a.act_stride) + j0;
    out[t] = a.dst + (n + t) * a.dst_stride + row;
    a0[t] = j0 == 0 ? _mm256_setzero_ps()
                    : _mm256_permutevar8x32_ps(_mm256_maskload_ps(out[t], mask), kto_lanes());
    a1[t] = _mm256_setzero_ps();
  }
  ksub_tokens<T, NT>(ks, nsub, act, a0, a1);
  for (int t = 0; t < NT; ++t) {
    _mm256_maskstore_ps(out[t], mask, _mm256_permutevar8x32_ps(_mm256_add_ps(a0[t], a1[t]), kto_rows()));
  }
}

template <WeightType T>
void kgemm_panel(const GemmArgs& a) {
  using Sub = std::conditional_t<T == WeightType::kQ6K, K6Sub, KSub>;
  constexpr size_t per = kSuperBlock / kBlock;
  constexpr size_t gb = kGroupBytes<T>;
  const size_t nsb = a.k / kSuperBlock;
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  Sub ks[kKChunk * per];
  for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += 2 * kRowInterleave) {
    const uint8_t* pa = wt + row / kRowInterleave * nsb * gb;
    // a lone group at the end of the range is paired with itself (lanes 4..7 never stored)
    const uint8_t* pb = row + kRowInterleave < a.m1 ? pa + nsb * gb : pa;
    const __m256i mask = kmask8(row, a.m0, a.m1);
    for (size_t s0 = 0; s0 < nsb; s0 += kKChunk) {
      const size_t nc = nsb - s0 < kKChunk ? nsb - s0 : kKChunk;
      for (size_t s = 0; s < nc; ++s) {
        if constexpr (T == WeightType::kQ6K) {
          kbuild6(pa + (s0 + s) * gb, pb + (s0 + s) * gb, ks + s * per);
        } else {
          kbuild<T>(pa + (s0 + s) * gb, pb + (s0 + s) * gb, ks + s * per);
        }
      }
      const size_t j0 = s0 * per, nsub = nc * per;
      size_t n = a.n0;
      for (; n + 4 <= a.n1; n += 4) kpanel_tile<T, Sub, 4>(a, ks, j0, nsub, n, row, mask);
      switch (a.n1 - n) {
        case 3: kpanel_tile<T, Sub, 3>(a, ks, j0, nsub, n, row, mask); break;
        case 2: kpanel_tile<T, Sub, 2>(a, ks, j0, nsub, n, row, mask); break;
        case 1: kpanel_tile<T, Sub, 1>(a, ks, j0, nsub, n, row, mask); break;
        default: break;
      }
    }
  }
}

// q4_k / q5_k GEMV: one group (4 rows, one stream) per pass over K, decoded in registers and
// paired with itself (the GEMM's lane operations on lanes [r0 r2 r0 r2 | r1 r3 r1 r3]). q6_k's
// GEMV is row-major (kgemv_q6k_rows, below).
template <WeightType T>
void kgemv_group(const GemmArgs& a) {
  static_assert(T == WeightType::kQ4K || T == WeightType::kQ5K, "q6_k: kgemv_q6k_rows");
  constexpr size_t gb = kGroupBytes<T>;
  const size_t nsb = a.k / kSuperBlock;
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  for (size_t n = a.n0; n < a.n1; ++n) {
    const auto* x = reinterpret_cast<const BlockQ8A*>(static_cast<const char*>(a.act) + n * a.act_stride);
    float* out = a.dst + n * a.dst_stride;
    for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += kRowInterleave) {
      const uint8_t* w = wt + row / kRowInterleave * nsb * gb;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      for (size_t sb = 0; sb < nsb; ++sb) {
        PIQUANT_MCA_BEGIN(T, 4, 1, 8);
        const BlockQ8A* xs = x + sb * (kSuperBlock / kBlock);
        kdecode_q4k<T>(w + sb * gb, [&](int j, __m256i lo01, __m256i hi01, __m256i lo23, __m256i hi23, __m256 d, __m256 m) {
          const __m256i i4 = kdot4(lo01, hi01, lo23, hi23, kbcast16(xs[j].qs), kbcast16(xs[j].qs + 16));
          // [r0 r2 r0 r2 | r1 r3 r1 r3] of sub-block j's 4 scales (elements 4 (j & 1) ..)
          const int o = 4 * (j & 1);
          const __m256i idx = _mm256_setr_epi32(o, o + 2, o, o + 2, o + 1, o + 3, o + 1, o + 3);
          kstep4(_mm256_hadd_epi32(i4, i4), _mm256_permutevar8x32_ps(d, idx),
                 _mm256_permutevar8x32_ps(m, idx), xs[j], a0, a1);
        });
        PIQUANT_MCA_END();
        if (sb % kKChunk == kKChunk - 1 || sb + 1 == nsb) {  // the GEMM's chunk ends: a0 + a1
          a0 = _mm256_add_ps(a0, a1);
          a1 = _mm256_setzero_ps();
        }
      }
      const __m256 y = _mm256_permutevar8x32_ps(a0, kto_rows());  // rows r0..r3 in lanes 0..3
      _mm256_maskstore_ps(out + row, kmask8(row, a.m0, row + kRowInterleave < a.m1 ? row + kRowInterleave : a.m1), y);
    }
  }
}

// q6_k GEMV, row-major (session 10; the avx512vnni GEMV's form): one group (4 rows, one
// sequential stream), row by row within a super-block, no lane shuffles of the weights. Per
// row and 128-value half: its ql bytes 0..31 and 32..63 and its 32 qh bytes as loaded, values
// 0..31 = (ql0 & 15) | (qh << 4 & 0x30), 32..63 = (ql1 & 15) | (qh << 2 & 0x30), 64..95 = (ql0
// >> 4 & 15) | (qh & 0x30), 96..127 = (ql1 >> 4 & 15) | (qh >> 2 & 0x30) (u8 0..63); each 32
// against the token's BlockQ8A as it is: vpmaddubsw (pairs <= 2 x 63 x 128 = 16128) and
// vpmaddwd by ones, 128-bit lane = one 16-value scale group. Four such results are reduced by a
// 4x4 dword transpose and adds to full group sums in lane 4L + j (group 2j + L; the second four
// groups 8 + ...), plus the start values -32 s_g from a per-token table, then acc_r +=
// float(isum) * (float(sc) * (d * d_a)), the int8 scales sign-extended from memory and put in
// the same lane order by vpermd. One accumulator per row, lanes summed at the end: not the
// GEMM's float order (tests: kGemvOwnOrder).
struct alignas(32) K6ActA {
  int32_t off[2][8];  // -32 * (sum of group g), lane 4L + j = group 2j + L (+ 8 for [1])
  float da[2][8];     // d_a of the block of the same group
};
inline const K6ActA* k6_rows_act(const BlockQ8A* x, size_t nsb) {
  static thread_local std::vector<K6ActA> buf;
  if (buf.size() < nsb) buf.resize(nsb);
  for (size_t sb = 0; sb < nsb; ++sb) {
    K6ActA& o = buf[sb];
    for (int g = 0; g < 16; ++g) {
      const BlockQ8A& b = x[8 * sb + g / 2];
      int32_t sum = 0;
      for (int i = 0; i < 16; ++i) sum += b.qs[16 * (g % 2) + i];
      const int h = g / 8, gg = g % 8, lane = 4 * (gg % 2) + gg / 2;
      o.off[h][lane] = -32 * sum;
      o.da[h][lane] = b.d;
    }
  }
  return buf.data();
}

inline void kgemv_q6k_rows(const GemmArgs& a) {
  constexpr size_t bb = sizeof(BlockQ6K), gb = kGroupBytes<WeightType::kQ6K>;
  const size_t nsb = a.k / kSuperBlock;
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  const __m256i m4b = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30), ones = _mm256_set1_epi16(1);
  const __m256i perm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);  // sc[0..7] -> lane 4L + j = 2j + L
  for (size_t n = a.n0; n < a.n1; ++n) {
    const auto* x = reinterpret_cast<const BlockQ8A*>(static_cast<const char*>(a.act) + n * a.act_stride);
    const K6ActA* xa = k6_rows_act(x, nsb);
    float* out = a.dst + n * a.dst_stride;
    for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += kRowInterleave) {
      const uint8_t* w = wt + row / kRowInterleave * nsb * gb;
      // one row's super-block at b against the 8 blocks at xs: acc += its 16 scaled group sums
      const auto row_step = [&](const uint8_t* b, const BlockQ8A* xs, const K6ActA& t, __m256 acc) {
        __m256i s[2];
        for (int hh = 0; hh < 2; ++hh) {
          const __m256i ql0 = loadu256(b + 64 * hh), ql1 = loadu256(b + 64 * hh + 32);
          const __m256i qh = loadu256(b + 128 + 32 * hh);
          __m256i v[4];
          v[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4b), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
          v[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4b), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
          v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4b), _mm256_and_si256(qh, m30));
          v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4b),
                                 _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
          __m256i p[4];
          for (int i = 0; i < 4; ++i) {
            p[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(v[i], loadu256(reinterpret_cast<const uint8_t*>(xs[4 * hh + i].qs))), ones);
          }
          const __m256i a0 = _mm256_unpacklo_epi32(p[0], p[1]), a1 = _mm256_unpackhi_epi32(p[0], p[1]);
          const __m256i c0 = _mm256_unpacklo_epi32(p[2], p[3]), c1 = _mm256_unpackhi_epi32(p[2], p[3]);
          const __m256i r = _mm256_add_epi32(_mm256_add_epi32(_mm256_unpacklo_epi64(a0, c0), _mm256_unpackhi_epi64(a0, c0)),
                                             _mm256_add_epi32(_mm256_unpacklo_epi64(a1, c1), _mm256_unpackhi_epi64(a1, c1)));
          s[hh] = _mm256_add_epi32(r, _mm256_load_si256(reinterpret_cast<const __m256i*>(t.off[hh])));
        }
        uint16_t dh;
        std::memcpy(&dh, b + 208, sizeof dh);
        const __m256 d = _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(dh)));
        for (int hh = 0; hh < 2; ++hh) {
          const __m256i sc = _mm256_permutevar8x32_epi32(
              _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 192 + 8 * hh))), perm);
          const __m256 g = _mm256_mul_ps(_mm256_cvtepi32_ps(sc), _mm256_mul_ps(d, _mm256_load_ps(t.da[hh])));
          acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[hh]), g, acc);
        }
        return acc;
      };
      __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
      for (size_t sb = 0; sb < nsb; ++sb) {
        PIQUANT_MCA_BEGIN(WeightType::kQ6K, 4, 1, 8);
        const uint8_t* p = w + sb * gb;
        for (size_t o = 0; o < gb; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchBytes + o), _MM_HINT_T0);
        const BlockQ8A* xs = x + sb * (kSuperBlock / kBlock);
        acc0 = row_step(p, xs, xa[sb], acc0);
        acc1 = row_step(p + bb, xs, xa[sb], acc1);
        acc2 = row_step(p + 2 * bb, xs, xa[sb], acc2);
        acc3 = row_step(p + 3 * bb, xs, xa[sb], acc3);
        PIQUANT_MCA_END();
      }
      const float y[4] = {hsum(acc0), hsum(acc1), hsum(acc2), hsum(acc3)};
      for (size_t r = 0; r < 4; ++r) {
        if (row + r >= a.m0 && row + r < a.m1) out[row + r] = y[r];
      }
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

void gemv_f32_q8_q4k_avx2(const GemmArgs& a) { kgemv_group<WeightType::kQ4K>(a); }
void gemm_f32_q8_q4k_8x4_avx2(const GemmArgs& a) { kgemm_panel<WeightType::kQ4K>(a); }
void gemv_f32_q8_q5k_avx2(const GemmArgs& a) { kgemv_group<WeightType::kQ5K>(a); }
void gemm_f32_q8_q5k_8x4_avx2(const GemmArgs& a) { kgemm_panel<WeightType::kQ5K>(a); }
void gemv_f32_q8_q6k_avx2(const GemmArgs& a) { kgemv_q6k_rows(a); }
void gemm_f32_q8_q6k_8x4_avx2(const GemmArgs& a) { kgemm_panel<WeightType::kQ6K>(a); }
void gemv_f32_q8_q50_avx2(const GemmArgs& a) { kgemv<WeightType::kQ5_0>(a); }
void gemm_f32_q8_q50_4x4_avx2(const GemmArgs& a) { kgemm<WeightType::kQ5_0>(a); }
void gemv_f32_q8_q51_avx2(const GemmArgs& a) { kgemv<WeightType::kQ5_1>(a); }
void gemm_f32_q8_q51_4x4_avx2(const GemmArgs& a) { kgemm<WeightType::kQ5_1>(a); }

}  // namespace piquant::kernels
