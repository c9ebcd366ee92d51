#pragma once
// NEON micro-kernels of the GGUF weight types kept as GGUF stores them: Q5_0, Q5_1 (blocks of
// 32; the K-quants' helpers kscales / kmagic too), packed as the 4 rows' GGUF
// blocks one after the other per (super-)block (common/pack.hpp). Shared by matmul_neon.cpp
// (ARMv8.0, Cortex-A72) and matmul_neondot.cpp (dotprod, Cortex-A76). The includer defines
// PIQUANT_DOT16(acc, w, a) as in matmul_neon_impl.hpp, and PIQUANT_KZERO_LOAD (1: start each
// int32 chain from a zero vector *loaded* from memory, a load instead of an ASIMD `movi`: right
// where the two ASIMD pipes are the limit and the loads are not, the A76; 0: `movi`, the A72 with
// its single load pipe).
//
// Activations are BlockQ8A per 32 values (d_a, s = sum of qs, qs), so every 32-value block has
// its own float d_a. The kernels here are q5_0 / q5_1 (see q5_step): one row x NT tokens (GEMM:
// NT = 4 on dotprod, 2 on the A72; GEMV: 1), 4 blocks of 32 per step, each block one int32
// chain of DOT16s folded by addp so that the lanes hold the row's *blocks* (no cross-row fold).
// q4_k, q5_k and q6_k have their own 4-row kernels (matmul_neondot.cpp; matmul_neon.cpp's
// namespace a72, which uses kscales and kmagic from here); they ran on this header's 1-row tiles
// until sessions 9 (dotprod) and 10 (A72).
// d_a, d_a s and the chain starts per token and step come from a record built once per (row
// panel, token chunk, pass) (KRec). The output is the sum of acc's 4 lanes ((l0 + l1) + (l2 +
// l3)) per pass of kKPass steps, passes added in order (parked in the output in between): GEMV
// and GEMM run the same float operations per (row, token), hence identical bits, and no split
// of rows or tokens changes a bit.
#include <arm_neon.h>

#include <cstring>

#include "common/mca.hpp"
#include "common/pack.hpp"
#include "matmul/matmul.hpp"

