// ARMv8.0 NEON variants (Cortex-A72, the Pi 4): no sdot, so a 16-byte int8 dot product is
// smull (low halves) + smlal2 (high halves) into int16 (|pair| <= 2 * 128 * 127 = 32512) and a
// sadalp into int32: 3 instructions where dotprod needs 1. Micro-kernel: matmul_neon_impl.hpp.
#include <arm_neon.h>

namespace {
inline int32x4_t dot16_neon(int32x4_t acc, int8x16_t w, int8x16_t a) {
  const int16x8_t p = vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(a)), w, a);
  return vpadalq_s16(acc, p);
}
}  // namespace
#define PIQUANT_DOT16(acc, w, a) dot16_neon(acc, w, a)
#include "matmul/matmul_neon_impl.hpp"
#define PIQUANT_KZERO_LOAD 0  // the A72 has one load pipe: movi
#include "matmul/matmul_kquant_neon_impl.hpp"

namespace piquant::kernels {
namespace {

// ---- q4_k / q5_k / q6_k on the A72: 4-row tiles (session 10) ----------------------------------
// The A72 has no by-element dot product, so a row's 32-value sub-block is 4 multiplies: smull,
// smlal2, smlal, smlal2 into one int16x8 (q4_k q = 0..15, q5_k q - 16, q6_k q - 32 per 16-value
// half: every lane stays inside int16 through the folds below, |a| <= 127). Four such vectors (4
// sub-blocks of one row) fold with 3 `addp` (int16) and one `sadalp` into an int32x4 whose lanes
// are the row's sub-blocks, so the row's scales are used in their natural order (no transpose);
// the float work is per (row, token, super-block):
//   q4_k / q5_k: X_h = float(isum_h * sc_h) (exact, |.| < 2^24), h = sub-blocks 0..3 / 4..7,
//     P = fma(X_0 d_a[0..3], X_1, d_a[4..7]), Q = fma(mn_0 (d_a s)[0..3], mn_1, (d_a s)[4..7]);
//   q6_k: X_k = float(isum_k * sc_k) (lanes = 16-value sub-blocks 4k..4k+3), P = sum_k X_k d_a;
// then the 4 rows' P (and Q) fold with `faddp` into lanes = rows and acc = fma(acc, P, d),
// acc = fms(acc, Q, dmin) per super-block in order. GEMV and GEMM run exactly these float
// operations (X is exact either way: the GEMM gets it as one fma on the magic start value
// 0x4B400000 + isum, the GEMV as scvtf + fmul), so their bits are identical, and no split of
// rows, tokens or passes changes a bit.
// GEMM: per (64-row panel, 16-token chunk, pass of 4 super-blocks) each 4-row group's pass is
// decoded once into a stack buffer (one signed byte per value, the scales as floats), then each
// token runs the 4-row x 1-token step over it (the weights come from L1; the A72's one load pipe
// has room: ~3.5 loads per block x row x token against ~5.4 multiply-pipe cycles).
// GEMV: the same step decoding the packed block in place (nibble split, scales per row).
namespace a72 {

constexpr int32_t kMagicBits = 0x4B400000;  // 1.5 * 2^23
constexpr float kMagic = 12582912.0f;
constexpr size_t kPanelGroups = 16;  // 64 rows
constexpr size_t kChunk = 16;        // tokens per record chunk
constexpr size_t kPass = 4;          // GEMM super-blocks per pass (decoded buffer: 4 x 1.4-1.5 KB)
constexpr size_t kVPass = 32;        // GEMV super-blocks per pass (records: 4 KB)

template <WeightType T>
constexpr bool kIs6 = T == WeightType::kQ6K;

/// One token's data for one super-block. q4_k / q5_k: d_a, d_a s per block of 32, and the int32
/// chain starts: GEMM 0x4B400000 + off s, GEMV off s (off = 16 for q5_k's q - 16, 0 for q4_k).
/// q6_k: d_a per 16-value sub-block (each block's twice).
template <WeightType T>
struct alignas(16) Rec {
  float da[8], das[8];
  int32_t start[8], vstart[8];
};
template <>
struct alignas(16) Rec<WeightType::kQ6K> {
  float da[16];
  int32_t vstart[32];  ///< GEMV (q unsigned): per 16-value sub-block i, [-32 s_i, 0] (s_i: its 16 qs)
};

template <WeightType T>
inline void build_recs(const BlockQ8A* const* act, size_t nt, size_t sb0, size_t sb1, size_t stride, Rec<T>* rec) {
  for (size_t t = 0; t < nt; ++t) {
    for (size_t sb = sb0; sb < sb1; ++sb) {
      Rec<T>& o = rec[t * stride + (sb - sb0)];
      for (size_t j = 0; j < 8; ++j) {
        const BlockQ8A& x = act[t][sb * 8 + j];
        if constexpr (kIs6<T>) {
          o.da[2 * j] = o.da[2 * j + 1] = x.d;
          for (size_t h = 0; h < 2; ++h) {
            int32_t sum = 0;
            for (size_t i = 0; i < 16; ++i) sum += x.qs[16 * h + i];
            o.vstart[2 * (2 * j + h)] = -32 * sum;
            o.vstart[2 * (2 * j + h) + 1] = 0;
          }
        } else {
          const int32_t off = T == WeightType::kQ5K ? 16 * x.s : 0;
          o.da[j] = x.d;
          o.das[j] = x.d * static_cast<float>(x.s);
          o.start[j] = kMagicBits + off;
          o.vstart[j] = off;
        }
      }
    }
  }
}

/// The 4 rows' fp16 scales at byte `off` of each row's block (rows `bb` bytes apart) as floats.
inline float32x4_t gather_f16(const uint8_t* blk, size_t bb, size_t off) {
  uint16x4_t h = vdup_n_u16(0);
  h = vld1_lane_u16(reinterpret_cast<const uint16_t*>(blk + off), h, 0);
  h = vld1_lane_u16(reinterpret_cast<const uint16_t*>(blk + bb + off), h, 1);
  h = vld1_lane_u16(reinterpret_cast<const uint16_t*>(blk + 2 * bb + off), h, 2);
  h = vld1_lane_u16(reinterpret_cast<const uint16_t*>(blk + 3 * bb + off), h, 3);
  return vcvt_f32_f16(vreinterpret_f16_u16(h));
}

/// A vector loaded once into a register: GCC 12 otherwise loads a vector used by both smull
/// (low half) and smlal2 twice (`ldr d` + `ldr q`), and the A72 has one load pipe.
inline int8x16_t ld(const int8_t* p) {
  int8x16_t v = vld1q_s8(p);
  asm("" : "+w"(v));
  return v;
}

/// A compiler barrier between rows of a step: GCC 12 otherwise hoists the next rows' loads
/// over the current row's work and spills (the out-of-order core does that reordering anyway).
inline void barrier() { asm volatile("" ::: "memory"); }

/// A row's 32-value sub-block (w0, w1) against the activations (a0, a1): 4 multiplies, int16.
inline int16x8_t dot32(int8x16_t w0, int8x16_t w1, int8x16_t a0, int8x16_t a1) {
  int16x8_t p = vmull_s8(vget_low_s8(w0), vget_low_s8(a0));
  p = vmlal_high_s8(p, w0, a0);
  p = vmlal_s8(p, vget_low_s8(w1), vget_low_s8(a1));
  return vmlal_high_s8(p, w1, a1);
}
/// A 16-value sub-block: 2 multiplies.
inline int16x8_t dot16(int8x16_t w, int8x16_t a) {
  return vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(a)), w, a);
}
/// Four int16x8 -> one int16x8 [0 0 1 1 2 2 3 3] (3 addp) -> start + pairs (sadalp).
inline int32x4_t fold4(int32x4_t start, int16x8_t p0, int16x8_t p1, int16x8_t p2, int16x8_t p3) {
  return vpadalq_s16(start, vpaddq_s16(vpaddq_s16(p0, p1), vpaddq_s16(p2, p3)));
}

/// The 8 six-bit scales and minimums of one row as floats: sc[0..3], sc[4..7], mn[0..3], mn[4..7].
inline void row_scales(const uint8_t* blk, float32x4_t* sc, float32x4_t* mn) {
  const uint8x16_t s = kscales(blk + 4);
  const uint16x8_t s01 = vmovl_u8(vget_low_u8(s)), s23 = vmovl_high_u8(s);
  sc[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(s01)));
  mn[0] = vcvtq_f32_u32(vmovl_high_u16(s01));
  sc[1] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(s23)));
  mn[1] = vcvtq_f32_u32(vmovl_high_u16(s23));
}
/// q6_k: the 16 int8 scales as floats, lanes = 16-value sub-blocks 4k..4k+3.
inline void row_scales6(const uint8_t* blk, float32x4_t* sc) {
  const int8x16_t s8 = vld1q_s8(reinterpret_cast<const int8_t*>(blk + offsetof(BlockQ6K, scales)));
  const int16x8_t s01 = vmovl_s8(vget_low_s8(s8)), s23 = vmovl_high_s8(s8);
  sc[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(s01)));
  sc[1] = vcvtq_f32_s32(vmovl_high_s16(s01));
  sc[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(s23)));
  sc[3] = vcvtq_f32_s32(vmovl_high_s16(s23));
}

