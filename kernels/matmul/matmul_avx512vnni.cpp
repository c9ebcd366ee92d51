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

#include "common/mca.hpp"
#include "common/pack.hpp"
#include "matmul/matmul.hpp"

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

// GEMM: token tiles of 8 (then one tail tile), rows inside, so each group's weights
// (K/32 * 72 bytes for q4, 12.7 KB at K = 5632) stay in L1 across the token tiles.
template <WeightType T>
void gemm(const GemmArgs& a) {
  for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += kRowInterleave) {
    GemmArgs r = a;
    r.m0 = row > a.m0 ? row : a.m0;
    r.m1 = row + kRowInterleave < a.m1 ? row + kRowInterleave : a.m1;
    size_t n = a.n0;
    for (; n + 8 <= a.n1; n += 8) tile_rows<T, 8>(r, n);
    switch (a.n1 - n) {
      case 7: tile_rows<T, 7>(r, n); break;
      case 6: tile_rows<T, 6>(r, n); break;
      case 5: tile_rows<T, 5>(r, n); break;
      case 4: tile_rows<T, 4>(r, n); break;
      case 3: tile_rows<T, 3>(r, n); break;
      case 2: tile_rows<T, 2>(r, n); break;
      case 1: tile_rows<T, 1>(r, n); break;
      default: break;
    }
  }
}

}  // namespace

void gemv_f32_q8_q8_avx512vnni(const GemmArgs& a) { gemv<WeightType::kQ8>(a); }
void gemv_f32_q8_q4_avx512vnni(const GemmArgs& a) { gemv<WeightType::kQ4>(a); }
void gemv_f32_q8_q4m_avx512vnni(const GemmArgs& a) { gemv<WeightType::kQ4M>(a); }
void gemm_f32_q8_q8_4x8_avx512vnni(const GemmArgs& a) { gemm<WeightType::kQ8>(a); }
void gemm_f32_q8_q4_4x8_avx512vnni(const GemmArgs& a) { gemm<WeightType::kQ4>(a); }
void gemm_f32_q8_q4m_4x8_avx512vnni(const GemmArgs& a) { gemm<WeightType::kQ4M>(a); }

}  // namespace piquant::kernels