namespace piquant::kernels {
namespace {

#define PIQUANT_KUNROLL _Pragma("GCC unroll 16")

constexpr int32_t kKMagicBits = 0x4B400000;  // 1.5 * 2^23
constexpr float kKMagic = 12582912.0f;
constexpr size_t kKTokens = 16;       // tokens whose records are built together
constexpr size_t kKRecBytes = 32768;  // records of kKTokens tokens x one pass (stack)

/// One token's activation data for one super-block. q4_k: d_a and d_a s per block of 32. q6_k:
/// per 16-value sub-block -32 x (sum of its 16 qs), q6_k's offset, and d_a (repeated).
template <WeightType T>
struct alignas(16) KRec {
  float da[8];   ///< d_a of the 8 blocks of 32
  float das[8];  ///< d_a * s
};
template <>
struct alignas(16) KRec<WeightType::kQ6K> {
  int32_t off[16];  ///< -32 * sum of qs[16 (i % 2) ..][0..15] of block i / 2
  float da[16];     ///< d_a of block i / 2
};
/// q5_0 / q5_1: one record per step of 4 blocks of 32: each block's chain start (lanes sum to
/// 0x4B400000 - off s, off = 16 for q5_0), d_a, d_a s (zero for blocks past the row's end).
template <>
struct alignas(16) KRec<WeightType::kQ5_0> {
  int32_t start[4][4];
  float da[4], das[4];
};
template <>
struct alignas(16) KRec<WeightType::kQ5_1> : KRec<WeightType::kQ5_0> {};
template <WeightType T>
constexpr bool kIsQ5 = T == WeightType::kQ5_0 || T == WeightType::kQ5_1;
/// Steps of a row of K values: super-blocks, or steps of 4 blocks of 32 (q5_0, q5_1).
template <WeightType T>
inline size_t ksteps(size_t k) {
  return kIsQ5<T> ? (k / kBlock + 3) / 4 : k / kSuperBlock;
}

/// Steps per pass: kKTokens tokens' records of one pass fill kKRecBytes (q4_k: 32 = K
/// 8192, q6_k: 16 = K 4096).
template <WeightType T>
constexpr size_t kKPass = kKRecBytes / kKTokens / sizeof(KRec<T>);

/// Records of the tokens act[0..nt) for steps [sb0, sb1): rec[t * kKPass + sb - sb0]. nb: blocks
/// of 32 per row.
template <WeightType T>
inline void build_krecs(const BlockQ8A* const* act, int nt, size_t sb0, size_t sb1, size_t nb, KRec<T>* rec) {
  for (int t = 0; t < nt; ++t) {
    for (size_t sb = sb0; sb < sb1; ++sb) {
      KRec<T>& o = rec[t * kKPass<T> + (sb - sb0)];
      if constexpr (kIsQ5<T>) {
        for (size_t j = 0; j < 4; ++j) {
          const size_t b = 4 * sb + j;
          const bool in = b < nb;
          const int32_t off = T == WeightType::kQ5_0 ? 16 : 0;
          o.start[j][0] = kKMagicBits - (in ? off * act[t][b].s : 0);
          o.start[j][1] = o.start[j][2] = o.start[j][3] = 0;
          o.da[j] = in ? act[t][b].d : 0.0f;
          o.das[j] = in ? act[t][b].d * static_cast<float>(act[t][b].s) : 0.0f;
        }
        continue;
      }
      for (size_t j = 0; j < 8; ++j) {
        const BlockQ8A& x = act[t][sb * 8 + j];
        if constexpr (T == WeightType::kQ6K) {
          for (size_t h = 0; h < 2; ++h) {
            int32_t sum = 0;
            for (size_t i = 0; i < 16; ++i) sum += x.qs[16 * h + i];
            o.off[2 * j + h] = -32 * sum;
            o.da[2 * j + h] = x.d;
          }
        } else {
          o.da[j] = x.d;
          o.das[j] = x.d * static_cast<float>(x.s);
        }
      }
    }
  }
}

#if PIQUANT_KZERO_LOAD
alignas(16) int32_t g_kzero[4] = {0, 0, 0, 0};
#endif
alignas(16) int32_t g_kmagic[4] = {kKMagicBits, kKMagicBits, kKMagicBits, kKMagicBits};

/// A fresh int32x4 of zeros (or of the magic bits): loaded, not `movi`'d, where PIQUANT_KZERO_LOAD
/// (the pointer passes through an empty asm so the compiler cannot merge the loads into one
/// register and copy it).
inline int32x4_t kzero() {
#if PIQUANT_KZERO_LOAD
  const int32_t* p = g_kzero;
  asm volatile("" : "+r"(p));
  return vld1q_s32(p);
#else
  return vdupq_n_s32(0);
#endif
}
inline int32x4_t kmagic() {
  const int32_t* p = g_kmagic;
  asm volatile("" : "+r"(p));
  return vld1q_s32(p);
}


/// The 8 six-bit scales and minimums of a Q4_K / Q5_K super-block (12 bytes at s) as bytes
/// [sc0..3 mn0..3 sc4..7 mn4..7] (= kquant_scale_min, two 64-bit words at a time).
inline uint8x16_t kscales(const uint8_t* s) {
  uint64_t u0;
  uint32_t u2;
  std::memcpy(&u0, s, 8);
  std::memcpy(&u2, s + 8, 4);
  const uint64_t v = u2;
  const uint64_t lo = u0 & 0x3f3f3f3f3f3f3f3fULL;
  const uint64_t hi = (v & 0x0f0f0f0fULL) | (((v >> 4) & 0x0f0f0f0fULL) << 32) |
                      ((u0 >> 2) & 0x3030303030303030ULL);
  return vcombine_u8(vcreate_u8(lo), vcreate_u8(hi));
}

/// Row r's blocks 4 sb .. 4 sb + NB - 1 (q5_0 / q5_1, NB <= 4) x NT tokens. Per block the 32
/// fifth bits are spread to bytes (dup of qh, tbl [byte 0 x8, byte 1 x8] / [2 x8, 3 x8], cmtst
/// with 1, 2, .. 128, and 0x10) and or'ed into the nibbles; one chain per block from the
/// record's start (magic - 16 s for q5_0), folded to V (lanes = blocks); then fsub, x d_a,
/// acc = fma(acc, ., d) (+ fma(acc, d_a s, m) for q5_1), d and m gathered per block.
template <WeightType T, int NT, int NB>
__attribute__((always_inline)) inline void q5_step(const uint8_t* __restrict w, size_t sb,
                                                   const BlockQ8A* const* __restrict act,
                                                   const KRec<T>* __restrict rec, float32x4_t (&acc)[NT]) {
  constexpr bool q51 = T == WeightType::kQ5_1;
  constexpr size_t bb = kGroupBytes<T> / kRowInterleave, gb = kGroupBytes<T>;
  static const uint8_t kIdx[2][16] = {{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
                                      {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3}};
  static const uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t idx0 = vld1q_u8(kIdx[0]), idx1 = vld1q_u8(kIdx[1]), bit = vld1q_u8(kBit);
  const uint8x16_t b4 = vdupq_n_u8(0x10), m4 = vdupq_n_u8(0x0F);
  uint16_t dh[4] = {0, 0, 0, 0}, mh[4] = {0, 0, 0, 0};
  int8x16_t lo[4], hi[4];
  PIQUANT_KUNROLL
  for (int j = 0; j < NB; ++j) {
    const uint8_t* p = w + (4 * sb + j) * gb;
    std::memcpy(&dh[j], p, 2);
    if (q51) std::memcpy(&mh[j], p + 2, 2);
    uint32_t qh;
    std::memcpy(&qh, p + (q51 ? 4 : 2), 4);
    const uint8x16_t h = vreinterpretq_u8_u32(vdupq_n_u32(qh));
    const uint8x16_t q = vld1q_u8(p + (q51 ? 8 : 6));
    lo[j] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, m4), vandq_u8(vtstq_u8(vqtbl1q_u8(h, idx0), bit), b4)));
    hi[j] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), vandq_u8(vtstq_u8(vqtbl1q_u8(h, idx1), bit), b4)));
  }
  (void)bb;
  const float32x4_t d = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(dh)));
  float32x4_t m = vdupq_n_f32(0.0f);
  if (q51) m = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(mh)));
  const float32x4_t magic = vdupq_n_f32(kKMagic);
  PIQUANT_KUNROLL
  for (int t = 0; t < NT; ++t) {
    const KRec<T>& r = rec[t * kKPass<T>];
    int32x4_t c[4];
    PIQUANT_KUNROLL
    for (int j = 0; j < 4; ++j) {
      c[j] = vld1q_s32(r.start[j]);
      if (j < NB) {
        const BlockQ8A& x = act[t][4 * sb + j];
        c[j] = PIQUANT_DOT16(PIQUANT_DOT16(c[j], lo[j], vld1q_s8(x.qs)), hi[j], vld1q_s8(x.qs + 16));
      }
    }
    const int32x4_t v = vpaddq_s32(vpaddq_s32(c[0], c[1]), vpaddq_s32(c[2], c[3]));
    const float32x4_t p = vmulq_f32(vsubq_f32(vreinterpretq_f32_s32(v), magic), vld1q_f32(r.da));
    acc[t] = vfmaq_f32(acc[t], p, d);
    if (q51) acc[t] = vfmaq_f32(acc[t], vld1q_f32(r.das), m);
  }
}