/// Sub-blocks 2c and 2c + 1 of a Q4_K / Q5_K row as one byte per value (q5_k: q - 16):
/// v[0], v[1] = sub-block 2c (values 0..15, 16..31), v[2], v[3] = 2c + 1.
template <WeightType T>
inline void unpack_q4k(const uint8_t* blk, int c, int8x16_t* v) {
  constexpr bool k5 = T == WeightType::kQ5K;
  const uint8_t* qs = blk + (k5 ? offsetof(BlockQ5K, qs) : offsetof(BlockQ4K, qs)) + 32 * c;
  const uint8x16_t q0 = vld1q_u8(qs), q1 = vld1q_u8(qs + 16);
  if constexpr (k5) {
    // q - 16 = nibble | (bit ? 0 : 0xF0): t = 0xFF where the bit is clear (cmtst on ~qh), then
    // `sli` (low nibble: t << 4 over q's bits 4..7) / `sri` (high nibble: q >> 4 under t's
    // bits 4..7) merge it: 2 ops per vector where q4_k's `and` / `ushr` is 1.
    const uint8_t* qh = blk + offsetof(BlockQ5K, qh);
    const uint8x16_t n0 = vmvnq_u8(vld1q_u8(qh)), n1 = vmvnq_u8(vld1q_u8(qh + 16));
    const uint8x16_t bl = vdupq_n_u8(static_cast<uint8_t>(1u << (2 * c)));
    const uint8x16_t bh = vdupq_n_u8(static_cast<uint8_t>(2u << (2 * c)));
    v[2] = vreinterpretq_s8_u8(vsriq_n_u8(vtstq_u8(n0, bh), q0, 4));
    v[3] = vreinterpretq_s8_u8(vsriq_n_u8(vtstq_u8(n1, bh), q1, 4));
    v[0] = vreinterpretq_s8_u8(vsliq_n_u8(q0, vtstq_u8(n0, bl), 4));
    v[1] = vreinterpretq_s8_u8(vsliq_n_u8(q1, vtstq_u8(n1, bl), 4));
  } else {
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const uint8x16_t u[4] = {vandq_u8(q0, m4), vandq_u8(q1, m4), vshrq_n_u8(q0, 4), vshrq_n_u8(q1, 4)};
    for (int i = 0; i < 4; ++i) v[i] = vreinterpretq_s8_u8(u[i]);
  }
}

