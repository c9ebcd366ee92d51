#pragma once
// The NEON matmul micro-kernels, shared by matmul_neon.cpp (ARMv8.0, Cortex-A72) and
// matmul_neondot.cpp (ARMv8.2 dotprod, Cortex-A76). The includer defines
//   PIQUANT_DOT16(acc, w, a): acc (int32x4) += per-lane sums of w (int8x16) * a (int8x16)
// as one `sdot` or as smull + smlal2 + sadalp; every name here is in an unnamed namespace
// (built with different -march flags per file: no ODR sharing).
//
// Packed group block (common/pack.hpp), 4 rows x 32 K-elements:
//     q4:  [d0..d3][r0 qs(16)][r1][r2][r3]     lo = q & 15 -> k 0..15, hi = q >> 4 -> k 16..31
//     q4m: [d0..d3][m0..m3][r0 qs][r1][r2][r3]
//     q8:  [d0..d3][r0 k0:16][r1][r2][r3][r0 k16:32][r1][r2][r3]
// Per row two DOT16 (lo x a[0:16], hi x a[16:32]) leave 4 partial sums in an int32x4; three
// addp fold the 4 rows into one int32x4 (lane r = row r), one scvtf + one fmla apply
// d_w[r] * d_a. q4's -8 offset rides in the accumulator start value (-2 * s per lane).
// Tile: 4 rows x NT tokens (NT = 4 for GEMM, 1 for GEMV): each decoded weight block is used
// for NT tokens. Two alternating float accumulators (even/odd blocks) hide FMA latency.
#include <arm_neon.h>

#include "common/mca.hpp"
#include "common/pack.hpp"
#include "matmul/matmul.hpp"
#include "matmul/tile_driver.hpp"

namespace piquant::kernels {
namespace {

inline float32x4_t load_f16x4(const uint8_t* p) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p))));
}

template <WeightType T, int NT>
struct Tile {
  float32x4_t acc[NT][2];
  float32x4_t macc[NT];

  template <int S>
  inline void step(const uint8_t* __restrict blk, const BlockQ8A* const* __restrict act, size_t b) {
    const float32x4_t d4 = load_f16x4(blk);
    int8x16_t lo[4], hi[4];
    if (T == WeightType::kQ8) {
      for (int r = 0; r < 4; ++r) {
        lo[r] = vld1q_s8(reinterpret_cast<const int8_t*>(blk + 8 + 16 * r));
        hi[r] = vld1q_s8(reinterpret_cast<const int8_t*>(blk + 72 + 16 * r));
      }
    } else {
      const uint8x16_t mask = vdupq_n_u8(0x0F);
      const size_t off = T == WeightType::kQ4M ? 16 : 8;
      for (int r = 0; r < 4; ++r) {
        const uint8x16_t q = vld1q_u8(blk + off + 16 * r);
        lo[r] = vreinterpretq_s8_u8(vandq_u8(q, mask));
        hi[r] = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
      }
    }
    float32x4_t m4 = vdupq_n_f32(0.0f);
    if (T == WeightType::kQ4M) m4 = load_f16x4(blk + 8);
    for (int t = 0; t < NT; ++t) {
      const BlockQ8A* a = act[t] + b;
      const int8x16_t alo = vld1q_s8(a->qs), ahi = vld1q_s8(a->qs + 16);
      const int32x4_t init = vdupq_n_s32(T == WeightType::kQ4 ? -2 * a->s : 0);
      int32x4_t i[4];
      for (int r = 0; r < 4; ++r) {
        i[r] = PIQUANT_DOT16(init, lo[r], alo);
        i[r] = PIQUANT_DOT16(i[r], hi[r], ahi);
      }
      const int32x4_t p = vpaddq_s32(vpaddq_s32(i[0], i[1]), vpaddq_s32(i[2], i[3]));
      acc[t][S] = vfmaq_f32(acc[t][S], vcvtq_f32_s32(p), vmulq_n_f32(d4, a->d));
      if (T == WeightType::kQ4M) {
        macc[t] = vfmaq_n_f32(macc[t], m4, a->d * static_cast<float>(a->s));
      }
    }
  }

  inline void run(const uint8_t* __restrict w, size_t nb, const BlockQ8A* const* act,
                  float* const* out, size_t row, size_t m0, size_t m1) {
    for (int t = 0; t < NT; ++t) {
      acc[t][0] = acc[t][1] = macc[t] = vdupq_n_f32(0.0f);
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
      float32x4_t y = vaddq_f32(acc[t][0], acc[t][1]);
      if (T == WeightType::kQ4M) y = vaddq_f32(y, macc[t]);
      if (row >= m0 && row + 4 <= m1) {
        vst1q_f32(out[t] + row, y);
      } else {
        float tmp[4];
        vst1q_f32(tmp, y);
        for (size_t r = 0; r < 4; ++r) {
          if (row + r >= m0 && row + r < m1) out[t][row + r] = tmp[r];
        }
      }
    }
  }
};

template <WeightType T, int NT>
inline void tile_rows(const GemmArgs& a, size_t n) {
  const size_t nb = a.k / kBlock;
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  const BlockQ8A* act[NT];
  float* out[NT];
  tiles::token_ptrs(a, n, NT, 0, act, out);
  Tile<T, NT> tile;
  for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += kRowInterleave) {
    tile.run(wt + row / kRowInterleave * nb * kGroupBytes<T>, nb, act, out, row, a.m0, a.m1);
  }
}

// The tile drivers (matmul/tile_driver.hpp): GEMM per group, token tiles of 4 (then the tail).
template <WeightType T>
void gemv(const GemmArgs& a) {
  tiles::gemv(a, [](const GemmArgs& r, auto nt, size_t n) PIQUANT_TILE_INLINE {
    tile_rows<T, decltype(nt)::value>(r, n);
  });
}
template <WeightType T>
void gemm(const GemmArgs& a) {
  tiles::gemm<4>(a, kRowInterleave, [](const GemmArgs& r, auto nt, size_t n) PIQUANT_TILE_INLINE {
    tile_rows<T, decltype(nt)::value>(r, n);
  });
}

// f32 / f16 weights, row-major: one row at a time, 16 elements per step in four chains.
template <bool kF16>
void gemv_float(const GemmArgs& a) {
  for (size_t n = a.n0; n < a.n1; ++n) {
    const auto* x = reinterpret_cast<const float*>(static_cast<const char*>(a.act) + n * a.act_stride);
    for (size_t m = a.m0; m < a.m1; ++m) {
      float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
      for (size_t i = 0; i < a.k; i += 16) {
        for (int j = 0; j < 4; ++j) {
          float32x4_t w;
          if (kF16) {
            w = load_f16x4(static_cast<const uint8_t*>(a.wt) + 2 * (m * a.k + i + 4 * j));
          } else {
            w = vld1q_f32(static_cast<const float*>(a.wt) + m * a.k + i + 4 * j);
          }
          acc[j] = vfmaq_f32(acc[j], w, vld1q_f32(x + i + 4 * j));
        }
      }
      a.dst[n * a.dst_stride + m] = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
    }
  }
}

}  // namespace
}  // namespace piquant::kernels