/// Rows [r0, r1) x tokens act[0..NT) for super-blocks [sb0, sb1) of a K-quant matrix;
/// out[t][row] = (first ? 0 : out[t][row]) + the pass's sum.
template <WeightType T, int NT>
inline void ktile_rows(const GemmArgs& a, size_t r0, size_t r1, const BlockQ8A* const* act,
                       float* const* out, const KRec<T>* rec, size_t sb0, size_t sb1) {
  const size_t nb = a.k / kBlock;  // blocks of 32
  constexpr size_t bb = kGroupBytes<T> / kRowInterleave, gb = kGroupBytes<T>;
  constexpr size_t per = kIsQ5<T> ? 1 : kSuperBlock / kBlock;  // blocks of 32 per packed block
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  for (size_t row = r0; row < r1; ++row) {
    const uint8_t* w = wt + (row / kRowInterleave) * (nb / per) * gb + (row % kRowInterleave) * bb;
    float32x4_t acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = vdupq_n_f32(0.0f);
    for (size_t sb = sb0; sb < sb1; ++sb) {
      const KRec<T>* rc = rec + (sb - sb0);
      if constexpr (kIsQ5<T>) {
        if (4 * sb + 4 <= nb) {
          PIQUANT_MCA_BEGIN(T, 1, NT, 4);
          q5_step<T, NT, 4>(w, sb, act, rc, acc);
          PIQUANT_MCA_END();
        } else if (nb - 4 * sb == 3) {
          q5_step<T, NT, 3>(w, sb, act, rc, acc);
        } else if (nb - 4 * sb == 2) {
          q5_step<T, NT, 2>(w, sb, act, rc, acc);
        } else {
          q5_step<T, NT, 1>(w, sb, act, rc, acc);
        }
      } else {
        static_assert(kIsQ5<T>, "q4_k / q5_k / q6_k have their own kernels (neondot, neon's a72::)");
      }
    }
    for (int t = 0; t < NT; ++t) {
      const float32x2_t h = vpadd_f32(vget_low_f32(acc[t]), vget_high_f32(acc[t]));
      const float y = vget_lane_f32(h, 0) + vget_lane_f32(h, 1);
      out[t][row] = sb0 == 0 ? y : out[t][row] + y;
    }
  }
}