/// Q6_K half h, l-half `half` (l = 16 half ..): q - 32 (kSigned) or q of quarters qq = 0..3,
/// i.e. the 16-value sub-blocks 8h + 2qq + half.
template <bool kSigned>
inline void unpack_q6k(const uint8_t* blk, int h, int half, int8x16_t* v) {
  const uint8_t* ql = blk + 64 * h + 16 * half;
  const uint8_t* qh = blk + offsetof(BlockQ6K, qh) + 32 * h + 16 * half;
  const uint8x16_t a = vld1q_u8(ql), b = vld1q_u8(ql + 32), hb = vld1q_u8(qh), m = vdupq_n_u8(0x33);
  const uint8x16_t hm = vandq_u8(hb, m), hm2 = vandq_u8(vshrq_n_u8(hb, 2), m);
  const uint8x16_t u[4] = {vsliq_n_u8(a, hm, 4), vsliq_n_u8(b, hm2, 4), vsriq_n_u8(hm, a, 4), vsriq_n_u8(hm2, b, 4)};
  const int8x16_t k32 = vdupq_n_s8(32);
  for (int i = 0; i < 4; ++i) v[i] = kSigned ? vsubq_s8(vreinterpretq_s8_u8(u[i]), k32) : vreinterpretq_s8_u8(u[i]);
}

