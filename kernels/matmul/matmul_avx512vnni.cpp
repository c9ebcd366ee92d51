// GEMV and GEMM over packed q8 / q4 / q4m weights with AVX-512 VNNI (vpdpbusd: u8 x s8 -> s32).
//
// Packed group block (4 rows, one K-block; common/pack.hpp), one zmm of quants per half-block:
//     q4:  [d0..d3][ r0 qs(16) | r1 qs | r2 qs | r3 qs ]          -> lo = q & 15, hi = q >> 4
//     q8:  [d0..d3][ r0 k0:16 | r1 | r2 | r3 ][ r0 k16:32 | r1 | r2 | r3 ]  (xor 0x80 -> u8)
// so 128-bit lane r of `lo` holds row r's elements 0..15 and of `hi` its elements 16..31; the
// activation halves are broadcast to all four lanes and two vpdpbusd give, in lanes 4r..4r+3,
// four partial sums of row r. The unsigned weights need a correction, folded into the start
// value of the integer accumulator: q4 (nibble - 8): -8 * sum(a) per row = -2 * s per lane;
// q8 (w + 128): -32 * s per lane; q4m adds m * d_a * s in float instead.
// Tile: 4 rows x NT tokens (NT = 8 for GEMM, 1 for GEMV); each decoded weight block is reused
// for NT tokens. Per block: one int32 -> float conversion and one FMA per (4 rows, token), into
// two alternating accumulators (even/odd blocks) to hide FMA latency. GEMV and GEMM run the
// same per-token operation sequence, so their results are bit-identical.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "common/mca.hpp"
#include "common/pack.hpp"
#include "matmul/matmul.hpp"
#include "matmul/tile_driver.hpp"

namespace piquant::kernels {
namespace {

template <WeightType T, int NT>
struct Tile {
  __m512 acc[NT][2];
  __m128 macc[NT];  // q4m: sum of m * d_a * s per row

  template <int S>
  inline void step(const uint8_t* __restrict blk, const BlockQ8A* const* __restrict act,
                   size_t b) {
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m128 d4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk)));
    const __m512 d16 = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(d4));
    __m512i lo, hi;
    if (T == WeightType::kQ8) {
      const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
      lo = _mm512_xor_si512(_mm512_loadu_si512(blk + 8), flip);
      hi = _mm512_xor_si512(_mm512_loadu_si512(blk + 72), flip);
    } else {
      const __m512i mask = _mm512_set1_epi8(0x0F);
      const __m512i q = _mm512_loadu_si512(blk + (T == WeightType::kQ4M ? 16 : 8));
      lo = _mm512_and_si512(q, mask);
      hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), mask);
    }
    __m128 m4 = _mm_setzero_ps();
    if (T == WeightType::kQ4M) {
      m4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 8)));
    }
    for (int t = 0; t < NT; ++t) {
      const BlockQ8A* a = act[t] + b;
      const __m512i alo = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a->qs)));
      const __m512i ahi = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a->qs + 16)));
      __m512i ia = T == WeightType::kQ4   ? _mm512_set1_epi32(-2 * a->s)
                   : T == WeightType::kQ8 ? _mm512_set1_epi32(-32 * a->s)
                                          : _mm512_setzero_si512();
      ia = _mm512_dpbusd_epi32(ia, lo, alo);
      ia = _mm512_dpbusd_epi32(ia, hi, ahi);
      acc[t][S] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia), _mm512_mul_ps(d16, _mm512_set1_ps(a->d)),
                                  acc[t][S]);
      if (T == WeightType::kQ4M) {
        macc[t] = _mm_fmadd_ps(m4, _mm_set1_ps(a->d * static_cast<float>(a->s)), macc[t]);
      }
    }
  }

  // Rows [row, row + 4) of group `w` for NT tokens; writes rows within [m0, m1).
  inline void run(const uint8_t* __restrict w, size_t nb, const BlockQ8A* const* act,
                  float* const* out, size_t row, size_t m0, size_t m1) {
    for (int t = 0; t < NT; ++t) {
      acc[t][0] = acc[t][1] = _mm512_setzero_ps();
      macc[t] = _mm_setzero_ps();
    }
    constexpr size_t gb = kGroupBytes<T>;
    size_t b = 0;
    for (; b + 2 <= nb; b += 2) {
      PIQUANT_MCA_BEGIN(T, 4, NT, 2);
      step<0>(w + b * gb, act, b);
      step<1>(w + (b + 1) * gb, act, b + 1);
      PIQUANT_MCA_END();
    }
    if (b < nb) step<0>(w + b * gb, act, b);
    for (int t = 0; t < NT; ++t) {
      const __m512 v = _mm512_add_ps(acc[t][0], acc[t][1]);
      // Lane group r (4 floats) -> row r.
      const __m128 h01 = _mm_hadd_ps(_mm512_extractf32x4_ps(v, 0), _mm512_extractf32x4_ps(v, 1));
      const __m128 h23 = _mm_hadd_ps(_mm512_extractf32x4_ps(v, 2), _mm512_extractf32x4_ps(v, 3));
      __m128 y = _mm_hadd_ps(h01, h23);
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
};

// The rows of a.m0..a.m1 for the NT tokens from n, one group tile at a time. Also the K-quant
// tiles' (KTile, below: the same run() signature).
template <class Tl, WeightType T, int NT>
inline void tile_rows(const GemmArgs& a, size_t n) {
  const size_t nb = a.k / (T == WeightType::kQ4K || T == WeightType::kQ5K || T == WeightType::kQ6K
                               ? kSuperBlock : kBlock);
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  Tl tile;
  auto group = [&](const BlockQ8A* const* act, float* const* out, size_t row) PIQUANT_TILE_INLINE {
    tile.run(wt + row / kRowInterleave * nb * kGroupBytes<T>, nb, act, out, row, a.m0, a.m1);
  };
  tiles::group_rows<NT>(a, n, group);
}

// The tile drivers (matmul/tile_driver.hpp) with a 4-row tile of up to 8 tokens (Tile here,
// KTile for the GGUF types). GEMM: per group, token tiles of 8 (then one tail tile), so each
// group's weights (K/32 * 72 bytes for q4, 12.7 KB at K = 5632) stay in L1 across the token tiles.
template <template <WeightType, int> class Tl, WeightType T>
void gemv(const GemmArgs& a) {
  tiles::gemv(a, [](const GemmArgs& r, auto nt, size_t n) PIQUANT_TILE_INLINE {
    constexpr int kNt = decltype(nt)::value;
    tile_rows<Tl<T, kNt>, T, kNt>(r, n);
  });
}
template <template <WeightType, int> class Tl, WeightType T>
void gemm(const GemmArgs& a) {
  tiles::gemm<8>(a, kRowInterleave, [](const GemmArgs& r, auto nt, size_t n) PIQUANT_TILE_INLINE {
    constexpr int kNt = decltype(nt)::value;
    tile_rows<Tl<T, kNt>, T, kNt>(r, n);
  });
}

// --- q4: 16-row panels with one full integer sum per row and block ------------------------
//
// The kernels above leave four partial sums per row in the lanes of a vpdpbusd result, so every
// (4 rows, token, block) pays an int -> float conversion, a scale product and an FMA on 16
// lanes of which 4 are rows. The q4 kernels below work on panels of 4 groups (16 rows) whose
// lanes are rows, in the order lane 4r + g = row r of group g (a 4x4 dword transpose of the
// four groups' registers, within each 128-bit lane):
// - GEMV: the four groups' vpdpbusd results are reduced by unpacks and adds (the same
//   transpose), so the offset, conversion, scale product and FMA run once per 16 rows.
// - GEMM: a chunk of kChunk blocks of the panel is unpacked once into `Panel` (8 zmm per
//   block: lane 4r + g of vector j holds the four bytes of quad j, nibbles split; the scales as
//   f32), then every token tile runs 8 vpdpbusd per (16 rows, token, block) with the
//   activation's quad j broadcast from memory, nothing else but the start value (-8 s), one
//   conversion, one scale product and one FMA. Chunk partial sums go through dst (masked,
//   exact), so the float sequence per (row, token) is the GEMV's: acc = fma(float(isum),
//   d_w * d_a, acc), blocks in order, one accumulator: GEMV == GEMM bit for bit, and no split
//   of rows or tokens changes a bit (each lane only ever sees its own row).

// lane 4r + g <-> row 4g + r (an involution).
inline __m512i transpose_idx() {
  return _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
}

// 4x4 dword transpose inside each 128-bit lane of four registers: out lane (4r + g) = x_g[4r +
// j] for out j; builds the GEMM panel (j = quad).
inline void transpose4(__m512i x0, __m512i x1, __m512i x2, __m512i x3, __m512i* o) {
  const __m512i a = _mm512_unpacklo_epi32(x0, x1), b = _mm512_unpackhi_epi32(x0, x1);
  const __m512i c = _mm512_unpacklo_epi32(x2, x3), d = _mm512_unpackhi_epi32(x2, x3);
  o[0] = _mm512_unpacklo_epi64(a, c);
  o[1] = _mm512_unpackhi_epi64(a, c);
  o[2] = _mm512_unpacklo_epi64(b, d);
  o[3] = _mm512_unpackhi_epi64(b, d);
}

// Lane 4r + i = x_i[4r] + x_i[4r + 1] + x_i[4r + 2] + x_i[4r + 3]: the quad sums of four
// registers, 6 unpacks and 3 adds (the full transpose4 and its adds cost 8 and 3).
inline __m512i hsum4(__m512i x0, __m512i x1, __m512i x2, __m512i x3) {
  const __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(x0, x1), _mm512_unpackhi_epi32(x0, x1));
  const __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(x2, x3), _mm512_unpackhi_epi32(x2, x3));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
}