/// GEMV (NT = 1) and GEMM (NT = 4) of a K-quant type. Loops: panels of kKPanel rows (their pass
/// of weights stays in L2 while the tokens pass over it), chunks of kKTokens tokens, passes of
/// kKPass super-blocks (the chunk's records built once per panel and pass: 32 KB of stack), then
/// per row the token tiles (the row's pass of weights, 4.6 KB for q4_k, in L1).
constexpr size_t kKPanel = 64;

template <WeightType T, int NT>
void kmatmul(const GemmArgs& a) {
  const size_t nsb = ksteps<T>(a.k), nb = a.k / kBlock;
  KRec<T> rec[kKTokens * kKPass<T>];
  for (size_t p0 = a.m0; p0 < a.m1; p0 += kKPanel) {
    const size_t p1 = a.m1 - p0 < kKPanel ? a.m1 : p0 + kKPanel;
    for (size_t n0 = a.n0; n0 < a.n1; n0 += kKTokens) {
      const int nt = a.n1 - n0 < kKTokens ? static_cast<int>(a.n1 - n0) : static_cast<int>(kKTokens);
      const BlockQ8A* act[kKTokens];
      float* out[kKTokens];
      for (int t = 0; t < nt; ++t) {
        act[t] = reinterpret_cast<const BlockQ8A*>(static_cast<const char*>(a.act) + (n0 + t) * a.act_stride);
        out[t] = a.dst + (n0 + t) * a.dst_stride;
      }
      for (size_t sb0 = 0; sb0 < nsb; sb0 += kKPass<T>) {
        const size_t sb1 = nsb - sb0 < kKPass<T> ? nsb : sb0 + kKPass<T>;
        build_krecs<T>(act, nt, sb0, sb1, nb, rec);
        int t = 0;
        for (; t + NT <= nt; t += NT) ktile_rows<T, NT>(a, p0, p1, act + t, out + t, rec + t * kKPass<T>, sb0, sb1);
        for (; t < nt; ++t) ktile_rows<T, 1>(a, p0, p1, act + t, out + t, rec + t * kKPass<T>, sb0, sb1);
      }
    }
  }
}

}  // namespace
}  // namespace piquant::kernels