/// A 4-row group's super-block decoded for the GEMM step.
template <WeightType T>
struct alignas(16) Dec {
  int8_t w[4][256];  ///< per row, values in order (q4_k q, q5_k q - 16, q6_k q - 32)
  float sc[4][kIs6<T> ? 16 : 8];    ///< scales as floats
  float nmsc[4][kIs6<T> ? 16 : 8];  ///< -0x1.8p23 sc (exact)
  float mn[4][kIs6<T> ? 1 : 8];     ///< q4_k / q5_k minimums as floats
  float d[4], dmin[4];
};

template <WeightType T>
inline void decode(const uint8_t* g, Dec<T>& o) {
  constexpr size_t bb = kGroupBytes<T> / kRowInterleave;
  const float32x4_t nm = vdupq_n_f32(-kMagic);
  for (int r = 0; r < 4; ++r) {
    const uint8_t* blk = g + r * bb;
    if constexpr (kIs6<T>) {
      for (int h = 0; h < 2; ++h) {
        for (int half = 0; half < 2; ++half) {
          int8x16_t v[4];
          unpack_q6k<true>(blk, h, half, v);
          for (int qq = 0; qq < 4; ++qq) vst1q_s8(o.w[r] + 16 * (8 * h + 2 * qq + half), v[qq]);
        }
      }
      float32x4_t sc[4];
      row_scales6(blk, sc);
      for (int k = 0; k < 4; ++k) {
        vst1q_f32(o.sc[r] + 4 * k, sc[k]);
        vst1q_f32(o.nmsc[r] + 4 * k, vmulq_f32(sc[k], nm));
      }
    } else {
      for (int c = 0; c < 4; ++c) {
        int8x16_t v[4];
        unpack_q4k<T>(blk, c, v);
        for (int i = 0; i < 4; ++i) vst1q_s8(o.w[r] + 64 * c + 16 * i, v[i]);
      }
      float32x4_t sc[2], mn[2];
      row_scales(blk, sc, mn);
      for (int h = 0; h < 2; ++h) {
        vst1q_f32(o.sc[r] + 4 * h, sc[h]);
        vst1q_f32(o.nmsc[r] + 4 * h, vmulq_f32(sc[h], nm));
        vst1q_f32(o.mn[r] + 4 * h, mn[h]);
      }
    }
  }
  if constexpr (kIs6<T>) {
    vst1q_f32(o.d, gather_f16(g, bb, offsetof(BlockQ6K, d)));
  } else {
    vst1q_f32(o.d, gather_f16(g, bb, 0));
    vst1q_f32(o.dmin, gather_f16(g, bb, 2));
  }
}