// Four groups' scales d[g][r] (fp16) -> f32 in lane order 4r + g.
inline __m512 panel_scales(const uint8_t* const* blk) {
  const __m256i h = _mm256_setr_epi64x(
      *reinterpret_cast<const int64_t*>(blk[0]), *reinterpret_cast<const int64_t*>(blk[1]),
      *reinterpret_cast<const int64_t*>(blk[2]), *reinterpret_cast<const int64_t*>(blk[3]));
  return _mm512_permutexvar_ps(transpose_idx(), _mm512_cvtph_ps(h));
}

// Rows [row, row + 16) of the panel that lie in [m0, m1): the store mask (lane i = row + i).
inline __mmask16 row_mask(size_t row, size_t m0, size_t m1) {
  uint32_t mask = 0;
  for (size_t i = 0; i < 16; ++i) {
    if (row + i >= m0 && row + i < m1) mask |= 1u << i;
  }
  return static_cast<__mmask16>(mask);
}

// The four groups of the panel at `row` (a group past m1 repeats the last one: its lanes are
// computed and never stored, and each lane only sees its own row).
inline void panel_groups(const uint8_t* wt, size_t nb, size_t row, size_t m1, const uint8_t** g) {
  constexpr size_t gb = kGroupBytes<WeightType::kQ4>;
  const size_t last = (m1 - 1) / kRowInterleave;
  for (size_t i = 0; i < 4; ++i) {
    const size_t gi = row / kRowInterleave + i;
    g[i] = wt + (gi <= last ? gi : last) * nb * gb;
  }
}

// GEMM: K in chunks of kChunk blocks (a panel chunk is 18 KB: stays in L1 across token tiles).
constexpr size_t kChunk = 32;
constexpr int kTokens = 8;  // token tile

struct alignas(64) PanelBlock {
  __m512i w[8];  // lane 4r + g: bytes 4j..4j+3 of row r of group g (j < 4 low, j >= 4 high nibbles)
  __m512 d;      // scales, same lane order
};

inline void build_panel(const uint8_t* const* g, size_t b0, size_t nbc, PanelBlock* pb) {
  constexpr size_t gb = kGroupBytes<WeightType::kQ4>;
  const __m512i mask = _mm512_set1_epi8(0x0F);
  for (size_t b = 0; b < nbc; ++b) {
    const uint8_t* blk[4];
    __m512i lo[4], hi[4];
    for (int i = 0; i < 4; ++i) {
      blk[i] = g[i] + (b0 + b) * gb;
      const __m512i q = _mm512_loadu_si512(blk[i] + 8);
      lo[i] = _mm512_and_si512(q, mask);
      hi[i] = _mm512_and_si512(_mm512_srli_epi16(q, 4), mask);
    }
    transpose4(lo[0], lo[1], lo[2], lo[3], pb[b].w);
    transpose4(hi[0], hi[1], hi[2], hi[3], pb[b].w + 4);
    pb[b].d = panel_scales(blk);
  }
}

// NT tokens x 16 rows over one chunk of the panel.
template <int NT>
inline void panel_tokens(const PanelBlock* pb, size_t nbc, const BlockQ8A* const* act,
                         float* const* out, size_t row, __mmask16 m, bool first) {
  const __m512i order = transpose_idx();
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  if (!first) {
    for (int t = 0; t < NT; ++t) {
      acc[t] = _mm512_permutexvar_ps(order, _mm512_maskz_loadu_ps(m, out[t] + row));
    }
  }
  const BlockQ8A* x[NT];
  for (int t = 0; t < NT; ++t) x[t] = act[t];
  for (size_t b = 0; b < nbc; ++b) {
    if (NT == kTokens) PIQUANT_MCA_BEGIN(WeightType::kQ4, 16, NT, 1);  // not the tails
    const PanelBlock& p = pb[b];
    const __m512i w0 = p.w[0], w1 = p.w[1], w2 = p.w[2], w3 = p.w[3];
    const __m512i w4 = p.w[4], w5 = p.w[5], w6 = p.w[6], w7 = p.w[7];
    const __m512 d = p.d;
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      const int32_t* q = reinterpret_cast<const int32_t*>(x[t][b].qs);
      __m512i v = _mm512_set1_epi32(-8 * x[t][b].s);
      v = _mm512_dpbusd_epi32(v, w0, _mm512_set1_epi32(q[0]));
      v = _mm512_dpbusd_epi32(v, w1, _mm512_set1_epi32(q[1]));
      v = _mm512_dpbusd_epi32(v, w2, _mm512_set1_epi32(q[2]));
      v = _mm512_dpbusd_epi32(v, w3, _mm512_set1_epi32(q[3]));
      v = _mm512_dpbusd_epi32(v, w4, _mm512_set1_epi32(q[4]));
      v = _mm512_dpbusd_epi32(v, w5, _mm512_set1_epi32(q[5]));
      v = _mm512_dpbusd_epi32(v, w6, _mm512_set1_epi32(q[6]));
      v = _mm512_dpbusd_epi32(v, w7, _mm512_set1_epi32(q[7]));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(d, _mm512_set1_ps(x[t][b].d)), acc[t]);
    }
    if (NT == kTokens) PIQUANT_MCA_END();
  }
  for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(out[t] + row, m, _mm512_permutexvar_ps(order, acc[t]));
}

// GEMV: one group (4 rows, one stream) at a time, 4 blocks per step: the four blocks'
// vpdpbusd results (started at zero) are reduced by hsum4 to lane 4r + i = row r, block i,
// permuted to 4i + r, given the blocks' -8 s offsets by one vector add (a per-call table),
// converted once; then per block one 128-bit scale product and FMA per 4 rows, blocks in order.
// (Session 9's small-batch path ran this for 2-3 tokens at once; the tokens-in-lanes kernels
// below replaced it: 2 tokens 1.4-1.6x -> 1.1-1.45x a cold GEMV, 3 tokens 1.9-2.2x -> 1.4-1.8x.)

// One step of gemv_group: CNT (1-4) blocks from block b. The full step (CNT = 4) has no
// branches: the loop over a row's blocks runs it and the tail runs one step of the rest.
template <int CNT>
PIQUANT_TILE_INLINE inline void gemv_group_step(const uint8_t* w, size_t b, const BlockQ8A* act,
                                                const int32_t* corr, __m128& acc) {
  constexpr size_t gb = kGroupBytes<WeightType::kQ4>;
  const __m512i mask = _mm512_set1_epi8(0x0F);
  __m512i p[4];
  for (int i = 0; i < 4; ++i) {
    if (i < CNT) {
      const uint8_t* blk = w + (b + i) * gb;
      const __m512i q = _mm512_loadu_si512(blk + 8);
      const __m512i lo = _mm512_and_si512(q, mask);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), mask);
      const BlockQ8A* x = act + b + i;
      const __m512i alo = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x->qs)));
      const __m512i ahi = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x->qs + 16)));
      p[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, alo);
      p[i] = _mm512_dpbusd_epi32(p[i], hi, ahi);
    } else {
      p[i] = _mm512_setzero_si512();
    }
  }
  const __m512i v = hsum4(p[0], p[1], p[2], p[3]);
  const __m512i o = _mm512_loadu_si512(corr + b * 4);  // lane 4i + r: -8 s of block b + i
  const __m512 f = _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_permutexvar_epi32(transpose_idx(), v), o));
  for (int i = 0; i < CNT; ++i) {
    const __m128 dw = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + (b + i) * gb)));
    const __m128 fi = i == 0 ? _mm512_castps512_ps128(f)
                     : i == 1 ? _mm512_extractf32x4_ps(f, 1)
                     : i == 2 ? _mm512_extractf32x4_ps(f, 2)
                              : _mm512_extractf32x4_ps(f, 3);
    acc = _mm_fmadd_ps(fi, _mm_mul_ps(dw, _mm_set1_ps(act[b + i].d)), acc);
  }
}

// Rows [row, row + 4) of group `w` for one token; writes rows within [m0, m1).
inline void gemv_group(const uint8_t* w, size_t nb, const BlockQ8A* act, const int32_t* corr, float* out,
                       size_t row, size_t m0, size_t m1) {
  __m128 acc = _mm_setzero_ps();
  size_t b = 0;
  for (; b + 4 <= nb; b += 4) {
    PIQUANT_MCA_BEGIN(WeightType::kQ4, 4, 1, 4);
    gemv_group_step<4>(w, b, act, corr, acc);
    PIQUANT_MCA_END();
  }
  switch (nb - b) {
    case 3: gemv_group_step<3>(w, b, act, corr, acc); break;
    case 2: gemv_group_step<2>(w, b, act, corr, acc); break;
    case 1: gemv_group_step<1>(w, b, act, corr, acc); break;
    default: break;
  }
  if (row >= m0 && row + 4 <= m1) {
    _mm_storeu_ps(out + row, acc);
  } else {
    alignas(16) float tmp[4];
    _mm_store_ps(tmp, acc);
    for (size_t r = 0; r < 4; ++r) {
      if (row + r >= m0 && row + r < m1) out[row + r] = tmp[r];
    }
  }
}

void gemv_q4(const GemmArgs& a) {
  const size_t nb = a.k / kBlock;
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  // Per token, the nibbles' -8 offset of each block (-8 s, s = the block's activation sum) laid
  // out as the step's reduced lanes (4i + r: block i, row r), 16 ints per 4 blocks, zero past
  // the last block: one vector add per step instead of a broadcast start value per block.
  const size_t steps = (nb + 3) / 4;
  static thread_local std::vector<int32_t> corr;
  if (corr.size() < steps * 16) corr.resize(steps * 16);
  for (size_t n = a.n0; n < a.n1; ++n) {
    const auto* x = reinterpret_cast<const BlockQ8A*>(static_cast<const char*>(a.act) + n * a.act_stride);
    for (size_t j = 0; j < steps * 4; ++j) {
      const int32_t v = j < nb ? -8 * x[j].s : 0;
      for (size_t r = 0; r < 4; ++r) corr[j * 4 + r] = v;
    }
    auto group = [&](const BlockQ8A* const* act, float* const* out, size_t row) PIQUANT_TILE_INLINE {
      gemv_group(wt + row / kRowInterleave * nb * kGroupBytes<WeightType::kQ4>, nb, act[0], corr.data(),
                 out[0], row, a.m0, a.m1);
    };
    tiles::group_rows<1>(a, n, group);
  }
}

// --- q4 small batches: tokens in the lanes (session 10) ------------------------------------
//
// A decode step of 2..kSmallMax sequences runs one group (4 rows, one weight stream) at a
// time as the GEMV does, with tokens in the lanes, so that no lane needs a reduction:
// - full tile (4 tokens), lane 4r + t = (row r, token t): per block, `vpshufd` spreads dword
//   (quad) j of each row's 16 packed bytes over its 128-bit lane (R_j, j = 0..3, the row's lane
//   as loaded), R_j & 0x0F are the values of quad j, R_j & 0xF0 sixteen times those of quad
//   4 + j (no shift); 4 + 4 vpdpbusd with the 128-bit broadcast of the 4 tokens' quads j and
//   4 + j give the low and (x16) high sums in each (row, token) lane, and
//   isum = lo + (hi >> 4) (exact: hi is a multiple of 16).
// - half tile (2 tokens), lane 4r + 2h + t = (row r, half h, token t): R_j & (0x0F, 0x0F, 0xF0,
//   0xF0 per dword) puts quad j (h = 0) and 16 x quad 4 + j (h = 1) side by side, 4 vpdpbusd,
//   and isum = lanes h = 0 + (lanes h = 1 >> 4) after one `vpshufd`: no padding tokens for an
//   even count.
// The activations are rearranged once per call (SmallAct: per tile and block, the tokens' quads
// as the lanes want them, the start values -8 s, the scales d_a; padding tokens are zeros,
// computed and never stored). Then one conversion, one d_w * d_a product and one FMA per
// (tile, block): per (row, token) the GEMV's float sequence (acc = fma(float(isum), d_w * d_a,
// acc), blocks in order, one accumulator), so the bits are the GEMV's.
// Software prefetch 1 KB ahead in the group's stream: from DRAM, 6-8 tokens took 3.3-3.6x a
// cold GEMV without it, 2.6-3.0x with it (4 KB ahead: 2.6-3.4x; 4 tokens unchanged).
constexpr size_t kSmallMax = 8, kSmallPf = 1024;

struct alignas(16) SmallAct {
  int32_t q[8][4];  // full: q[j][t] = quad j of token t; half: q[j] = (t0 j, t1 j, t0 4+j, t1 4+j)
  int32_t s[4];     // start values: full -8 s of token t; half (-8 s0, -8 s1, 0, 0)
  float d[4];       // d_a: full token t; half (d0, d1, 0, 0)
};

// The activations of tokens [n0, n1) as nf full tiles then nh half tiles of nb SmallAct each
// (thread-local buffer).
inline const SmallAct* small_acts(const GemmArgs& a, int nf, int nh) {
  static thread_local std::vector<SmallAct> buf;
  const size_t nb = a.k / kBlock, n = a.n1 - a.n0, tl = static_cast<size_t>(nf + nh);
  if (buf.size() < tl * nb) buf.resize(tl * nb);
  std::memset(static_cast<void*>(buf.data()), 0, tl * nb * sizeof(SmallAct));
  for (size_t i = 0; i < n; ++i) {
    const auto* x = reinterpret_cast<const BlockQ8A*>(static_cast<const char*>(a.act) + (a.n0 + i) * a.act_stride);
    const bool full = i < 4 * static_cast<size_t>(nf);
    const size_t tile = full ? i / 4 : static_cast<size_t>(nf), t = full ? i % 4 : i - 4 * nf;
    SmallAct* o = buf.data() + tile * nb;
    for (size_t b = 0; b < nb; ++b) {
      if (full) {
        for (int j = 0; j < 8; ++j) std::memcpy(&o[b].q[j][t], x[b].qs + 4 * j, 4);
      } else {
        for (int j = 0; j < 4; ++j) {
          std::memcpy(&o[b].q[j][t], x[b].qs + 4 * j, 4);
          std::memcpy(&o[b].q[j][2 + t], x[b].qs + 16 + 4 * j, 4);
        }
      }
      o[b].s[t] = -8 * x[b].s;
      o[b].d[t] = x[b].d;
    }
  }
  return buf.data();
}

inline __m512i bcast128(const int32_t* p) {
  return _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(p)));
}

// Rows [row, row + 4) of group `w` for NF full tiles and NH (0 or 1) half tiles; `cnt` real
// tokens in all; writes rows within [m0, m1).
template <int NF, int NH>
inline void small_group(const uint8_t* __restrict w, size_t nb, const SmallAct* __restrict x,
                        float* const* out, size_t cnt, size_t row, size_t m0, size_t m1) {
  constexpr size_t gb = kGroupBytes<WeightType::kQ4>;
  constexpr int NT = NF + NH;
  const __m512i m_lo = _mm512_set1_epi8(0x0F), m_hi = _mm512_set1_epi8(static_cast<char>(0xF0));
  const __m512i m_half = _mm512_set4_epi32(static_cast<int>(0xF0F0F0F0), static_cast<int>(0xF0F0F0F0),
                                           0x0F0F0F0F, 0x0F0F0F0F);
  const __m512i didx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  __m512 acc[NT];
  for (int g = 0; g < NT; ++g) acc[g] = _mm512_setzero_ps();
  for (size_t b = 0; b < nb; ++b) {
    const uint8_t* blk = w + b * gb;
    _mm_prefetch(reinterpret_cast<const char*>(blk + kSmallPf), _MM_HINT_T0);
    const __m512i q = _mm512_loadu_si512(blk + 8);
    const __m512 dw = _mm512_permutexvar_ps(
        didx, _mm512_castps128_ps512(_mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk)))));
    __m512i r[4];
    r[0] = _mm512_shuffle_epi32(q, _MM_PERM_AAAA);
    r[1] = _mm512_shuffle_epi32(q, _MM_PERM_BBBB);
    r[2] = _mm512_shuffle_epi32(q, _MM_PERM_CCCC);
    r[3] = _mm512_shuffle_epi32(q, _MM_PERM_DDDD);
    if constexpr (NF > 0) {
      __m512i lo[4], hi[4];
      for (int j = 0; j < 4; ++j) {
        lo[j] = _mm512_and_si512(r[j], m_lo);
        hi[j] = _mm512_and_si512(r[j], m_hi);
      }
#pragma GCC unroll 4
      for (int g = 0; g < NF; ++g) {
        const SmallAct& a = x[g * nb + b];
        __m512i vl = bcast128(a.s), vh = _mm512_setzero_si512();
        for (int j = 0; j < 4; ++j) {
          vl = _mm512_dpbusd_epi32(vl, lo[j], bcast128(a.q[j]));
          vh = _mm512_dpbusd_epi32(vh, hi[j], bcast128(a.q[4 + j]));
        }
        const __m512i v = _mm512_add_epi32(vl, _mm512_srai_epi32(vh, 4));
        acc[g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v),
                                 _mm512_mul_ps(dw, _mm512_broadcast_f32x4(_mm_load_ps(a.d))), acc[g]);
      }
    }
    if constexpr (NH > 0) {
      const SmallAct& a = x[NF * nb + b];
      __m512i v = bcast128(a.s);
      for (int j = 0; j < 4; ++j) v = _mm512_dpbusd_epi32(v, _mm512_and_si512(r[j], m_half), bcast128(a.q[j]));
      v = _mm512_add_epi32(v, _mm512_srai_epi32(_mm512_shuffle_epi32(v, _MM_PERM_DCDC), 4));
      acc[NF] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v),
                                _mm512_mul_ps(dw, _mm512_broadcast_f32x4(_mm_load_ps(a.d))), acc[NF]);
    }
  }
  const bool full = row >= m0 && row + 4 <= m1;
  for (int g = 0; g < NT; ++g) {
    // lane 4r + t -> 4t + r: token t's 4 rows in 128-bit lane t
    alignas(64) float tmp[16];
    _mm512_store_ps(tmp, _mm512_permutexvar_ps(transpose_idx(), acc[g]));
    const size_t t0 = 4 * static_cast<size_t>(g), tn = g < NF ? 4 : 2;
    for (size_t t = 0; t < tn && t0 + t < cnt; ++t) {
      float* o = out[t0 + t];
      if (full) {
        std::memcpy(o + row, tmp + 4 * t, 16);
      } else {
        for (size_t i = 0; i < 4; ++i) {
          if (row + i >= m0 && row + i < m1) o[row + i] = tmp[4 * t + i];
        }
      }
    }
  }
}

template <int NF, int NH>
void gemm_q4_small(const GemmArgs& a) {
  const size_t nb = a.k / kBlock, cnt = a.n1 - a.n0;
  const SmallAct* x = small_acts(a, NF, NH);
  float* out[4 * (NF + NH)];
  for (size_t t = 0; t < 4 * (NF + NH); ++t) out[t] = t < cnt ? a.dst + (a.n0 + t) * a.dst_stride : nullptr;
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += kRowInterleave) {
    small_group<NF, NH>(wt + row / kRowInterleave * nb * kGroupBytes<WeightType::kQ4>, nb, x, out, cnt,
                        row, a.m0, a.m1);
  }
}