/// The rows' P (and Q) in lanes = rows, then acc's two fmas: the float tail of one super-block.
inline float32x4_t fold_rows(const float32x4_t* p) {
  return vpaddq_f32(vpaddq_f32(p[0], p[1]), vpaddq_f32(p[2], p[3]));
}

/// GEMM step: one token x the 4 decoded rows x one super-block.
template <WeightType T>
__attribute__((always_inline)) inline void gemm_step(const Dec<T>& D, const BlockQ8A* __restrict x, const Rec<T>& rc,
                                                     float32x4_t& acc) {
  float32x4_t P[4];
  if constexpr (kIs6<T>) {
    PIQUANT_KUNROLL
    for (int k = 0; k < 4; ++k) {  // blocks 2k, 2k + 1: sub-blocks 4k .. 4k + 3
      const int8x16_t a[4] = {ld(x[2 * k].qs), ld(x[2 * k].qs + 16), ld(x[2 * k + 1].qs), ld(x[2 * k + 1].qs + 16)};
      const float32x4_t da = vld1q_f32(rc.da + 4 * k);
      PIQUANT_KUNROLL
      for (int r = 0; r < 4; ++r) {
        const int8_t* w = D.w[r] + 64 * k;
        int16x8_t p[4];
        PIQUANT_KUNROLL
        for (int i = 0; i < 4; ++i) p[i] = dot16(ld(w + 16 * i), a[i]);
        const int32x4_t bits = fold4(kmagic(), p[0], p[1], p[2], p[3]);
        const float32x4_t X = vfmaq_f32(vld1q_f32(D.nmsc[r] + 4 * k), vreinterpretq_f32_s32(bits),
                                        vld1q_f32(D.sc[r] + 4 * k));
        P[r] = k == 0 ? vmulq_f32(X, da) : vfmaq_f32(P[r], X, da);
      }
    }
    acc = vfmaq_f32(acc, fold_rows(P), vld1q_f32(D.d));
  } else {
    PIQUANT_KUNROLL
    for (int h = 0; h < 2; ++h) {  // sub-blocks 4h .. 4h + 3
      int8x16_t a[8];
      PIQUANT_KUNROLL
      for (int j = 0; j < 4; ++j) {
        a[2 * j] = ld(x[4 * h + j].qs);
        a[2 * j + 1] = ld(x[4 * h + j].qs + 16);
      }
      const float32x4_t da = vld1q_f32(rc.da + 4 * h);
      const int32x4_t st = vld1q_s32(rc.start + 4 * h);
      PIQUANT_KUNROLL
      for (int r = 0; r < 4; ++r) {
        const int8_t* w = D.w[r] + 128 * h;
        int16x8_t p[4];
        PIQUANT_KUNROLL
        for (int j = 0; j < 4; ++j) p[j] = dot32(ld(w + 32 * j), ld(w + 32 * j + 16), a[2 * j], a[2 * j + 1]);
        const int32x4_t bits = fold4(st, p[0], p[1], p[2], p[3]);
        const float32x4_t X = vfmaq_f32(vld1q_f32(D.nmsc[r] + 4 * h), vreinterpretq_f32_s32(bits),
                                        vld1q_f32(D.sc[r] + 4 * h));
        P[r] = h == 0 ? vmulq_f32(X, da) : vfmaq_f32(P[r], X, da);
        barrier();
      }
    }
    float32x4_t Q[4];
    const float32x4_t das0 = vld1q_f32(rc.das), das1 = vld1q_f32(rc.das + 4);
    PIQUANT_KUNROLL
    for (int r = 0; r < 4; ++r) Q[r] = vfmaq_f32(vmulq_f32(vld1q_f32(D.mn[r]), das0), vld1q_f32(D.mn[r] + 4), das1);
    acc = vfmaq_f32(acc, fold_rows(P), vld1q_f32(D.d));
    acc = vfmsq_f32(acc, fold_rows(Q), vld1q_f32(D.dmin));
  }
}