void gemm_q4(const GemmArgs& a) {
  const size_t nb = a.k / kBlock;
  const size_t cnt = a.n1 - a.n0;
  if (cnt >= 2 && cnt <= kSmallMax) {  // a decode step of a few sequences
    switch (cnt) {
      case 2: gemm_q4_small<0, 1>(a); return;
      case 3: case 4: gemm_q4_small<1, 0>(a); return;
      case 5: case 6: gemm_q4_small<1, 1>(a); return;
      default: gemm_q4_small<2, 0>(a); return;
    }
  }
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  PanelBlock pb[kChunk];
  for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += 16) {
    const uint8_t* g[4];
    panel_groups(wt, nb, row, a.m1, g);
    const __mmask16 m = row_mask(row, a.m0, a.m1);
    for (size_t b0 = 0; b0 < nb; b0 += kChunk) {
      const size_t nbc = nb - b0 < kChunk ? nb - b0 : kChunk;
      build_panel(g, b0, nbc, pb);
      tiles::token_tiles<kTokens>(a.n0, a.n1, [&](auto nt, size_t n) PIQUANT_TILE_INLINE {
        constexpr int kNt = decltype(nt)::value;
        auto tile = [&](const BlockQ8A* const* act, float* const* out) PIQUANT_TILE_INLINE {
          panel_tokens<kNt>(pb, nbc, act, out, row, m, b0 == 0);
        };
        tiles::with_tokens<kNt>(a, n, b0, tile);
      });
    }
  }
}

// --- GGUF types: q4_k, q5_k, q6_k (256-value super-blocks), q5_0, q5_1 ----------------------
//
// Packed: per 4-row group and (super-)block the 4 rows' GGUF blocks one after the other.
// q5_0 / q5_1 (KTile): each 32-value block is decoded once per tile into the q4 kernels'
// register form, lane-128 r = row r (lo: values 0..15, hi: 16..31, the fifth bit or-ed in as
// 16), and dotted with the token's BlockQ8A by two vpdpbusd (u8 weights x s8 activations). Per
// (block, token): acc += float(isum) * (d * d_a) on 16 lanes; q5_0's -16 is the start value
// (-4 s per lane), q5_1's minimum a 4-row FMA macc += m * (d_a * s). GEMV 1 token and GEMM
// 8-token tiles over one group: the same code per token, hence the same bits. q4_k / q5_k /
// q6_k have their own panel GEMMs and GEMVs (below; session 10 removed their KTile branches).

inline __m128 f16x4(uint16_t a, uint16_t b, uint16_t c, uint16_t d) {
  return _mm_cvtph_ps(_mm_setr_epi16(short(a), short(b), short(c), short(d), 0, 0, 0, 0));
}
inline uint16_t u16_at(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
// 4 rows x 32 bytes at p + r * stride -> lo = rows' bytes 0..15 (lane-128 r), hi = bytes 16..31.
inline void rows32(const uint8_t* p, size_t stride, __m512i* lo, __m512i* hi) {
  const __m512i z01 = _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))),
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + stride)), 1);
  const __m512i z23 = _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * stride))),
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 3 * stride)), 1);
  *lo = _mm512_shuffle_i64x2(z01, z23, 0x88);
  *hi = _mm512_shuffle_i64x2(z01, z23, 0xDD);
}
// 4 rows x 16 bytes at p + r * stride -> lane-128 r.
inline __m512i rows16(const uint8_t* p, size_t stride) {
  __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + stride)), 1);
  v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * stride)), 2);
  return _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 3 * stride)), 3);
}
// [x0 x1 x2 x3] -> each xr in the 4 lanes of lane-128 r.
inline __m512 spread4(__m128 x) {
  const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(x));
}
template <WeightType T, int NT>
struct KTile {
  static_assert(T == WeightType::kQ5_0 || T == WeightType::kQ5_1, "KTile serves q5_0 / q5_1 only");
  static constexpr size_t kBb = T == WeightType::kQ5_0 ? sizeof(BlockQ5_0) : sizeof(BlockQ5_1);
  __m512 acc[NT][2];
  __m128 macc[NT];

  // One 32-value block: weights (lo, hi), D (16 lanes, per row), M (4 rows; q5_1).
  inline void dot(__m512i lo, __m512i hi, __m512 d16, __m128 m4, const BlockQ8A* const* act,
                  size_t blk, int par) {
    for (int t = 0; t < NT; ++t) {
      const BlockQ8A* x = act[t] + blk;
      const __m512i alo = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x->qs)));
      const __m512i ahi = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x->qs + 16)));
      const __m512i start = T == WeightType::kQ5_0 ? _mm512_set1_epi32(-4 * x->s) : _mm512_setzero_si512();
      __m512i v = _mm512_dpbusd_epi32(start, lo, alo);
      v = _mm512_dpbusd_epi32(v, hi, ahi);
      acc[t][par] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(d16, _mm512_set1_ps(x->d)), acc[t][par]);
      if (T != WeightType::kQ5_0) {
        macc[t] = _mm_fmadd_ps(m4, _mm_set1_ps(x->d * static_cast<float>(x->s)), macc[t]);
      }
    }
  }
  // One block of the group at p (4 rows' GGUF blocks, kBb bytes apart); act + b0.
  inline void block(const uint8_t* p, const BlockQ8A* const* act, size_t b0) {
    const __m512i m4b = _mm512_set1_epi8(0x0F);
    const bool q51 = T == WeightType::kQ5_1;
    const __m128 d4 = f16x4(u16_at(p), u16_at(p + kBb), u16_at(p + 2 * kBb), u16_at(p + 3 * kBb));
    __m128 m4 = _mm_setzero_ps();
    if (q51) m4 = f16x4(u16_at(p + 2), u16_at(p + kBb + 2), u16_at(p + 2 * kBb + 2), u16_at(p + 3 * kBb + 2));
    const size_t qh = q51 ? 4 : 2, qs = q51 ? 8 : 6;
    uint32_t h[4];
    for (int r = 0; r < 4; ++r) std::memcpy(h + r, p + r * kBb + qh, 4);
    const uint64_t mlo = (uint64_t(h[0] & 0xFFFF)) | (uint64_t(h[1] & 0xFFFF) << 16) |
                         (uint64_t(h[2] & 0xFFFF) << 32) | (uint64_t(h[3] & 0xFFFF) << 48);
    const uint64_t mhi = (uint64_t(h[0] >> 16)) | (uint64_t(h[1] >> 16) << 16) |
                         (uint64_t(h[2] >> 16) << 32) | (uint64_t(h[3] >> 16) << 48);
    const __m512i q = rows16(p + qs, kBb);
    const __m512i b4 = _mm512_set1_epi8(0x10);
    const __m512i lo = _mm512_or_si512(_mm512_and_si512(q, m4b), _mm512_maskz_mov_epi8(mlo, b4));
    const __m512i hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(q, 4), m4b), _mm512_maskz_mov_epi8(mhi, b4));
    dot(lo, hi, spread4(d4), m4, act, b0, int(b0 & 1));
  }

  inline void run(const uint8_t* __restrict w, size_t nsb, const BlockQ8A* const* act,
                  float* const* out, size_t row, size_t m0, size_t m1) {
    for (int t = 0; t < NT; ++t) {
      acc[t][0] = acc[t][1] = _mm512_setzero_ps();
      macc[t] = _mm_setzero_ps();
    }
    for (size_t b = 0; b < nsb; ++b) block(w + b * 4 * kBb, act, b);
    for (int t = 0; t < NT; ++t) {
      const __m512 v = _mm512_add_ps(acc[t][0], acc[t][1]);
      const __m128 h01 = _mm_hadd_ps(_mm512_extractf32x4_ps(v, 0), _mm512_extractf32x4_ps(v, 1));
      const __m128 h23 = _mm_hadd_ps(_mm512_extractf32x4_ps(v, 2), _mm512_extractf32x4_ps(v, 3));
      __m128 y = _mm_hadd_ps(h01, h23);
      if (T == WeightType::kQ5_1) y = _mm_add_ps(y, macc[t]);
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

// The K-quant tiles run through the drivers of Tile above (gemv<KTile, T> / gemm<KTile, T>).


// --- q4_k: 16-row panels, as the q4 GEMM ----------------------------------------------------
//
// The KTile above leaves four partial sums per row in the lanes and pays, per (4 rows, token,
// sub-block), the conversion, scale product and FMA on 16 lanes plus the minimum term on 4.
// The q4_k kernels below decode each super-block of a panel of 4 groups (16 rows, lane 4r + g =
// row r of group g, as the q4 panel) once into 8 KPanelSub (per 32-value sub-block: 8 zmm of
// weight quads, D = d * sc and M = dmin * mn as f32; both products exact), then per (16 rows,
// token, sub-block): 8 vpdpbusd with the activation's quads broadcast from memory, one
// conversion, one scale product and two FMAs, the second the minimum term -M * (d_a * s) (the
// activation sum folds the minimum, no per-weight work). One accumulator per (row, token), sub-
// blocks in order, 8-token tiles over chunks of kKChunk super-blocks, partial sums through dst
// as the q4 GEMM: no row or token split changes a bit. The GEMV (below) sums in its own order.
struct alignas(64) KPanelSub {
  __m512i w[8];  // lane 4r + g: quad j of the sub-block's values (j < 4: 0..15, j >= 4: 16..31)
  __m512 d;      // d * sc per row
  __m512 m;      // dmin * mn per row
};
constexpr size_t kKChunk = 2;     // super-blocks per GEMM chunk: 16 KPanelSub = 10 KB

// The four groups of the panel at `row` (a group past m1 repeats the last one, as panel_groups).
template <WeightType T>
inline void kpanel_groups(const uint8_t* wt, size_t nsb, size_t row, size_t m1, const uint8_t** g) {
  const size_t last = (m1 - 1) / kRowInterleave;
  for (size_t i = 0; i < 4; ++i) {
    const size_t gi = row / kRowInterleave + i;
    g[i] = wt + (gi <= last ? gi : last) * nsb * kGroupBytes<T>;
  }
}

// Scales of super-block `p[i]` of the panel's four groups: D[j] = d * sc_j, M[j] = dmin * mn_j
// (lane 4r + g; both products exact). All in registers: the header bytes 0..15 of each row
// (d, dmin, scales) in lane-128 r, ggml's get_scale_min_k4 on dwords 1..3 (no store and
// reload through memory, whose failed store forwarding serialized the cold GEMV on DRAM).
template <WeightType T>
inline void q4k_scales(const uint8_t* const* p, __m512* D, __m512* M) {
  constexpr size_t bb = T == WeightType::kQ5K ? sizeof(BlockQ5K) : sizeof(BlockQ4K);
  const __m512i shv = _mm512_setr_epi32(0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4);
  const __m512i mlo = _mm512_set4_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f);
  const __m512i mhi = _mm512_set4_epi32(0x30303030, 0, 0x30303030, 0);
  __m512i h[4], k[4];
  for (int i = 0; i < 4; ++i) {
    h[i] = rows16(p[i], bb);  // lane-128 r: [d | dmin, u0, u1, u2]
    // [u0, u2, u1, u2 >> 4] & [m1, m2, m1, m2] | ([0, u0, 0, u1] >> 2) & 0x30 -> sc0..3, sc4..7, mn0..3, mn4..7
    const __m512i x = _mm512_srlv_epi32(_mm512_shuffle_epi32(h[i], _MM_PERM_DCDB), shv);
    const __m512i y = _mm512_srli_epi32(_mm512_shuffle_epi32(h[i], _MM_PERM_CCBB), 2);
    k[i] = _mm512_or_si512(_mm512_and_si512(x, mlo), _mm512_and_si512(y, mhi));
  }
  __m512i t[4], e[4];
  transpose4(k[0], k[1], k[2], k[3], t);  // t[0]: sc0..3, t[1]: sc4..7, t[2]: mn0..3, t[3]: mn4..7
  transpose4(h[0], h[1], h[2], h[3], e);  // e[0]: d | dmin
  const __m512 d16 = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(e[0]));
  const __m512 m16 = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(e[0], 16)));
  const __m512i ff = _mm512_set1_epi32(0xFF);
  for (int j = 0; j < 8; ++j) {
    const __m512i sc = _mm512_and_si512(_mm512_srli_epi32(t[j / 4], 8 * (j % 4)), ff);
    const __m512i mn = _mm512_and_si512(_mm512_srli_epi32(t[2 + j / 4], 8 * (j % 4)), ff);
    D[j] = _mm512_mul_ps(_mm512_cvtepi32_ps(sc), d16);
    M[j] = _mm512_mul_ps(_mm512_cvtepi32_ps(mn), m16);
  }
}

// Super-block sb of the panel's four groups -> ps[0..7]. q5_k: the fifth bits (bit j of
// qh[l] for value l of sub-block j) or-ed in as 16 (values 0..31; vpdpbusd takes them as u8).
template <WeightType T>
inline void build_q4k(const uint8_t* const* g, size_t sb, KPanelSub* ps) {
  constexpr bool q5 = T == WeightType::kQ5K;
  constexpr size_t bb = q5 ? sizeof(BlockQ5K) : sizeof(BlockQ4K), qs = q5 ? 48 : 16;
  const __m512i m4b = _mm512_set1_epi8(0x0F), one = _mm512_set1_epi8(1);
  const uint8_t* p[4];
  for (int i = 0; i < 4; ++i) p[i] = g[i] + sb * kGroupBytes<T>;
  __m512 D[8], M[8];
  q4k_scales<T>(p, D, M);
  __m512i ha[4], hb[4];
  if (q5) {
    for (int i = 0; i < 4; ++i) rows32(p[i] + 16, bb, &ha[i], &hb[i]);
  }
  const auto fifth = [&](__m512i v, __m512i h, int j) {
    if (!q5) return v;
    return _mm512_or_si512(v, _mm512_slli_epi16(_mm512_and_si512(_mm512_srl_epi16(h, _mm_cvtsi32_si128(j)), one), 4));
  };
  for (int j = 0; j < 8; ++j) {
    ps[j].d = D[j];
    ps[j].m = M[j];
  }
  for (int c = 0; c < 4; ++c) {
    __m512i qa[4], qb[4], lo[4], hi[4];
    for (int i = 0; i < 4; ++i) {
      rows32(p[i] + qs + 32 * c, bb, &qa[i], &qb[i]);
      lo[i] = fifth(_mm512_and_si512(qa[i], m4b), ha[i], 2 * c);
      hi[i] = fifth(_mm512_and_si512(qb[i], m4b), hb[i], 2 * c);
    }
    transpose4(lo[0], lo[1], lo[2], lo[3], ps[2 * c].w);
    transpose4(hi[0], hi[1], hi[2], hi[3], ps[2 * c].w + 4);
    for (int i = 0; i < 4; ++i) {
      lo[i] = fifth(_mm512_and_si512(_mm512_srli_epi16(qa[i], 4), m4b), ha[i], 2 * c + 1);
      hi[i] = fifth(_mm512_and_si512(_mm512_srli_epi16(qb[i], 4), m4b), hb[i], 2 * c + 1);
    }
    transpose4(lo[0], lo[1], lo[2], lo[3], ps[2 * c + 1].w);
    transpose4(hi[0], hi[1], hi[2], hi[3], ps[2 * c + 1].w + 4);
  }
}

// One (16 rows, token, sub-block) step: the per-lane sequence GEMV and GEMM share.
inline __m512 kpanel_dot(const KPanelSub& p, const BlockQ8A& x, __m512 acc) {
  const int32_t* q = reinterpret_cast<const int32_t*>(x.qs);
  __m512i v = _mm512_dpbusd_epi32(_mm512_setzero_si512(), p.w[0], _mm512_set1_epi32(q[0]));
  v = _mm512_dpbusd_epi32(v, p.w[1], _mm512_set1_epi32(q[1]));
  v = _mm512_dpbusd_epi32(v, p.w[2], _mm512_set1_epi32(q[2]));
  v = _mm512_dpbusd_epi32(v, p.w[3], _mm512_set1_epi32(q[3]));
  v = _mm512_dpbusd_epi32(v, p.w[4], _mm512_set1_epi32(q[4]));
  v = _mm512_dpbusd_epi32(v, p.w[5], _mm512_set1_epi32(q[5]));
  v = _mm512_dpbusd_epi32(v, p.w[6], _mm512_set1_epi32(q[6]));
  v = _mm512_dpbusd_epi32(v, p.w[7], _mm512_set1_epi32(q[7]));
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(p.d, _mm512_set1_ps(x.d)), acc);
  return _mm512_fnmadd_ps(p.m, _mm512_set1_ps(x.d * static_cast<float>(x.s)), acc);
}

// GEMV: no decoded panel and no second pass. One group (4 rows, one sequential stream) at a
// time over all of K; per super-block the q4-style vpdpbusd pair per sub-block (4 rows x 4
// partial sums), reduced by the transpose and adds to full sums (lane 4r + j: row r, sub-block j
// and j + 4), the scales decoded in the same lanes (vpshufb inside each row's 128-bit lane: no
// cross-lane work) and the float steps of the GEMM on them: acc += float(isum) * (D * d_a),
// acc -= M * (d_a * s). The activations' d_a and d_a * s come from a per-token table in the
// same lane order (kgemv_act). Four lanes (sub-blocks) per row are summed at the end, so the
// float order differs from the GEMM's (one accumulator, sub-blocks in order): GEMV and GEMM agree
// within the reference tolerance, not bit for bit (tests/kernels/test_matmul.cpp).
// q4_k / q5_k (Q5: the fifth bits, bit j of qh[l] for value l of sub-block j, or-ed in as 16).
template <WeightType T>
inline void q4k_group_sums(const uint8_t* p, const BlockQ8A* x, __m512i* r) {
  constexpr bool q5 = T == WeightType::kQ5K;
  constexpr size_t bb = q5 ? sizeof(BlockQ5K) : sizeof(BlockQ4K), qs = q5 ? 48 : 16;
  const __m512i m4b = _mm512_set1_epi8(0x0F), one = _mm512_set1_epi8(1);
  __m512i ha = _mm512_setzero_si512(), hb = ha;
  if (q5) rows32(p + 16, bb, &ha, &hb);
  __m512i s[8];
  for (int c = 0; c < 4; ++c) {
    __m512i qa, qb;
    rows32(p + qs + 32 * c, bb, &qa, &qb);
    for (int h = 0; h < 2; ++h) {
      const int j = 2 * c + h;
      __m512i lo = h ? _mm512_and_si512(_mm512_srli_epi16(qa, 4), m4b) : _mm512_and_si512(qa, m4b);
      __m512i hi = h ? _mm512_and_si512(_mm512_srli_epi16(qb, 4), m4b) : _mm512_and_si512(qb, m4b);
      if (q5) {
        const __m128i sh = _mm_cvtsi32_si128(j);
        lo = _mm512_or_si512(lo, _mm512_slli_epi16(_mm512_and_si512(_mm512_srl_epi16(ha, sh), one), 4));
        hi = _mm512_or_si512(hi, _mm512_slli_epi16(_mm512_and_si512(_mm512_srl_epi16(hb, sh), one), 4));
      }
      const __m512i alo = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[j].qs)));
      const __m512i ahi = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[j].qs + 16)));
      s[j] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, alo), hi, ahi);
    }
  }
  __m512i t[4];
  transpose4(s[0], s[1], s[2], s[3], t);
  r[0] = _mm512_add_epi32(_mm512_add_epi32(t[0], t[1]), _mm512_add_epi32(t[2], t[3]));
  transpose4(s[4], s[5], s[6], s[7], t);
  r[1] = _mm512_add_epi32(_mm512_add_epi32(t[0], t[1]), _mm512_add_epi32(t[2], t[3]));
}