/// GEMV step: one token x a packed 4-row group's super-block g, decoded in place.
template <WeightType T>
__attribute__((always_inline)) inline void gemv_step(const uint8_t* __restrict g, const BlockQ8A* __restrict x,
                                                     const Rec<T>& rc, float32x4_t& acc) {
  constexpr size_t bb = kGroupBytes<T> / kRowInterleave;
  float32x4_t P[4];
  if constexpr (kIs6<T>) {
    PIQUANT_KUNROLL
    for (int r = 0; r < 4; ++r) {
      const uint8_t* blk = g + r * bb;
      float32x4_t sc[4];
      row_scales6(blk, sc);
      PIQUANT_KUNROLL
      for (int h = 0; h < 2; ++h) {
        int16x8_t p[2][4];  // [half][qq]: sub-block 8h + 2qq + half
        PIQUANT_KUNROLL
        for (int half = 0; half < 2; ++half) {
          int8x16_t v[4];
          unpack_q6k<false>(blk, h, half, v);
          PIQUANT_KUNROLL
          for (int qq = 0; qq < 4; ++qq) p[half][qq] = dot16(v[qq], ld(x[4 * h + qq].qs + 16 * half));
        }
        PIQUANT_KUNROLL
        for (int kk = 0; kk < 2; ++kk) {  // k = 2h + kk: sub-blocks of quarters 2kk, 2kk + 1
          const int k = 2 * h + kk;
          // q = 0..63: 4 products per int16 lane at most (32004), so widen after one addp; the
          // starts [-32 s_i, 0] apply q6_k's offset
          const int32_t* st = rc.vstart + 8 * k;
          const int32x4_t s = vpaddq_s32(vpadalq_s16(vld1q_s32(st), vpaddq_s16(p[0][2 * kk], p[1][2 * kk])),
                                         vpadalq_s16(vld1q_s32(st + 4), vpaddq_s16(p[0][2 * kk + 1], p[1][2 * kk + 1])));
          const float32x4_t X = vmulq_f32(vcvtq_f32_s32(s), sc[k]);
          const float32x4_t da = vld1q_f32(rc.da + 4 * k);
          P[r] = k == 0 ? vmulq_f32(X, da) : vfmaq_f32(P[r], X, da);
        }
      }
      barrier();
    }
    acc = vfmaq_f32(acc, fold_rows(P), gather_f16(g, bb, offsetof(BlockQ6K, d)));
  } else {
    float32x4_t Q[4];
    const float32x4_t da0 = vld1q_f32(rc.da), da1 = vld1q_f32(rc.da + 4);
    const float32x4_t das0 = vld1q_f32(rc.das), das1 = vld1q_f32(rc.das + 4);
    PIQUANT_KUNROLL
    for (int r = 0; r < 4; ++r) {
      const uint8_t* blk = g + r * bb;
      float32x4_t sc[2], mn[2];
      row_scales(blk, sc, mn);
      int32x4_t s[2];
      PIQUANT_KUNROLL
      for (int h = 0; h < 2; ++h) {
        int16x8_t p[4];
        PIQUANT_KUNROLL
        for (int cc = 0; cc < 2; ++cc) {
          const int c = 2 * h + cc;
          int8x16_t v[4];
          unpack_q4k<T>(blk, c, v);
          const BlockQ8A* b = x + 2 * c;
          p[2 * cc] = dot32(v[0], v[1], ld(b[0].qs), ld(b[0].qs + 16));
          p[2 * cc + 1] = dot32(v[2], v[3], ld(b[1].qs), ld(b[1].qs + 16));
        }
        s[h] = fold4(vld1q_s32(rc.vstart + 4 * h), p[0], p[1], p[2], p[3]);
      }
      const float32x4_t X0 = vmulq_f32(vcvtq_f32_s32(s[0]), sc[0]);
      const float32x4_t X1 = vmulq_f32(vcvtq_f32_s32(s[1]), sc[1]);
      P[r] = vfmaq_f32(vmulq_f32(X0, da0), X1, da1);
      Q[r] = vfmaq_f32(vmulq_f32(mn[0], das0), mn[1], das1);
      barrier();
    }
    acc = vfmaq_f32(acc, fold_rows(P), gather_f16(g, bb, 0));
    acc = vfmsq_f32(acc, fold_rows(Q), gather_f16(g, bb, 2));
  }
}