// Per-token activation table of the K-quant GEMVs, 16 floats per super-block: q4_k d_a of
// sub-blocks 0..7 then d_a * s of 0..7 (q5_k the same); q6_k d_a of each 16-value half (sub-block k / 2).
template <WeightType T>
inline const float* kgemv_act(const BlockQ8A* x, size_t nsb) {
  static thread_local std::vector<float> buf;
  if (buf.size() < nsb * 16) buf.resize(nsb * 16);
  float* o = buf.data();
  for (size_t sb = 0; sb < nsb; ++sb, o += 16) {
    for (int j = 0; j < 8; ++j) {
      const BlockQ8A& b = x[8 * sb + j];
      if (T != WeightType::kQ6K) {
        o[j] = b.d;
        o[8 + j] = b.d * static_cast<float>(b.s);
      } else {
        o[2 * j] = o[2 * j + 1] = b.d;
      }
    }
  }
  return buf.data();
}

// The 4 lanes of each row summed (lane-128 r -> element r), stored to the rows inside [m0, m1).
inline void store_rows4(__m512 v, float* out, size_t row, size_t m0, size_t m1) {
  const __m128 h01 = _mm_hadd_ps(_mm512_extractf32x4_ps(v, 0), _mm512_extractf32x4_ps(v, 1));
  const __m128 h23 = _mm_hadd_ps(_mm512_extractf32x4_ps(v, 2), _mm512_extractf32x4_ps(v, 3));
  const __m128 y = _mm_hadd_ps(h01, h23);
  if (row >= m0 && row + 4 <= m1) {
    _mm_storeu_ps(out + row, y);
  } else {
    alignas(16) float tmp[4];
    _mm_store_ps(tmp, y);
    for (size_t r = 0; r < 4; ++r) {
      if (row + r >= m0 && row + r < m1) out[row + r] = tmp[r];
    }
  }
}

// vpshufb pattern: dword j of each 128-bit lane <- byte `first + j` of that lane, zero-extended.
inline __m512i bytes_to_dwords(int first) {
  const int b = first, z = -1;
  return _mm512_set4_epi32((z & ~0xFF) | (b + 3), (z & ~0xFF) | (b + 2), (z & ~0xFF) | (b + 1),
                           (z & ~0xFF) | b);
}

// The GEMVs request all cache lines of a group's super-block (576 / 840 bytes) up front, before
// the loads that need them: more misses in flight at once. Cold 5632x2048, 1 thread, Zen 4 with
// load 16-20 (5 interleaved rounds): q4_k 0.80-0.97 of q4's GB/s with it, 0.77-0.86 without;
// prefetching 0.6-8 KB ahead instead was no better than none.
inline void prefetch_block(const uint8_t* p, size_t bytes) {
  for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p + o), _MM_HINT_T0);
}

// q4_k and q5_k (the same header: d, dmin, 12 bytes of scales and minimums).
template <WeightType T>
inline void q4k_gemv_group(const uint8_t* w, size_t nsb, const BlockQ8A* x, const float* av,
                           float* out, size_t row, size_t m0, size_t m1) {
  constexpr size_t bb = T == WeightType::kQ5K ? sizeof(BlockQ5K) : sizeof(BlockQ4K);
  constexpr size_t gb = kGroupBytes<T>;
  const __m512i shv = _mm512_setr_epi32(0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4);
  const __m512i mlo = _mm512_set4_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f);
  const __m512i mhi = _mm512_set4_epi32(0x30303030, 0, 0x30303030, 0);
  const __m512i b0 = bytes_to_dwords(0), b4 = bytes_to_dwords(4);
  const __m512i b8 = bytes_to_dwords(8), b12 = bytes_to_dwords(12);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (size_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* p = w + sb * gb;
    prefetch_block(p, gb);
    __m512i r[2];
    q4k_group_sums<T>(p, x + 8 * sb, r);
    const __m512i h = rows16(p, bb);  // lane-128 r: [d | dmin, u0, u1, u2]
    const __m512i xs = _mm512_srlv_epi32(_mm512_shuffle_epi32(h, _MM_PERM_DCDB), shv);
    const __m512i ys = _mm512_srli_epi32(_mm512_shuffle_epi32(h, _MM_PERM_CCBB), 2);
    const __m512i k = _mm512_or_si512(_mm512_and_si512(xs, mlo), _mm512_and_si512(ys, mhi));
    // lane 4r + j: row r's d and dmin (the low / high half of the spread dword, f16 -> f32)
    const __m512i dd = _mm512_shuffle_epi32(h, _MM_PERM_AAAA);
    const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd));
    const __m512 dm = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16)));
    const __m512 D0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_shuffle_epi8(k, b0)), d);
    const __m512 D1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_shuffle_epi8(k, b4)), d);
    const __m512 M0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_shuffle_epi8(k, b8)), dm);
    const __m512 M1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_shuffle_epi8(k, b12)), dm);
    const float* a = av + 16 * sb;
    acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(r[0]), _mm512_mul_ps(D0, _mm512_broadcast_f32x4(_mm_loadu_ps(a))), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(r[1]), _mm512_mul_ps(D1, _mm512_broadcast_f32x4(_mm_loadu_ps(a + 4))), acc1);
    acc0 = _mm512_fnmadd_ps(M0, _mm512_broadcast_f32x4(_mm_loadu_ps(a + 8)), acc0);
    acc1 = _mm512_fnmadd_ps(M1, _mm512_broadcast_f32x4(_mm_loadu_ps(a + 12)), acc1);
  }
  store_rows4(_mm512_add_ps(acc0, acc1), out, row, m0, m1);
}

template <WeightType T>
void gemv_q4k(const GemmArgs& a) {
  const size_t nsb = a.k / kSuperBlock;
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  for (size_t n = a.n0; n < a.n1; ++n) {
    const auto* act =
        reinterpret_cast<const BlockQ8A*>(static_cast<const char*>(a.act) + n * a.act_stride);
    const float* av = kgemv_act<T>(act, nsb);
    float* out = a.dst + n * a.dst_stride;
    for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += kRowInterleave) {
      q4k_gemv_group<T>(wt + row / kRowInterleave * nsb * kGroupBytes<T>, nsb, act, av, out, row,
                     a.m0, a.m1);
    }
  }
}

// NT tokens x 16 rows over nsub sub-blocks of the panel (act[t] already at the chunk).
template <int NT>
inline void kpanel_tokens(const KPanelSub* ps, size_t nsub, const BlockQ8A* const* act,
                          float* const* out, size_t row, __mmask16 m, bool first) {
  const __m512i order = transpose_idx();
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = first ? _mm512_setzero_ps()
                   : _mm512_permutexvar_ps(order, _mm512_maskz_loadu_ps(m, out[t] + row));
  }
  for (size_t j = 0; j < nsub; ++j) {
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) acc[t] = kpanel_dot(ps[j], act[t][j], acc[t]);
  }
  for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(out[t] + row, m, _mm512_permutexvar_ps(order, acc[t]));
}

// The panel GEMMs of the GGUF types (q4_k here, q6_k below): per panel of 4 groups (16 rows)
// and chunk of kKChunk super-blocks, build(g, sb, subs) decodes each super-block once into
// `per` Sub, then the token tiles of kTokens (and the tail) run tile(Tokens<nt>, subs, j0, nsub,
// n, row, mask) over the chunk's nsub sub-blocks from sub-block j0.
template <WeightType T, class Sub, class Build, class TileF>
PIQUANT_TILE_INLINE inline void kpanel_gemm(const GemmArgs& a, Build&& build, TileF&& tile) {
  constexpr size_t per = kSuperBlock / kBlock;
  const size_t nsb = a.k / kSuperBlock;
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  Sub ps[kKChunk * per];
  for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += 16) {
    const uint8_t* g[4];
    kpanel_groups<T>(wt, nsb, row, a.m1, g);
    const __mmask16 m = row_mask(row, a.m0, a.m1);
    for (size_t s0 = 0; s0 < nsb; s0 += kKChunk) {
      const size_t nc = nsb - s0 < kKChunk ? nsb - s0 : kKChunk;
      for (size_t s = 0; s < nc; ++s) build(g, s0 + s, ps + s * per);
      const size_t j0 = s0 * per, nsub = nc * per;
      tiles::token_tiles<kTokens>(a.n0, a.n1, [&](auto nt, size_t n) PIQUANT_TILE_INLINE {
        tile(nt, static_cast<const Sub*>(ps), j0, nsub, n, row, m);
      });
    }
  }
}

template <WeightType T>
void gemm_q4k(const GemmArgs& a) {
  kpanel_gemm<T, KPanelSub>(
      a, build_q4k<T>,
      [&](auto nt, const KPanelSub* ps, size_t j0, size_t nsub, size_t n, size_t row,
          __mmask16 m) PIQUANT_TILE_INLINE {
        constexpr int kNt = decltype(nt)::value;
        auto tile = [&](const BlockQ8A* const* act, float* const* out) PIQUANT_TILE_INLINE {
          kpanel_tokens<kNt>(ps, nsub, act, out, row, m, j0 == 0);
        };
        tiles::with_tokens<kNt>(a, n, j0, tile);
      });
}


// --- q6_k: 16-row panels --------------------------------------------------------------------
//
// As q4_k, with a scale per 16 values: the weights as u8 q (0..63) against the s8 activations,
// the -32 offset folded into each half-sub-block's start value -32 * sum(a) (activation half
// sums, computed once per call into a thread-local buffer), and per (16 rows, token, sub-block)
// two chains of 4 vpdpbusd, two conversions, two scale products and two FMAs. The GEMV (q4_k's
// one pass per group, below) is not bit-identical to it.
struct alignas(64) K6PanelSub {
  __m512i w[8];
  __m512 dlo, dhi;  // d * sc of values 0..15 / 16..31 per row
};

// Start values -32 * sum(a) of each half of each activation block, tokens [n0, n1).
inline const int32_t* q6k_offsets(const GemmArgs& a) {
  static thread_local std::vector<int32_t> buf;
  const size_t nb = a.k / kBlock, nt = a.n1 - a.n0;
  if (buf.size() < nt * nb * 2) buf.resize(nt * nb * 2);
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (size_t t = 0; t < nt; ++t) {
    const auto* x = reinterpret_cast<const BlockQ8A*>(static_cast<const char*>(a.act) + (a.n0 + t) * a.act_stride);
    int32_t* o = buf.data() + t * nb * 2;
    for (size_t b = 0; b < nb; ++b) {
      const __m256i u = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs)), flip);
      const __m256i s = _mm256_sad_epu8(u, _mm256_setzero_si256());  // 4 x (sum of 8 bytes + 1024)
      const int64_t s0 = _mm256_extract_epi64(s, 0), s1 = _mm256_extract_epi64(s, 1);
      const int64_t s2 = _mm256_extract_epi64(s, 2), s3 = _mm256_extract_epi64(s, 3);
      o[2 * b] = -32 * static_cast<int32_t>(s0 + s1 - 2048);
      o[2 * b + 1] = -32 * static_cast<int32_t>(s2 + s3 - 2048);
    }
  }
  return buf.data();
}

// D[hs] = d * sc[hs] of the 16 half-sub-blocks of the panel's four groups (lane 4r + g), from
// each group's header rows: s[i] = rows16(p + 192) (scales), h[i] = rows16(p + 194) (dword 3:
// scales[12..13] | d).
inline void q6k_scales_v(const __m512i* s, const __m512i* h, __m512* D) {
  __m512i t[4], e[4];
  transpose4(s[0], s[1], s[2], s[3], t);
  transpose4(h[0], h[1], h[2], h[3], e);
  const __m512 d16 = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(e[3], 16)));
  for (int hs = 0; hs < 16; ++hs) {
    const __m512i sc = _mm512_srai_epi32(_mm512_slli_epi32(t[hs / 4], 24 - 8 * (hs % 4)), 24);
    D[hs] = _mm512_mul_ps(_mm512_cvtepi32_ps(sc), d16);
  }
}
inline void q6k_scales(const uint8_t* const* p, __m512* D) {
  constexpr size_t bb = sizeof(BlockQ6K);
  __m512i s[4], h[4];
  for (int i = 0; i < 4; ++i) {
    s[i] = rows16(p[i] + 192, bb);
    h[i] = rows16(p[i] + 194, bb);
  }
  q6k_scales_v(s, h, D);
}

// The 8 sub-blocks of one group's super-block p as u8 q (lane-128 r = row r): f(j, lo, hi).
template <class F>
inline void q6k_decode(const uint8_t* p, F&& f) {
  constexpr size_t bb = sizeof(BlockQ6K);
  const __m512i m4b = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(0x30);
  for (int hh = 0; hh < 2; ++hh) {
    __m512i ha, hb;
    rows32(p + 128 + 32 * hh, bb, &ha, &hb);
    for (int ip = 0; ip < 2; ++ip) {
      __m512i qa, qb;
      rows32(p + 64 * hh + 32 * ip, bb, &qa, &qb);
      for (int ih = 0; ih < 2; ++ih) {
        const int i = ip + 2 * ih;
        const __m512i la = ih ? _mm512_and_si512(_mm512_srli_epi16(qa, 4), m4b) : _mm512_and_si512(qa, m4b);
        const __m512i lb = ih ? _mm512_and_si512(_mm512_srli_epi16(qb, 4), m4b) : _mm512_and_si512(qb, m4b);
        const __m512i ua = i == 0 ? _mm512_slli_epi16(ha, 4) : i == 1 ? _mm512_slli_epi16(ha, 2) : i == 2 ? ha : _mm512_srli_epi16(ha, 2);
        const __m512i ub = i == 0 ? _mm512_slli_epi16(hb, 4) : i == 1 ? _mm512_slli_epi16(hb, 2) : i == 2 ? hb : _mm512_srli_epi16(hb, 2);
        f(4 * hh + i, _mm512_or_si512(la, _mm512_and_si512(ua, m3)), _mm512_or_si512(lb, _mm512_and_si512(ub, m3)));
      }
    }
  }
}

inline void build_q6k(const uint8_t* const* g, size_t sb, K6PanelSub* ps) {
  const uint8_t* p[4];
  for (int i = 0; i < 4; ++i) p[i] = g[i] + sb * kGroupBytes<WeightType::kQ6K>;
  __m512 D[16];
  q6k_scales(p, D);
  for (int j = 0; j < 8; ++j) {
    ps[j].dlo = D[2 * j];
    ps[j].dhi = D[2 * j + 1];
  }
  __m512i lo[8][4], hi[8][4];
  for (int i = 0; i < 4; ++i) {
    q6k_decode(p[i], [&](int j, __m512i l, __m512i h) {
      lo[j][i] = l;
      hi[j][i] = h;
    });
  }
  for (int j = 0; j < 8; ++j) {
    transpose4(lo[j][0], lo[j][1], lo[j][2], lo[j][3], ps[j].w);
    transpose4(hi[j][0], hi[j][1], hi[j][2], hi[j][3], ps[j].w + 4);
  }
}

// The float steps of one (16 rows, token, sub-block) on the integer sums with their offsets.
inline __m512 k6_float(__m512i vlo, __m512i vhi, __m512 dlo, __m512 dhi, float da, __m512 acc) {
  const __m512 d = _mm512_set1_ps(da);
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(vlo), _mm512_mul_ps(dlo, d), acc);
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(vhi), _mm512_mul_ps(dhi, d), acc);
}

inline __m512 k6panel_dot(const K6PanelSub& p, const BlockQ8A& x, const int32_t* off, __m512 acc) {
  const int32_t* q = reinterpret_cast<const int32_t*>(x.qs);
  __m512i vl = _mm512_dpbusd_epi32(_mm512_set1_epi32(off[0]), p.w[0], _mm512_set1_epi32(q[0]));
  __m512i vh = _mm512_dpbusd_epi32(_mm512_set1_epi32(off[1]), p.w[4], _mm512_set1_epi32(q[4]));
  vl = _mm512_dpbusd_epi32(vl, p.w[1], _mm512_set1_epi32(q[1]));
  vh = _mm512_dpbusd_epi32(vh, p.w[5], _mm512_set1_epi32(q[5]));
  vl = _mm512_dpbusd_epi32(vl, p.w[2], _mm512_set1_epi32(q[2]));
  vh = _mm512_dpbusd_epi32(vh, p.w[6], _mm512_set1_epi32(q[6]));
  vl = _mm512_dpbusd_epi32(vl, p.w[3], _mm512_set1_epi32(q[3]));
  vh = _mm512_dpbusd_epi32(vh, p.w[7], _mm512_set1_epi32(q[7]));
  return k6_float(vl, vh, p.dlo, p.dhi, x.d, acc);
}

// GEMV: one group (4 rows, one sequential stream) at a time over all of K, row by row within a
// super-block, no lane shuffles of the weights: a row's 64 ql bytes of a 128-value half are one
// zmm as they are stored (low nibbles = values 0..63 of the half, high nibbles = 64..127, in
// order), its 32 qh bytes broadcast to both 256-bit halves and shifted by 0 / 2 bits per half
// (vpsrlvq), masked to 0x33 once, so one vpternlogd select per 64 values joins nibble and high
// bits (the low values take them shifted up by 4, the high ones as they are). Per row and
// super-block: 4 vpdpbusd (values 64c..64c+63 against the token's 256 contiguous activations,
// 128-bit lane k = 16-value scale group 4c + k, start value -8 s_g per lane from the token's
// table: the -32 offset), one 4x4 transpose and adds to full sums in lane 4k + c (group 4c + k),
// the row's 16 int8 scales spread to the same lanes by one vpshufb (byte to the top of its
// dword, then an arithmetic shift), and acc_r += float(isum) * (sc * (d * d_a)), d_a per lane
// from the table. The lanes are summed at the end, so the float order is not the GEMM's (GEMV
// and GEMM agree within the reference tolerance, tests/kernels/test_matmul.cpp).
struct alignas(64) K6Act {
  int8_t q[kSuperBlock];  // the token's 256 activations of the super-block, in order
  int32_t off[4][16];     // start values of chunk c: lane 4k + j = -8 * (sum of group 4c + k)
  float da[16];           // lane 4k + c: d_a of the block holding group 4c + k
};