/// acc of rows 4g .. 4g + 3 for a token: the parked sums (rows inside [m0, m1), else 0) or 0.
inline float32x4_t load_acc(const float* out, size_t row, size_t m0, size_t m1, bool first) {
  if (first) return vdupq_n_f32(0.0f);
  if (row >= m0 && row + 4 <= m1) return vld1q_f32(out + row);
  float tmp[4];
  for (size_t r = 0; r < 4; ++r) tmp[r] = row + r >= m0 && row + r < m1 ? out[row + r] : 0.0f;
  return vld1q_f32(tmp);
}
inline void store_acc(float* out, size_t row, size_t m0, size_t m1, float32x4_t y) {
  if (row >= m0 && row + 4 <= m1) {
    vst1q_f32(out + row, y);
    return;
  }
  float tmp[4];
  vst1q_f32(tmp, y);
  for (size_t r = 0; r < 4; ++r) {
    if (row + r >= m0 && row + r < m1) out[row + r] = tmp[r];
  }
}

template <WeightType T>
void gemm(const GemmArgs& a) {
  constexpr size_t gb = kGroupBytes<T>;
  const size_t nsb = a.k / kSuperBlock;
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  Rec<T> rec[kChunk * kPass];
  Dec<T> dec[kPass];
  const size_t g0 = a.m0 / kRowInterleave, g1 = (a.m1 + kRowInterleave - 1) / kRowInterleave;
  for (size_t p0 = g0; p0 < g1; p0 += kPanelGroups) {
    const size_t p1 = g1 - p0 < kPanelGroups ? g1 : p0 + kPanelGroups;
    for (size_t n0 = a.n0; n0 < a.n1; n0 += kChunk) {
      const size_t nt = a.n1 - n0 < kChunk ? a.n1 - n0 : kChunk;
      const BlockQ8A* act[kChunk];
      float* out[kChunk];
      tiles::token_ptrs(a, n0, static_cast<int>(nt), 0, act, out);
      for (size_t sb0 = 0; sb0 < nsb; sb0 += kPass) {
        const size_t sb1 = nsb - sb0 < kPass ? nsb : sb0 + kPass;
        build_recs<T>(act, nt, sb0, sb1, kPass, rec);
        for (size_t grp = p0; grp < p1; ++grp) {
          const uint8_t* g = wt + grp * nsb * gb;
          for (size_t sb = sb0; sb < sb1; ++sb) decode<T>(g + sb * gb, dec[sb - sb0]);
          const size_t row = grp * kRowInterleave;
          for (size_t t = 0; t < nt; ++t) {
            float32x4_t acc = load_acc(out[t], row, a.m0, a.m1, sb0 == 0);
            for (size_t sb = sb0; sb < sb1; ++sb) {
              PIQUANT_MCA_BEGIN_OP(T, 4, 1, 8, gemm);
              gemm_step<T>(dec[sb - sb0], act[t] + sb * 8, rec[t * kPass + (sb - sb0)], acc);
              PIQUANT_MCA_END();
            }
            store_acc(out[t], row, a.m0, a.m1, acc);
          }
        }
      }
    }
  }
}