// The K6Act of every super-block of one token (thread-local, per call).
inline const K6Act* q6k_gemv_act(const BlockQ8A* x, size_t nsb) {
  static thread_local std::vector<K6Act> buf;
  if (buf.size() < nsb) buf.resize(nsb);
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (size_t sb = 0; sb < nsb; ++sb) {
    K6Act& o = buf[sb];
    for (int b = 0; b < 8; ++b) {
      const BlockQ8A& xb = x[8 * sb + b];
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
      _mm256_store_si256(reinterpret_cast<__m256i*>(o.q + 32 * b), q);
      const __m256i s = _mm256_sad_epu8(_mm256_xor_si256(q, flip), _mm256_setzero_si256());
      const int64_t s0 = _mm256_extract_epi64(s, 0), s1 = _mm256_extract_epi64(s, 1);
      const int64_t s2 = _mm256_extract_epi64(s, 2), s3 = _mm256_extract_epi64(s, 3);
      const int32_t half[2] = {static_cast<int32_t>(s0 + s1 - 2048), static_cast<int32_t>(s2 + s3 - 2048)};
      for (int h = 0; h < 2; ++h) {
        const int g = 2 * b + h, c = g / 4, k = g % 4;
        for (int j = 0; j < 4; ++j) o.off[c][4 * k + j] = -8 * half[h];
        o.da[4 * k + c] = xb.d;
      }
    }
  }
  return buf.data();
}

inline void q6k_gemv_group(const uint8_t* w, size_t nsb, const K6Act* xa, float* out, size_t row,
                           size_t m0, size_t m1) {
  constexpr size_t bb = sizeof(BlockQ6K), gb = kGroupBytes<WeightType::kQ6K>;
  const __m512i m4b = _mm512_set1_epi8(0x0F), m33 = _mm512_set1_epi8(0x33);
  const __m512i hsh = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
  // lane-128 k, dword c <- scale byte 4c + k in bits 24..31 (the rest zero)
  alignas(64) int32_t sci[16];
  for (int e = 0; e < 16; ++e) sci[e] = (4 * (e % 4) + e / 4) << 24 | 0x808080;
  const __m512i sct = _mm512_load_si512(sci);
  // One row of the super-block: its 256 values dotted, reduced and scaled into acc.
  const auto row_step = [&](const uint8_t* b, const K6Act& x, const __m512i* a, __m512 da,
                            __m512 acc) PIQUANT_TILE_INLINE {
    __m512i v[4];
    for (int hh = 0; hh < 2; ++hh) {
      const __m512i ql = _mm512_loadu_si512(b + 64 * hh);
      const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * hh)));
      const __m512i h = _mm512_and_si512(_mm512_srlv_epi64(qh, hsh), m33);
      // m4b ? ql : h << 4 (values 0..63 of the half); m4b ? ql >> 4 : h (values 64..127)
      const __m512i lo = _mm512_ternarylogic_epi32(m4b, ql, _mm512_slli_epi16(h, 4), 0xCA);
      const __m512i hi = _mm512_ternarylogic_epi32(m4b, _mm512_srli_epi16(ql, 4), h, 0xCA);
      v[2 * hh] = _mm512_dpbusd_epi32(_mm512_load_si512(x.off[2 * hh]), lo, a[2 * hh]);
      v[2 * hh + 1] = _mm512_dpbusd_epi32(_mm512_load_si512(x.off[2 * hh + 1]), hi, a[2 * hh + 1]);
    }
    __m512i t[4];
    transpose4(v[0], v[1], v[2], v[3], t);
    const __m512i s = _mm512_add_epi32(_mm512_add_epi32(t[0], t[1]), _mm512_add_epi32(t[2], t[3]));
    const __m512i sc = _mm512_srai_epi32(
        _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192))), sct), 24);
    uint16_t dh;
    std::memcpy(&dh, b + 208, sizeof dh);
    const __m512 d = _mm512_cvtph_ps(_mm256_set1_epi16(static_cast<short>(dh)));
    const __m512 g = _mm512_mul_ps(_mm512_cvtepi32_ps(sc), _mm512_mul_ps(d, da));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), g, acc);
  };
  __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  for (size_t sb = 0; sb < nsb; ++sb) {
    PIQUANT_MCA_BEGIN(WeightType::kQ6K, 4, 1, 8);
    const uint8_t* p = w + sb * gb;
    prefetch_block(p, gb);
    const K6Act& x = xa[sb];
    __m512i a[4];
    for (int c = 0; c < 4; ++c) a[c] = _mm512_load_si512(x.q + 64 * c);
    const __m512 da = _mm512_load_ps(x.da);
    acc0 = row_step(p, x, a, da, acc0);
    acc1 = row_step(p + bb, x, a, da, acc1);
    acc2 = row_step(p + 2 * bb, x, a, da, acc2);
    acc3 = row_step(p + 3 * bb, x, a, da, acc3);
    PIQUANT_MCA_END();
  }
  const float y[4] = {_mm512_reduce_add_ps(acc0), _mm512_reduce_add_ps(acc1), _mm512_reduce_add_ps(acc2),
                      _mm512_reduce_add_ps(acc3)};
  for (size_t r = 0; r < 4; ++r) {
    if (row + r >= m0 && row + r < m1) out[row + r] = y[r];
  }
}

void gemv_q6k(const GemmArgs& a) {
  constexpr WeightType T = WeightType::kQ6K;
  const size_t nsb = a.k / kSuperBlock;
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  for (size_t n = a.n0; n < a.n1; ++n) {
    const auto* act =
        reinterpret_cast<const BlockQ8A*>(static_cast<const char*>(a.act) + n * a.act_stride);
    const K6Act* xa = q6k_gemv_act(act, nsb);
    float* out = a.dst + n * a.dst_stride;
    for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += kRowInterleave) {
      q6k_gemv_group(wt + row / kRowInterleave * nsb * kGroupBytes<T>, nsb, xa, out, row, a.m0, a.m1);
    }
  }
}

template <int NT>
inline void k6panel_tile(const GemmArgs& a, const int32_t* offs, const K6PanelSub* ps, size_t j0,
                         size_t nsub, size_t n, size_t row, __mmask16 m) {
  const size_t nb = a.k / kBlock;
  const __m512i order = transpose_idx();
  const BlockQ8A* act[NT];
  const int32_t* off[NT];
  float* out[NT];
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) {
    act[t] = reinterpret_cast<const BlockQ8A*>(static_cast<const char*>(a.act) + (n + t) * a.act_stride) + j0;
    off[t] = offs + (n + t - a.n0) * nb * 2 + 2 * j0;
    out[t] = a.dst + (n + t) * a.dst_stride;
    acc[t] = j0 == 0 ? _mm512_setzero_ps()
                     : _mm512_permutexvar_ps(order, _mm512_maskz_loadu_ps(m, out[t] + row));
  }
  for (size_t j = 0; j < nsub; ++j) {
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) acc[t] = k6panel_dot(ps[j], act[t][j], off[t] + 2 * j, acc[t]);
  }
  for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(out[t] + row, m, _mm512_permutexvar_ps(order, acc[t]));
}

void gemm_q6k(const GemmArgs& a) {
  const int32_t* offs = q6k_offsets(a);
  kpanel_gemm<WeightType::kQ6K, K6PanelSub>(
      a, build_q6k,
      [&](auto nt, const K6PanelSub* ps, size_t j0, size_t nsub, size_t n, size_t row,
          __mmask16 m) PIQUANT_TILE_INLINE {
        k6panel_tile<decltype(nt)::value>(a, offs, ps, j0, nsub, n, row, m);
      });
}

}  // namespace

void gemv_f32_q8_q8_avx512vnni(const GemmArgs& a) { gemv<Tile, WeightType::kQ8>(a); }
void gemv_f32_q8_q4_avx512vnni(const GemmArgs& a) { gemv_q4(a); }
void gemv_f32_q8_q4m_avx512vnni(const GemmArgs& a) { gemv<Tile, WeightType::kQ4M>(a); }
void gemm_f32_q8_q8_4x8_avx512vnni(const GemmArgs& a) { gemm<Tile, WeightType::kQ8>(a); }
void gemm_f32_q8_q4_16x8_avx512vnni(const GemmArgs& a) { gemm_q4(a); }
void gemm_f32_q8_q4m_4x8_avx512vnni(const GemmArgs& a) { gemm<Tile, WeightType::kQ4M>(a); }

void gemv_f32_q8_q4k_avx512vnni(const GemmArgs& a) { gemv_q4k<WeightType::kQ4K>(a); }
void gemm_f32_q8_q4k_16x8_avx512vnni(const GemmArgs& a) { gemm_q4k<WeightType::kQ4K>(a); }
void gemv_f32_q8_q5k_avx512vnni(const GemmArgs& a) { gemv_q4k<WeightType::kQ5K>(a); }
void gemm_f32_q8_q5k_16x8_avx512vnni(const GemmArgs& a) { gemm_q4k<WeightType::kQ5K>(a); }
void gemv_f32_q8_q6k_avx512vnni(const GemmArgs& a) { gemv_q6k(a); }
void gemm_f32_q8_q6k_16x8_avx512vnni(const GemmArgs& a) { gemm_q6k(a); }
void gemv_f32_q8_q50_avx512vnni(const GemmArgs& a) { gemv<KTile, WeightType::kQ5_0>(a); }
void gemm_f32_q8_q50_4x8_avx512vnni(const GemmArgs& a) { gemm<KTile, WeightType::kQ5_0>(a); }
void gemv_f32_q8_q51_avx512vnni(const GemmArgs& a) { gemv<KTile, WeightType::kQ5_1>(a); }
void gemm_f32_q8_q51_4x8_avx512vnni(const GemmArgs& a) { gemm<KTile, WeightType::kQ5_1>(a); }

}  // namespace piquant::kernels