template <WeightType T>
void gemv(const GemmArgs& a) {
  constexpr size_t gb = kGroupBytes<T>;
  const size_t nsb = a.k / kSuperBlock;
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  Rec<T> rec[kVPass];
  const size_t g0 = a.m0 / kRowInterleave, g1 = (a.m1 + kRowInterleave - 1) / kRowInterleave;
  for (size_t n = a.n0; n < a.n1; ++n) {
    const BlockQ8A* act[1];
    float* out[1];
    tiles::token_ptrs(a, n, 1, 0, act, out);
    for (size_t sb0 = 0; sb0 < nsb; sb0 += kVPass) {
      const size_t sb1 = nsb - sb0 < kVPass ? nsb : sb0 + kVPass;
      build_recs<T>(act, 1, sb0, sb1, kVPass, rec);
      for (size_t grp = g0; grp < g1; ++grp) {
        const uint8_t* g = wt + grp * nsb * gb;
        const size_t row = grp * kRowInterleave;
        float32x4_t acc = load_acc(out[0], row, a.m0, a.m1, sb0 == 0);
        for (size_t sb = sb0; sb < sb1; ++sb) {
          PIQUANT_MCA_BEGIN(T, 4, 1, 8);
          gemv_step<T>(g + sb * gb, act[0] + sb * 8, rec[sb - sb0], acc);
          PIQUANT_MCA_END();
        }
        store_acc(out[0], row, a.m0, a.m1, acc);
      }
    }
  }
}

}  // namespace a72

}  // namespace

void gemv_f32_q8_q8_neon(const GemmArgs& a) { gemv<WeightType::kQ8>(a); }
void gemv_f32_q8_q4_neon(const GemmArgs& a) { gemv<WeightType::kQ4>(a); }
void gemv_f32_q8_q4m_neon(const GemmArgs& a) { gemv<WeightType::kQ4M>(a); }
void gemm_f32_q8_q8_4x4_neon(const GemmArgs& a) { gemm<WeightType::kQ8>(a); }
void gemm_f32_q8_q4_4x4_neon(const GemmArgs& a) { gemm<WeightType::kQ4>(a); }
void gemm_f32_q8_q4m_4x4_neon(const GemmArgs& a) { gemm<WeightType::kQ4M>(a); }
void gemv_f32_q8_q4k_neon(const GemmArgs& a) { a72::gemv<WeightType::kQ4K>(a); }
void gemv_f32_q8_q5k_neon(const GemmArgs& a) { a72::gemv<WeightType::kQ5K>(a); }
void gemv_f32_q8_q6k_neon(const GemmArgs& a) { a72::gemv<WeightType::kQ6K>(a); }
void gemv_f32_q8_q50_neon(const GemmArgs& a) { kmatmul<WeightType::kQ5_0, 1>(a); }
void gemv_f32_q8_q51_neon(const GemmArgs& a) { kmatmul<WeightType::kQ5_1, 1>(a); }
void gemm_f32_q8_q4k_4x1_neon(const GemmArgs& a) { a72::gemm<WeightType::kQ4K>(a); }
void gemm_f32_q8_q5k_4x1_neon(const GemmArgs& a) { a72::gemm<WeightType::kQ5K>(a); }
void gemm_f32_q8_q6k_4x1_neon(const GemmArgs& a) { a72::gemm<WeightType::kQ6K>(a); }
// q5_0 / q5_1: 1 x 2: the 1 x 4 tile spills on the A72 (bench/mca.py: q4_k 10.2 vs 8.1 cycles per unit)
void gemm_f32_q8_q50_1x2_neon(const GemmArgs& a) { kmatmul<WeightType::kQ5_0, 2>(a); }
void gemm_f32_q8_q51_1x2_neon(const GemmArgs& a) { kmatmul<WeightType::kQ5_1, 2>(a); }
void gemv_f32_f32_f32_neon(const GemmArgs& a) { gemv_float<false>(a); }
void gemv_f32_f32_f16_neon(const GemmArgs& a) { gemv_float<true>(a); }

}  // namespace piquant::kernels
