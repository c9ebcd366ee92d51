// ARMv8.2 dotprod kernels (Cortex-A76, the Pi 5). The packed weights are the common layout
// (common/pack.hpp: per 4-row group and K-block, the 4 rows' scales, then each row's 16 bytes
// per half), so nothing here changes what pack() or a .piq file holds.
//
// GEMM, tile 4 rows x 8 tokens: the *activations* are interleaved instead of the weights. For a
// K-chunk and 4 tokens, build_quads() writes per K-block 8 vectors, chunk c holding
// [t0 k4c..4c+3 | t1 .. | t2 .. | t3 ..]; a by-element sdot then multiplies that vector with one
// 4-byte lane of a row's weight register (`vdotq_laneq_s32(acc, a, w[r], c % 4)`), so lane t of
// row r's int32x4 is token t's dot product: no cross-row or cross-lane reduction at all, the
// weights stay in registers (8 vectors: 4 rows x 2 halves), 64 sdot per block for 32 (row,
// token) pairs.
// Per block and (row, 4 tokens), the int32 accumulator starts at kMagicBits - off * s (loaded
// from the quad: a load, not an ASIMD move), so its bits are the float kMagic + v exactly
// (kMagic = 1.5 * 2^23, |v| < 2^22). Two float ops then per (row, 4 tokens): u = fma(kMagic + v,
// d_w[r] by element, -kMagic d_w[r]) = fl(v d_w) (kMagic d_w is exact: d_w is an fp16 of 11
// significant bits, so the fma rounds once, as fsub + fmul would), then facc += u * d_a. The
// -kMagic d_w[r] vectors come from the per-panel scale conversion and are loaded into the fmla's
// destination. q4's -8 offset is the `off * s` of the start value, q4m's minimum one more fmla
// (d_a s by element m[r]). q4 / q4m nibbles are split once per panel and chunk (unpack_q4, into
// a per-thread copy in the q8 group order), not once per 8-token tile: the tile's loop is the
// q8 one. Per block and 4 rows x 8 tokens: 64 sdot + 16 float ops (q4m 24) on the ASIMD pipes.
//
// Order of the float operations, per (row, token): acc = 0; per block acc = fma(acc, fl(v d_w),
// d_a) (q4m: then fma(acc, d_a s, m)); per chunk of kChunk blocks y = acc (first chunk) or
// y + acc. GEMV does exactly this too, so GEMV == GEMM bit for bit, and no split of rows or
// tokens changes a bit. q4_k and q5_k run q4m's tile and order on each sub-block, q6_k the q8
// tile's integer part per 16-value half with its own scale (tile_q6k).
#include <arm_neon.h>

#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>

#include "common/mca.hpp"
#include "common/pack.hpp"
#include "matmul/matmul.hpp"
#include "matmul/tile_driver.hpp"

#define PIQUANT_DOT16(acc, w, a) vdotq_s32(acc, w, a)
#define PIQUANT_KZERO_LOAD 1  // the A76's ASIMD pipes are the limit, its two load pipes are not
#include "matmul/matmul_kquant_neon_impl.hpp"

namespace piquant::kernels {
namespace {

#define PIQUANT_UNROLL _Pragma("GCC unroll 16")

constexpr int32_t kMagicBits = 0x4B400000;  // 1.5 * 2^23: ulp 1 over [2^23, 2^24)
constexpr float kMagic = 12582912.0f;
constexpr size_t kChunk = 64;  // K-blocks per chunk (quads on the stack: 64 x 2 x 224 B = 28 KB)
constexpr size_t kPanelGroups = 16;  // 64 rows: their chunk of weights stays in L2 across tokens

template <WeightType T>
constexpr int32_t kOffset = T == WeightType::kQ4 ? 8 : 0;

inline float32x4_t load_f16x4(const uint8_t* p) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p))));
}

/// A 16-byte load the compiler cannot merge with another of the same address (each one becomes
/// the destination of an fmla: two intrinsic loads would be CSE'd into a load and a vector move,
/// an ASIMD op, where the A76's two ASIMD pipes are the limit and its two load pipes are not).
inline float32x4_t load_fresh(const float* p) {
  float32x4_t v;
  asm volatile("ldr %q0, %1" : "=w"(v) : "m"(*reinterpret_cast<const float(*)[4]>(p)));
  return v;
}

/// acc + a b[L] (fmla by element) in asm: with the intrinsic, GCC 12 turns the second token
/// group's into a dup of b[L] (once per block) and a vector fmla, 4 more ASIMD ops per block.
template <int L>
inline float32x4_t fmla_lane(float32x4_t acc, float32x4_t a, float32x4_t b) {
  asm("fmla %0.4s, %1.4s, %2.s[%3]" : "+w"(acc) : "w"(a), "w"(b), "i"(L));
  return acc;
}

/// Floats per K-block in the GEMM's converted scales (convert_scales): d_w[0..3], q4m's
/// m[0..3], then -kMagic d_w[r] in all 4 lanes for r = 0..3.
constexpr size_t kScFloats = 24;
/// Bytes per K-block of unpack_q4's copy of a 4-row group: [half][row] 16 int8 nibbles each.
constexpr size_t kUnpackedBytes = 128;

/// One K-block of 4 tokens, interleaved for the by-element sdot.
struct alignas(16) Quad {
  int8_t qs[8][16];    ///< chunk c (k 4c..4c+3): token 0's 4 bytes, token 1's, 2's, 3's
  int32_t init[4][4];  ///< kMagicBits - off * s_t, one copy per row (loaded, never copied)
  float da[4];         ///< d_a per token
  float das[4];        ///< d_a * s per token (q4m)
};
static_assert(sizeof(Quad) == 224, "Quad layout");

/// q6_k's K-block of 4 tokens: each 16-value half has its own start value (its own -32 offset
/// and, in the tile, its own weight scale).
struct alignas(16) QuadQ6 {
  int8_t qs[8][16];       ///< as Quad
  int32_t init[2][4][4];  ///< [half][row copy][token]: kMagicBits - 32 * (sum of the half's qs)
  float da[4];            ///< d_a per token
};
static_assert(sizeof(QuadQ6) == 272, "QuadQ6 layout");

template <WeightType T>
using QuadOf = std::conditional_t<T == WeightType::kQ6K, QuadQ6, Quad>;

/// Quads of tokens act[0..3] for blocks [b0, b0 + nb), block b's at q[b * stride].
template <WeightType T>
void build_quads(const BlockQ8A* const act[4], size_t b0, size_t nb, QuadOf<T>* q, size_t stride) {
  for (size_t b = 0; b < nb; ++b) {
    QuadOf<T>& o = q[b * stride];
    for (int h = 0; h < 2; ++h) {
      int32x4_t r[4];
      for (int t = 0; t < 4; ++t) r[t] = vreinterpretq_s32_s8(vld1q_s8(act[t][b0 + b].qs + 16 * h));
      const int32x4_t t01l = vtrn1q_s32(r[0], r[1]), t01h = vtrn2q_s32(r[0], r[1]);
      const int32x4_t t23l = vtrn1q_s32(r[2], r[3]), t23h = vtrn2q_s32(r[2], r[3]);
      auto lo64 = [](int32x4_t x, int32x4_t y) {
        return vreinterpretq_s8_s64(vtrn1q_s64(vreinterpretq_s64_s32(x), vreinterpretq_s64_s32(y)));
      };
      auto hi64 = [](int32x4_t x, int32x4_t y) {
        return vreinterpretq_s8_s64(vtrn2q_s64(vreinterpretq_s64_s32(x), vreinterpretq_s64_s32(y)));
      };
      vst1q_s8(o.qs[4 * h + 0], lo64(t01l, t23l));
      vst1q_s8(o.qs[4 * h + 1], lo64(t01h, t23h));
      vst1q_s8(o.qs[4 * h + 2], hi64(t01l, t23l));
      vst1q_s8(o.qs[4 * h + 3], hi64(t01h, t23h));
    }
    if constexpr (T == WeightType::kQ6K) {
      for (int t = 0; t < 4; ++t) {
        const BlockQ8A& a = act[t][b0 + b];
        for (int h = 0; h < 2; ++h) {
          int32_t sum = 0;
          for (int i = 0; i < 16; ++i) sum += a.qs[16 * h + i];
          for (int r = 0; r < 4; ++r) o.init[h][r][t] = kMagicBits - 32 * sum;
        }
        o.da[t] = a.d;
      }
    } else {
      for (int t = 0; t < 4; ++t) {
        const BlockQ8A& a = act[t][b0 + b];
        const int32_t init = kMagicBits - kOffset<T> * a.s;
        for (int r = 0; r < 4; ++r) o.init[r][t] = init;
        o.da[t] = a.d;
        o.das[t] = a.d * static_cast<float>(a.s);
      }
    }
  }
}

/// acc[r][g] += by-element sdot of chunk C of token group g with lane C % 4 of row r's half C / 4.
template <int G, int C>
inline void dot_chunk(int32x4_t (&acc)[4][G], const Quad* __restrict qq, const int8x16_t (&wv)[4][2]) {
  PIQUANT_UNROLL
  for (int g = 0; g < G; ++g) {
    const int8x16_t a = vld1q_s8(qq[g].qs[C]);
    PIQUANT_UNROLL
    for (int r = 0; r < 4; ++r) acc[r][g] = vdotq_laneq_s32(acc[r][g], a, wv[r][C / 4], C % 4);
  }
}
template <int G, int... C>
inline void dot_chunks(int32x4_t (&acc)[4][G], const Quad* __restrict qq, const int8x16_t (&wv)[4][2],
                       std::integer_sequence<int, C...>) {
  (dot_chunk<G, C>(acc, qq, wv), ...);
}

/// Rows 4g..4g+3 (the group at `w`, blocks [0, nb) of the chunk) x 4G tokens (quads q[b * G + g]).
/// sc: the group's scales as floats, block b's d_w[0..3] at sc + 8b, q4m's m[0..3] at sc + 8b + 4
/// (converted once per panel and chunk by convert_scales, not once per token tile).
template <WeightType T, int G>
inline void tile(const int8_t* __restrict w, const float* __restrict sc, const Quad* __restrict q,
                 size_t nb, float32x4_t (&out)[4][G]) {
  // q8: the packed group blocks (the int8 weights start 8 bytes in); q4 / q4m: unpack_q4's copy.
  constexpr size_t stride = T == WeightType::kQ8 ? kGroupBytes<T> : kUnpackedBytes;
  float32x4_t facc[4][G];  // local: kept in registers across the loop (no store per block)
  PIQUANT_UNROLL
  for (int r = 0; r < 4; ++r) {
    PIQUANT_UNROLL
    for (int g = 0; g < G; ++g) facc[r][g] = vdupq_n_f32(0.0f);
  }
  for (size_t b = 0; b < nb; ++b) {
    PIQUANT_MCA_BEGIN(T, 4, 4 * G, 1);
    const int8_t* blk = w + b * stride;
    const Quad* qq = q + b * G;
    int8x16_t wv[4][2];  // row r, half h (k 0..15, 16..31)
    PIQUANT_UNROLL
    for (int r = 0; r < 4; ++r) {
      wv[r][0] = vld1q_s8(blk + 16 * r);
      wv[r][1] = vld1q_s8(blk + 64 + 16 * r);
    }
    int32x4_t acc[4][G];
    PIQUANT_UNROLL
    for (int g = 0; g < G; ++g) {
      PIQUANT_UNROLL
      for (int r = 0; r < 4; ++r) {
        // q4: the asm loads keep GCC 12 from one vector move per block (its register allocation;
        // for q8 and q4m they would add moves instead: bench/mca.py shows either).
        const int32_t* init = qq[g].init[r];
        const float* initf = reinterpret_cast<const float*>(init);
        acc[r][g] = T == WeightType::kQ4 ? vreinterpretq_s32_f32(load_fresh(initf)) : vld1q_s32(init);
      }
    }
    dot_chunks<G>(acc, qq, wv, std::make_integer_sequence<int, 8>{});
    const float* s = sc + kScFloats * b;
    const float32x4_t dw = vld1q_f32(s);
    float32x4_t mw = dw;
    if (T == WeightType::kQ4M || T == WeightType::kQ4K || T == WeightType::kQ5K) mw = vld1q_f32(s + 4);
    PIQUANT_UNROLL
    for (int g = 0; g < G; ++g) {
      const float32x4_t da = vld1q_f32(qq[g].da);
      // u = fl(v d_w) = fma(fl(kMagic + v), d_w, -kMagic d_w), exact before its one rounding
      // (kMagic d_w is exact: d_w has 11 significant bits), i.e. the fsub's conversion folded
      // into the multiply; -kMagic d_w is loaded into the fmla's destination (no move).
      float32x4_t u[4];
      u[0] = fmla_lane<0>(load_fresh(s + 8), vreinterpretq_f32_s32(acc[0][g]), dw);
      u[1] = fmla_lane<1>(load_fresh(s + 12), vreinterpretq_f32_s32(acc[1][g]), dw);
      u[2] = fmla_lane<2>(load_fresh(s + 16), vreinterpretq_f32_s32(acc[2][g]), dw);
      u[3] = fmla_lane<3>(load_fresh(s + 20), vreinterpretq_f32_s32(acc[3][g]), dw);
      PIQUANT_UNROLL
      for (int r = 0; r < 4; ++r) facc[r][g] = vfmaq_f32(facc[r][g], u[r], da);
      if (T == WeightType::kQ4M || T == WeightType::kQ4K || T == WeightType::kQ5K) {
        const float32x4_t das = vld1q_f32(qq[g].das);
        facc[0][g] = fmla_lane<0>(facc[0][g], das, mw);
        facc[1][g] = fmla_lane<1>(facc[1][g], das, mw);
        facc[2][g] = fmla_lane<2>(facc[2][g], das, mw);
        facc[3][g] = fmla_lane<3>(facc[3][g], das, mw);
      }
    }
    PIQUANT_MCA_END();
  }
  PIQUANT_UNROLL
  for (int r = 0; r < 4; ++r) {
    PIQUANT_UNROLL
    for (int g = 0; g < G; ++g) out[r][g] = facc[r][g];
  }
}

// --- q6_k on the 4x8 tile ----------------------------------------------------------------
// A Q6_K value is d sc_i (q - 32), q = 0..63, with an int8 scale sc_i per 16-value sub-block i:
// a 32-value block is two q8-like halves, each with its own weight scale d sc_i (exact: 11 x 8
// significant bits) and its own start value kMagicBits - 32 s_h (s_h: the half's activation
// sum; |v| <= 16 x 32 x 127 < 2^22). The 6-bit values are unpacked once per panel and chunk
// (unpack_w) into the q8 group's order (0..63 as int8), so the tile runs per half the q8 tile's
// 32 sdot and two float ops per (row, 4 tokens): per (row, token) and block
// acc = fma(acc, fl(v_0 d sc_2j), d_a), then acc = fma(acc, fl(v_1 d sc_2j+1), d_a).
constexpr size_t kQ6KRowBytes = sizeof(BlockQ6K);                 // 210
constexpr size_t kQ6KGroupBytes = kGroupBytes<WeightType::kQ6K>;  // 840: 4 rows
/// Floats per K-block of q6_k's converted scales: d sc of the two halves (rows 0..3 each), then
/// -kMagic d sc in all 4 lanes per (half, row).
constexpr size_t kScFloatsQ6 = 40;

/// Two rounds of zips: s[r] = 16 bytes [j] of row r -> t[k] = bytes [j][r] for j = 4k..4k+3
/// (lane 4(j - 4k) + r), the K-quant scales' [row][sub-block] to [sub-block][row].
inline void transpose_rows4(const uint8x16_t (&s)[4], uint8x16_t (&t)[4]) {
  const uint16x8_t z01l = vreinterpretq_u16_u8(vzip1q_u8(s[0], s[1]));
  const uint16x8_t z01h = vreinterpretq_u16_u8(vzip2q_u8(s[0], s[1]));
  const uint16x8_t z23l = vreinterpretq_u16_u8(vzip1q_u8(s[2], s[3]));
  const uint16x8_t z23h = vreinterpretq_u16_u8(vzip2q_u8(s[2], s[3]));
  t[0] = vreinterpretq_u8_u16(vzip1q_u16(z01l, z23l));
  t[1] = vreinterpretq_u8_u16(vzip2q_u16(z01l, z23l));
  t[2] = vreinterpretq_u8_u16(vzip1q_u16(z01h, z23h));
  t[3] = vreinterpretq_u8_u16(vzip2q_u16(z01h, z23h));
}

/// The int8 scales of the q6_k super-block group at g, for q6k_dw: t[k] holds bytes [i][row]
/// (sc + 128) of sub-blocks i = 4k..4k+3; d: the 4 rows' d; c: -(2^15 + 128) d.
alignas(16) const uint8_t g_q6k_bias[16] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                            0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80};

inline void q6k_scale_bytes(const uint8_t* __restrict g, uint8x16_t (&t)[4], float32x4_t& d,
                            float* c) {
  // 0x80 loaded (GCC prints its movi as 0xffffffffffffff80, which llvm-mca cannot parse)
  const uint8_t* bias_p = g_q6k_bias;
  asm("" : "+r"(bias_p));
  const uint8x16_t bias = vld1q_u8(bias_p);
  uint8x16_t s[4];
  uint16_t dh[4];
  PIQUANT_UNROLL
  for (int r = 0; r < 4; ++r) {
    const uint8_t* p = g + r * kQ6KRowBytes;
    s[r] = veorq_u8(vld1q_u8(p + offsetof(BlockQ6K, scales)), bias);
    std::memcpy(&dh[r], p + offsetof(BlockQ6K, d), 2);
  }
  d = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(dh)));
  vst1q_f32(c, vmulq_n_f32(d, -32896.0f));  // -(2^15 + 128) d, loaded fresh into each fma
  transpose_rows4(s, t);
}

/// d sc_i of sub-blocks i = 4k..4k+3 (dw[i - 4k], lane r = row r) from q6k_scale_bytes' t[k]. No
/// int -> float conversion: sc + 128 is zipped into bits 8..15 of 0x47000000, the float 2^15 +
/// sc + 128, and one fma with d and -(2^15 + 128) d (exact: 2 x 11 significant bits) gives d sc
/// exactly.
inline void q6k_dw(uint8x16_t tk, float32x4_t d, const float* c, float32x4_t (&dw)[4]) {
  const uint8x16_t zero = vdupq_n_u8(0);
  const uint16x8_t hi = vdupq_n_u16(0x4700);
  const uint16x8_t b0 = vreinterpretq_u16_u8(vzip1q_u8(zero, tk));  // (sc + 128) << 8
  const uint16x8_t b1 = vreinterpretq_u16_u8(vzip2q_u8(zero, tk));
  dw[0] = vfmaq_f32(load_fresh(c), vreinterpretq_f32_u16(vzip1q_u16(b0, hi)), d);
  dw[1] = vfmaq_f32(load_fresh(c), vreinterpretq_f32_u16(vzip2q_u16(b0, hi)), d);
  dw[2] = vfmaq_f32(load_fresh(c), vreinterpretq_f32_u16(vzip1q_u16(b1, hi)), d);
  dw[3] = vfmaq_f32(load_fresh(c), vreinterpretq_f32_u16(vzip2q_u16(b1, hi)), d);
}

/// d sc_i of the 4 rows of the q6_k super-block group at g: out[4 i + r] (i = 0..15, the
/// 16-value sub-blocks), so each sub-block's 4-row vector is one load.
inline void q6k_scales(const uint8_t* __restrict g, float* __restrict out) {
  uint8x16_t t[4];
  float32x4_t d;
  alignas(16) float c[4];
  q6k_scale_bytes(g, t, d, c);
  PIQUANT_UNROLL
  for (int k = 0; k < 4; ++k) {
    float32x4_t dw[4];
    q6k_dw(t[k], d, c, dw);
    PIQUANT_UNROLL
    for (int i = 0; i < 4; ++i) vst1q_f32(out + 16 * k + 4 * i, dw[i]);
  }
}

/// The 6-bit values q (0..63) of quarter qq (values 128 h + 32 qq + l, l = 16 lh .. 16 lh + 15)
/// of the q6_k row block at p (GGUF layout): the nibble and 2 high bits joined by one sli / sri
/// (the high-bit byte masked to 0x33 first, shared by two quarters, so no mask after).
template <int QQ>
inline int8x16_t q6k_quarter(const uint8_t* __restrict p, int h, int lh) {
  // a load per quarter (two quarters share these bytes): sli / sri overwrite their first
  // operand, so one shared register would cost a vector move
  const uint8_t* xp = p + offsetof(BlockQ6K, ql) + 64 * h + 32 * (QQ % 2) + 16 * lh;
  const uint8x16_t x = vreinterpretq_u8_f32(load_fresh(reinterpret_cast<const float*>(xp)));
  uint8x16_t hb = vld1q_u8(p + offsetof(BlockQ6K, qh) + 32 * h + 16 * lh);
  if (QQ % 2 == 1) hb = vshrq_n_u8(hb, 2);
  hb = vandq_u8(hb, vdupq_n_u8(0x33));  // bits 0-1 (quarters 0, 1) and 4-5 (quarters 2, 3)
  return vreinterpretq_s8_u8(QQ < 2 ? vsliq_n_u8(x, hb, 4) : vsriq_n_u8(hb, x, 4));
}

/// acc[r][g] += by-element sdot of chunk C (k 4C..4C+3) of token group g with lane C % 4 of
/// row r's register of that half.
template <int G, int C>
inline void dot_chunk_h(int32x4_t (&acc)[4][G], const QuadQ6* __restrict qq, const int8x16_t (&wv)[4]) {
  PIQUANT_UNROLL
  for (int g = 0; g < G; ++g) {
    const int8x16_t a = vld1q_s8(qq[g].qs[C]);
    PIQUANT_UNROLL
    for (int r = 0; r < 4; ++r) acc[r][g] = vdotq_laneq_s32(acc[r][g], a, wv[r], C % 4);
  }
}

/// One half H of a q6_k block of rows 4g..4g+3 x 4G tokens: 32 G sdot, then per (row, token
/// group) u = fl(v d sc) (fmla by element into the loaded -kMagic d sc) and facc += u d_a.
template <int G, int H>
inline void q6k_half(const int8_t* __restrict blk, const float* __restrict s, const QuadQ6* __restrict qq,
                     float32x4_t (&facc)[4][G]) {
  int8x16_t wv[4];
  PIQUANT_UNROLL
  for (int r = 0; r < 4; ++r) wv[r] = vld1q_s8(blk + 64 * H + 16 * r);
  int32x4_t acc[4][G];
  PIQUANT_UNROLL
  for (int g = 0; g < G; ++g) {
    PIQUANT_UNROLL
    for (int r = 0; r < 4; ++r) acc[r][g] = vld1q_s32(qq[g].init[H][r]);
  }
  dot_chunk_h<G, 4 * H + 0>(acc, qq, wv);
  dot_chunk_h<G, 4 * H + 1>(acc, qq, wv);
  dot_chunk_h<G, 4 * H + 2>(acc, qq, wv);
  dot_chunk_h<G, 4 * H + 3>(acc, qq, wv);
  const float32x4_t dw = vld1q_f32(s + 4 * H);
  const float* nm = s + 8 + 16 * H;
  PIQUANT_UNROLL
  for (int g = 0; g < G; ++g) {
    const float32x4_t da = vld1q_f32(qq[g].da);
    float32x4_t u[4];
    u[0] = fmla_lane<0>(load_fresh(nm), vreinterpretq_f32_s32(acc[0][g]), dw);
    u[1] = fmla_lane<1>(load_fresh(nm + 4), vreinterpretq_f32_s32(acc[1][g]), dw);
    u[2] = fmla_lane<2>(load_fresh(nm + 8), vreinterpretq_f32_s32(acc[2][g]), dw);
    u[3] = fmla_lane<3>(load_fresh(nm + 12), vreinterpretq_f32_s32(acc[3][g]), dw);
    PIQUANT_UNROLL
    for (int r = 0; r < 4; ++r) facc[r][g] = vfmaq_f32(facc[r][g], u[r], da);
  }
}

/// q6_k: rows 4g..4g+3 (unpack_w's copy at w, blocks [0, nb)) x 4G tokens (quads q[b * G + g]),
/// sc: convert_scales' kScFloatsQ6 floats per block.
template <int G>
inline void tile_q6k(const int8_t* __restrict w, const float* __restrict sc, const QuadQ6* __restrict q,
                     size_t nb, float32x4_t (&out)[4][G]) {
  float32x4_t facc[4][G];
  PIQUANT_UNROLL
  for (int r = 0; r < 4; ++r) {
    PIQUANT_UNROLL
    for (int g = 0; g < G; ++g) facc[r][g] = vdupq_n_f32(0.0f);
  }
  for (size_t b = 0; b < nb; ++b) {
    PIQUANT_MCA_BEGIN(WeightType::kQ6K, 4, 4 * G, 1);
    const int8_t* blk = w + b * kUnpackedBytes;
    const QuadQ6* qq = q + b * G;
    const float* s = sc + kScFloatsQ6 * b;
    q6k_half<G, 0>(blk, s, qq, facc);
    q6k_half<G, 1>(blk, s, qq, facc);
    PIQUANT_MCA_END();
  }
  PIQUANT_UNROLL
  for (int r = 0; r < 4; ++r) {
    PIQUANT_UNROLL
    for (int g = 0; g < G; ++g) out[r][g] = facc[r][g];
  }
}

// --- q4_k on the q4m machinery -----------------------------------------------------------
// A Q4_K value is d sc_j q - dmin mn_j with q = 0..15 in 32-value sub-block j: per sub-block, a
// q4m block with scale d sc_j and minimum -dmin mn_j. Those two floats per (row, sub-block) are
// computed once per (4-row group, super-block) by q4k_scales (GEMM: once per panel and chunk, by
// convert_scales into q4m's per-block layout), and the GEMM tile (q4m's tile<>, on unpack_q4's
// copy of the nibbles) / GEMV run q4m's float sequence on each sub-block, so GEMV == GEMM bit for
// bit as for q4m. The nibbles: sub-block j of row r is the low (j even) or high (j odd) nibbles
// of the row's 32 bytes qs[32 (j / 2) ..].
constexpr size_t kQ4KRowBytes = sizeof(BlockQ4K);                    // 144
constexpr size_t kQ4KGroupBytes = kGroupBytes<WeightType::kQ4K>;     // 576: 4 rows

/// The 6-bit scales and minimums of the q4_k super-block group at g (4 rows), for q4k_vec:
/// t[0] / t[2] the bytes [j][row] of sc_j, j = 0..3 / 4..7, t[1] / t[3] those of mn_j; d and dmin
/// of the 4 rows; c[0..3] = -2^23 d, c[4..7] = 2^23 dmin. The 12 scale bytes of a row are
/// unpacked with 64-bit integer ops (kscales' masks) and stored, 16 bytes per row, then loaded
/// as vectors (a store and a load instead of two ASIMD moves); two rounds of zips transpose
/// [row][j] to [j][row].
template <size_t RowBytes = sizeof(BlockQ4K)>
inline void q4k_scale_bytes(const uint8_t* __restrict g, uint8x16_t (&t)[4], float32x4_t& d,
                            float32x4_t& dmin, float* c) {
  static_assert(offsetof(BlockQ4K, scales) == 4 && offsetof(BlockQ5K, scales) == 4, "K-quant scales");
  alignas(16) uint64_t buf[8];
  uint32_t dm[4];
  PIQUANT_UNROLL
  for (int r = 0; r < 4; ++r) {
    const uint8_t* p = g + r * RowBytes;
    const uint8_t* s = p + offsetof(BlockQ4K, scales);
    uint64_t u0;
    uint32_t u2;
    std::memcpy(&u0, s, 8);
    std::memcpy(&u2, s + 8, 4);
    const uint64_t v = u2;
    buf[2 * r] = u0 & 0x3f3f3f3f3f3f3f3fULL;  // sc0..3, mn0..3
    buf[2 * r + 1] = (v & 0x0f0f0f0fULL) | (((v >> 4) & 0x0f0f0f0fULL) << 32) |
                     ((u0 >> 2) & 0x3030303030303030ULL);  // sc4..7, mn4..7
    std::memcpy(&dm[r], p, 4);  // d, dmin (fp16)
  }
  asm("" ::"m"(buf));  // stored as 64-bit integers, loaded as vectors
  uint8x16_t s[4];
  PIQUANT_UNROLL
  for (int r = 0; r < 4; ++r) s[r] = vld1q_u8(reinterpret_cast<const uint8_t*>(buf + 2 * r));
  const float16x8_t h = vreinterpretq_f16_u32(vld1q_u32(dm));
  const float32x4_t lo = vcvt_f32_f16(vget_low_f16(h)), hi = vcvt_high_f32_f16(h);
  d = vuzp1q_f32(lo, hi);
  dmin = vuzp2q_f32(lo, hi);
  vst1q_f32(c, vmulq_n_f32(d, -8388608.0f));  // exact
  vst1q_f32(c + 4, vmulq_n_f32(dmin, 8388608.0f));
  transpose_rows4(s, t);
}

/// Four 4-row float vectors v[i] = (byte [i][row] of tk) x mul, exactly: the byte b is zipped into
/// 0x4B0000bb, the float 2^23 + b, and one fma with mul and the loaded c = -2^23 mul removes the
/// 2^23 (exact: b mul has at most 17 significant bits). q4_k: d sc_j (c = -2^23 d) and -dmin mn_j
/// (mul = -dmin, c = 2^23 dmin).
inline void q4k_vec(uint8x16_t tk, float32x4_t mul, const float* c, float32x4_t (&v)[4]) {
  const uint8x16_t zero = vdupq_n_u8(0);
  const uint16x8_t hi = vdupq_n_u16(0x4B00);
  const uint16x8_t b0 = vreinterpretq_u16_u8(vzip1q_u8(tk, zero));
  const uint16x8_t b1 = vreinterpretq_u16_u8(vzip2q_u8(tk, zero));
  v[0] = vfmaq_f32(load_fresh(c), vreinterpretq_f32_u16(vzip1q_u16(b0, hi)), mul);
  v[1] = vfmaq_f32(load_fresh(c), vreinterpretq_f32_u16(vzip2q_u16(b0, hi)), mul);
  v[2] = vfmaq_f32(load_fresh(c), vreinterpretq_f32_u16(vzip1q_u16(b1, hi)), mul);
  v[3] = vfmaq_f32(load_fresh(c), vreinterpretq_f32_u16(vzip2q_u16(b1, hi)), mul);
}

/// d sc_j and -dmin mn_j of the 4 rows of the q4_k (q5_k: RowBytes 176) super-block group at g:
/// out[4 j + r] and out[32 + 4 j + r] (j = 0..7), so each sub-block's 4-row vectors are one load
/// each.
template <size_t RowBytes = sizeof(BlockQ4K)>
inline void q4k_scales(const uint8_t* __restrict g, float* __restrict out) {
  uint8x16_t t[4];
  float32x4_t d, dmin;
  alignas(16) float c[8];
  q4k_scale_bytes<RowBytes>(g, t, d, dmin, c);
  PIQUANT_UNROLL
  for (int q = 0; q < 2; ++q) {  // sub-blocks 4q..4q+3
    float32x4_t v[4];
    q4k_vec(t[2 * q], d, c, v);
    PIQUANT_UNROLL
    for (int i = 0; i < 4; ++i) vst1q_f32(out + 16 * q + 4 * i, v[i]);
    q4k_vec(t[2 * q + 1], vnegq_f32(dmin), c + 4, v);
    PIQUANT_UNROLL
    for (int i = 0; i < 4; ++i) vst1q_f32(out + 32 + 16 * q + 4 * i, v[i]);
  }
}

/// The scales (and q4m minimums) of blocks [0, nb) of the group at w, as floats (tile's sc).
template <WeightType T>
inline void convert_scales(const uint8_t* w, size_t nb, float* sc) {
  if constexpr (T == WeightType::kQ6K) {
    // Per block j of the super-block: d sc of sub-blocks 2j, 2j + 1 (rows 0..3 each), then
    // -kMagic d sc per (half, row) in all 4 lanes (exact: at most 21 significant bits).
    for (size_t sb = 0; sb < nb / 8; ++sb) {
      alignas(16) float t[64];
      q6k_scales(w + sb * kQ6KGroupBytes, t);
      for (int j = 0; j < 8; ++j) {
        float* s = sc + kScFloatsQ6 * (8 * sb + j);
        PIQUANT_UNROLL
        for (int h = 0; h < 2; ++h) {
          const float32x4_t dw = vld1q_f32(t + 4 * (2 * j + h));
          vst1q_f32(s + 4 * h, dw);
          const float32x4_t c = vmulq_n_f32(dw, -kMagic);
          vst1q_f32(s + 8 + 16 * h, vdupq_laneq_f32(c, 0));
          vst1q_f32(s + 12 + 16 * h, vdupq_laneq_f32(c, 1));
          vst1q_f32(s + 16 + 16 * h, vdupq_laneq_f32(c, 2));
          vst1q_f32(s + 20 + 16 * h, vdupq_laneq_f32(c, 3));
        }
      }
    }
    return;
  }
  if constexpr (T == WeightType::kQ4K || T == WeightType::kQ5K) {
    // Per sub-block j, q4m's layout: d sc_j of rows 0..3, -dmin mn_j, -kMagic d sc_j (exact:
    // d sc_j has at most 17 significant bits).
    for (size_t sb = 0; sb < nb / 8; ++sb) {
      alignas(16) float t[64];
      q4k_scales<kGroupBytes<T> / kRowInterleave>(w + sb * kGroupBytes<T>, t);
      for (int j = 0; j < 8; ++j) {
        float* s = sc + kScFloats * (8 * sb + j);
        const float32x4_t dw = vld1q_f32(t + 4 * j);
        vst1q_f32(s, dw);
        vst1q_f32(s + 4, vld1q_f32(t + 32 + 4 * j));
        const float32x4_t c = vmulq_n_f32(dw, -kMagic);
        vst1q_f32(s + 8, vdupq_laneq_f32(c, 0));
        vst1q_f32(s + 12, vdupq_laneq_f32(c, 1));
        vst1q_f32(s + 16, vdupq_laneq_f32(c, 2));
        vst1q_f32(s + 20, vdupq_laneq_f32(c, 3));
      }
    }
    return;
  }
  for (size_t b = 0; b < nb; ++b) {
    const uint8_t* blk = w + b * kGroupBytes<T>;
    float* s = sc + kScFloats * b;
    const float32x4_t dw = load_f16x4(blk);
    vst1q_f32(s, dw);
    if (T == WeightType::kQ4M) vst1q_f32(s + 4, load_f16x4(blk + 8));
    const float32x4_t c = vmulq_n_f32(dw, -kMagic);  // exact
    vst1q_f32(s + 8, vdupq_laneq_f32(c, 0));
    vst1q_f32(s + 12, vdupq_laneq_f32(c, 1));
    vst1q_f32(s + 16, vdupq_laneq_f32(c, 2));
    vst1q_f32(s + 20, vdupq_laneq_f32(c, 3));
  }
}

/// q4 / q4m / q4_k: the nibbles of blocks [0, nb) of the group at w as int8 (0..15; q6_k: the
/// 6-bit values 0..63), block b's at out + kUnpackedBytes b: row r's k 0..15 at 16 r, k 16..31 at
/// 64 + 16 r (the q8 group's order). Once per panel and chunk, so the GEMM tile (run once per 8
/// tokens) does no unpacking.
template <WeightType T>
inline void unpack_w(const uint8_t* w, size_t nb, int8_t* out) {
  if constexpr (T == WeightType::kQ5K) {
    // q4_k's nibbles, bit 4 = bit j of qh[l] for sub-block j (value l of it).
    constexpr size_t rb = sizeof(BlockQ5K);
    for (size_t sb = 0; sb < nb / 8; ++sb) {
      const uint8_t* g = w + sb * kGroupBytes<T>;
      for (int c = 0; c < 4; ++c) {
        int8_t* lo = out + kUnpackedBytes * (8 * sb + 2 * c);
        int8_t* hi = lo + kUnpackedBytes;
        for (int r = 0; r < 4; ++r) {
          for (int h = 0; h < 2; ++h) {
            const uint8x16_t x = vld1q_u8(g + r * rb + offsetof(BlockQ5K, qs) + 32 * c + 16 * h);
            const uint8x16_t qh = vld1q_u8(g + r * rb + offsetof(BlockQ5K, qh) + 16 * h);
            const uint8x16_t b4 = vdupq_n_u8(0x10);
            const uint8x16_t f0 = vandq_u8(vshlq_u8(qh, vdupq_n_s8(static_cast<int8_t>(4 - 2 * c))), b4);
            const uint8x16_t f1 = vandq_u8(vshlq_u8(qh, vdupq_n_s8(static_cast<int8_t>(3 - 2 * c))), b4);
            vst1q_s8(lo + 64 * h + 16 * r, vreinterpretq_s8_u8(vorrq_u8(vandq_u8(x, vdupq_n_u8(0x0F)), f0)));
            vst1q_s8(hi + 64 * h + 16 * r, vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(x, 4), f1)));
          }
        }
      }
    }
    return;
  }
  if constexpr (T == WeightType::kQ6K) {
    // Block j = 4h + qq of the super-block: quarter qq of half h, k 0..15 (lh 0) and 16..31.
    for (size_t sb = 0; sb < nb / 8; ++sb) {
      const uint8_t* g = w + sb * kQ6KGroupBytes;
      PIQUANT_UNROLL
      for (int r = 0; r < 4; ++r) {
        const uint8_t* p = g + r * kQ6KRowBytes;
        for (int h = 0; h < 2; ++h) {
          for (int lh = 0; lh < 2; ++lh) {
            int8_t* o = out + kUnpackedBytes * (8 * sb + 4 * h) + 64 * lh + 16 * r;
            vst1q_s8(o, q6k_quarter<0>(p, h, lh));
            vst1q_s8(o + kUnpackedBytes, q6k_quarter<1>(p, h, lh));
            vst1q_s8(o + 2 * kUnpackedBytes, q6k_quarter<2>(p, h, lh));
            vst1q_s8(o + 3 * kUnpackedBytes, q6k_quarter<3>(p, h, lh));
          }
        }
      }
    }
    return;
  }
  if constexpr (T == WeightType::kQ4K) {
    // Sub-block j of row r: the low (j even) or high (j odd) nibbles of the row's qs[32 (j / 2)..].
    for (size_t sb = 0; sb < nb / 8; ++sb) {
      const uint8_t* qs = w + sb * kQ4KGroupBytes + offsetof(BlockQ4K, qs);
      for (int c = 0; c < 4; ++c) {
        int8_t* lo = out + kUnpackedBytes * (8 * sb + 2 * c);
        int8_t* hi = lo + kUnpackedBytes;
        PIQUANT_UNROLL
        for (int r = 0; r < 4; ++r) {
          PIQUANT_UNROLL
          for (int h = 0; h < 2; ++h) {
            const uint8x16_t x = vld1q_u8(qs + r * kQ4KRowBytes + 32 * c + 16 * h);
            vst1q_s8(lo + 64 * h + 16 * r, vreinterpretq_s8_u8(vandq_u8(x, vdupq_n_u8(0x0F))));
            vst1q_s8(hi + 64 * h + 16 * r, vreinterpretq_s8_u8(vshrq_n_u8(x, 4)));
          }
        }
      }
    }
    return;
  }
  constexpr size_t off = T == WeightType::kQ4M ? 16 : 8;
  for (size_t b = 0; b < nb; ++b) {
    const uint8_t* blk = w + b * kGroupBytes<T>;
    int8_t* o = out + kUnpackedBytes * b;
    PIQUANT_UNROLL
    for (int r = 0; r < 4; ++r) {
      const uint8x16_t x = vld1q_u8(blk + off + 16 * r);
      vst1q_s8(o + 16 * r, vreinterpretq_s8_u8(vandq_u8(x, vdupq_n_u8(0x0F))));
      vst1q_s8(o + 64 + 16 * r, vreinterpretq_s8_u8(vshrq_n_u8(x, 4)));
    }
  }
}

// out[t][row + r] = (first ? 0 : out) + facc[r][t / 4] lane t % 4, for rows [lo, hi) of
// [row, row + 4) and tokens t < nt.
template <int G>
inline void store_tile(const float32x4_t (&facc)[4][G], float* const* out, size_t row, size_t lo,
                       size_t hi, int nt, bool first) {
  for (int g = 0; g < G; ++g) {
    // Transpose: y[t] = rows 0..3 of token 4g + t.
    const float32x4_t t01l = vtrn1q_f32(facc[0][g], facc[1][g]), t01h = vtrn2q_f32(facc[0][g], facc[1][g]);
    const float32x4_t t23l = vtrn1q_f32(facc[2][g], facc[3][g]), t23h = vtrn2q_f32(facc[2][g], facc[3][g]);
    auto lo64 = [](float32x4_t x, float32x4_t y) {
      return vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(x), vreinterpretq_f64_f32(y)));
    };
    auto hi64 = [](float32x4_t x, float32x4_t y) {
      return vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(x), vreinterpretq_f64_f32(y)));
    };
    const float32x4_t y[4] = {lo64(t01l, t23l), lo64(t01h, t23h), hi64(t01l, t23l), hi64(t01h, t23h)};
    for (int t = 0; t < 4 && 4 * g + t < nt; ++t) {
      float* o = out[4 * g + t] + row;
      if (lo == row && hi == row + 4) {
        vst1q_f32(o, first ? y[t] : vaddq_f32(vld1q_f32(o), y[t]));
      } else {
        float tmp[4];
        vst1q_f32(tmp, y[t]);
        for (size_t r = lo - row; r < hi - row; ++r) o[r] = first ? tmp[r] : o[r] + tmp[r];
      }
    }
  }
}

/// Per panel and chunk: the scales as floats (160 KB: q6_k's 40 floats per block, 24 for the
/// others) and the unpacked values (128 KB: q4 / q4m / q4_k / q5_k / q6_k).
struct GemmScratch {
  alignas(16) float scales[kPanelGroups][kChunk * kScFloatsQ6];
  alignas(16) int8_t unpacked[kPanelGroups][kChunk * kUnpackedBytes];
};

/// One per thread, on the heap (288 KB: too large for the stack of every thread that may run a
/// GEMM), shared by the weight types, allocated on the thread's first GEMM.
GemmScratch& gemm_scratch() {
  static thread_local std::unique_ptr<GemmScratch> scratch;
  if (!scratch) scratch = std::make_unique<GemmScratch>();
  return *scratch;
}

template <WeightType T>
void gemm(const GemmArgs& a) {
  const size_t nb = a.k / kBlock;
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  constexpr size_t gb = kGroupBytes<T>;
  // 32-value blocks per packed group block
  constexpr size_t per =
      T == WeightType::kQ4K || T == WeightType::kQ5K || T == WeightType::kQ6K ? 8 : 1;
  QuadOf<T> quads[kChunk * 2];
  GemmScratch& scratch = gemm_scratch();
  auto& scales = scratch.scales;
  auto& unpacked = scratch.unpacked;
  const size_t row0 = a.m0 - a.m0 % kRowInterleave;
  for (size_t kc = 0; kc < nb; kc += kChunk) {
    const size_t kn = nb - kc < kChunk ? nb - kc : kChunk;
    for (size_t p0 = row0; p0 < a.m1; p0 += kPanelGroups * kRowInterleave) {
      const size_t p1 = p0 + kPanelGroups * kRowInterleave < a.m1 ? p0 + kPanelGroups * kRowInterleave : a.m1;
      for (size_t row = p0; row < p1; row += kRowInterleave) {
        const uint8_t* w = wt + (row / kRowInterleave * nb + kc) / per * gb;
        convert_scales<T>(w, kn, scales[(row - p0) / kRowInterleave]);
        if constexpr (T != WeightType::kQ8) {
          unpack_w<T>(w, kn, unpacked[(row - p0) / kRowInterleave]);
        }
      }
      for (size_t n = a.n0; n < a.n1; n += 8) {
        const int nt = a.n1 - n < 8 ? static_cast<int>(a.n1 - n) : 8;
        const BlockQ8A* act[8];
        float* out[8];
        tiles::token_ptrs_padded(a, n, nt, 8, act, out);  // padding: computed, not stored
        const int g_count = nt > 4 ? 2 : 1;
        // Quads interleaved by token group: quads[b * G + g].
        for (int g = 0; g < g_count; ++g) build_quads<T>(act + 4 * g, kc, kn, quads + g, g_count);
        for (size_t row = p0; row < p1; row += kRowInterleave) {
          const uint8_t* w = wt + (row / kRowInterleave * nb + kc) / per * gb;
          const int8_t* wq = T == WeightType::kQ8 ? reinterpret_cast<const int8_t*>(w) + 8
                                                  : unpacked[(row - p0) / kRowInterleave];
          const size_t lo = row > a.m0 ? row : a.m0, hi = row + 4 < p1 ? row + 4 : p1;
          const float* sc = scales[(row - p0) / kRowInterleave];
          if (g_count == 2) {
            float32x4_t facc[4][2];
            if constexpr (T == WeightType::kQ6K) {
              tile_q6k<2>(wq, sc, quads, kn, facc);
            } else {
              tile<T, 2>(wq, sc, quads, kn, facc);
            }
            store_tile<2>(facc, out, row, lo, hi, nt, kc == 0);
          } else {
            float32x4_t facc[4][1];
            if constexpr (T == WeightType::kQ6K) {
              tile_q6k<1>(wq, sc, quads, kn, facc);
            } else {
              tile<T, 1>(wq, sc, quads, kn, facc);
            }
            store_tile<1>(facc, out, row, lo, hi, nt, kc == 0);
          }
        }
      }
    }
  }
}

// GEMV: per 4-row group and block, 8 sdot (row r's halves x the activation halves) into four
// int32x4 chains, three addp fold them (lane r = row r). Each chain starts from a vector *loaded*
// from the token's per-block record (ActRec, built once per token and reused by every row group),
// whose lanes sum to the start value kMagicBits - off * s: no zeroing moves, no running sums to
// subtract, no dup; a load instead of an ASIMD op (the A76's two ASIMD pipes are the limit, its
// two load pipes are not). Then the same fsub / fmul / fmla as the GEMM (lane r of one float32x4
// = row r), d_a (and q4m's d_a s) by element from the record's float lanes.
struct alignas(16) ActRec {
  int32_t start[4][4];  ///< per row r: lanes sum to kMagicBits - off * s (4 copies: 4 loads, no CSE)
  float da, das, pad[2];
};
static_assert(sizeof(ActRec) == 80, "ActRec layout");

/// q6_k: the two 16-value halves' start values (kMagicBits - 32 s_h in lane 0 of each row copy).
struct alignas(16) ActRecQ6 {
  int32_t start[2][4][4];  ///< [half][row copy]: lanes sum to kMagicBits - 32 s_h
  float da, pad[3];
};
static_assert(sizeof(ActRecQ6) == 144, "ActRecQ6 layout");

template <WeightType T>
using ActRecOf = std::conditional_t<T == WeightType::kQ6K, ActRecQ6, ActRec>;

template <WeightType T>
void build_recs(const BlockQ8A* x, size_t nb, ActRecOf<T>* rec) {
  if constexpr (T == WeightType::kQ6K) {
    for (size_t b = 0; b < nb; ++b) {
      ActRecQ6& o = rec[b];
      for (int h = 0; h < 2; ++h) {
        int32_t sum = 0;
        for (int i = 0; i < 16; ++i) sum += x[b].qs[16 * h + i];
        for (int r = 0; r < 4; ++r) {
          o.start[h][r][0] = kMagicBits - 32 * sum;
          o.start[h][r][1] = o.start[h][r][2] = o.start[h][r][3] = 0;
        }
      }
      o.da = x[b].d;
      o.pad[0] = o.pad[1] = o.pad[2] = 0.0f;
    }
  } else {
    for (size_t b = 0; b < nb; ++b) {
      ActRec& o = rec[b];
      const int32_t init = kMagicBits - kOffset<T> * x[b].s;
      for (int r = 0; r < 4; ++r) {
        o.start[r][0] = init;
        o.start[r][1] = o.start[r][2] = o.start[r][3] = 0;
      }
      o.da = x[b].d;
      o.das = x[b].d * static_cast<float>(x[b].s);
      o.pad[0] = o.pad[1] = 0.0f;
    }
  }
}

/// q8: the four rows' int32 sums of one block (lane r = row r, plus the start value), in asm:
/// the same instructions as the intrinsics, but GCC 12 allocates two vector moves into the
/// intrinsic version of this loop (2.28 instead of 2.03 cycles per block x row in bench/mca.py).
inline int32x4_t dot4_q8(const uint8_t* blk, const int8_t* qs, const int32_t* start) {
  int32x4_t i0, i1, i2, i3;
  int8x16_t a0, a1, w0, w1, w2, w3;
  asm("ldp %q[a0], %q[a1], [%[qs]]\n\t"
      "ldp %q[i0], %q[i1], [%[st]]\n\t"
      "ldp %q[i2], %q[i3], [%[st], #32]\n\t"
      "ldur %q[w0], [%[w], #8]\n\t"
      "ldur %q[w1], [%[w], #24]\n\t"
      "ldur %q[w2], [%[w], #40]\n\t"
      "ldur %q[w3], [%[w], #56]\n\t"
      "sdot %[i0].4s, %[w0].16b, %[a0].16b\n\t"
      "sdot %[i1].4s, %[w1].16b, %[a0].16b\n\t"
      "sdot %[i2].4s, %[w2].16b, %[a0].16b\n\t"
      "sdot %[i3].4s, %[w3].16b, %[a0].16b\n\t"
      "ldur %q[w0], [%[w], #72]\n\t"
      "ldur %q[w1], [%[w], #88]\n\t"
      "ldur %q[w2], [%[w], #104]\n\t"
      "ldur %q[w3], [%[w], #120]\n\t"
      "sdot %[i0].4s, %[w0].16b, %[a1].16b\n\t"
      "sdot %[i1].4s, %[w1].16b, %[a1].16b\n\t"
      "sdot %[i2].4s, %[w2].16b, %[a1].16b\n\t"
      "sdot %[i3].4s, %[w3].16b, %[a1].16b\n\t"
      "addp %[i0].4s, %[i0].4s, %[i1].4s\n\t"
      "addp %[i2].4s, %[i2].4s, %[i3].4s\n\t"
      "addp %[i0].4s, %[i0].4s, %[i2].4s"
      : [i0] "=&w"(i0), [i1] "=&w"(i1), [i2] "=&w"(i2), [i3] "=&w"(i3), [a0] "=&w"(a0),
        [a1] "=&w"(a1), [w0] "=&w"(w0), [w1] "=&w"(w1), [w2] "=&w"(w2), [w3] "=&w"(w3)
      : [w] "r"(blk), [qs] "r"(qs), [st] "r"(start),
        "m"(*reinterpret_cast<const uint8_t(*)[kGroupBytes<WeightType::kQ8>]>(blk)),
        "m"(*reinterpret_cast<const int8_t(*)[kBlock]>(qs)),
        "m"(*reinterpret_cast<const int32_t(*)[16]>(start)));
  return i0;
}

/// One K-block of the group at blk (4 rows) for one token: facc lane r += row r's block term.
template <WeightType T>
inline float32x4_t gemv_block(const uint8_t* __restrict blk, const BlockQ8A& xa, const ActRec& rc,
                              float32x4_t facc) {
  int32x4_t p;
  if (T == WeightType::kQ8) {
    p = dot4_q8(blk, xa.qs, rc.start[0]);
  } else {
    const int8x16_t alo = vld1q_s8(xa.qs), ahi = vld1q_s8(xa.qs + 16);
    int32x4_t i[4];
    PIQUANT_UNROLL
    for (int r = 0; r < 4; ++r) {
      const uint8x16_t q = vld1q_u8(blk + (T == WeightType::kQ4M ? 16 : 8) + 16 * r);
      const int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F)));
      const int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
      i[r] = vdotq_s32(vdotq_s32(vld1q_s32(rc.start[r]), lo, alo), hi, ahi);
    }
    p = vpaddq_s32(vpaddq_s32(i[0], i[1]), vpaddq_s32(i[2], i[3]));
  }
  const float32x2_t dd = vld1_f32(&rc.da);  // d_a, d_a s
  // The GEMM's order: u = fl(v d_w) by one fma (-kMagic d_w exact), then facc += u d_a.
  const float32x4_t dw = load_f16x4(blk);
  const float32x4_t u = vfmaq_f32(vmulq_n_f32(dw, -kMagic), vreinterpretq_f32_s32(p), dw);
  facc = vfmaq_lane_f32(facc, u, dd, 0);
  if (T == WeightType::kQ4M) facc = vfmaq_lane_f32(facc, load_f16x4(blk + 8), dd, 1);
  return facc;
}

/// q4_k: the four rows' int32 sums of one sub-block (lane r = row r, plus the start value) from
/// the rows' 32 bytes at qs (row r at qs + 144 r): their low (NIB: `and` with m4) or high (`ushr`)
/// nibbles, 8 sdot, 3 addp. In asm as dot4_q8: GCC 12 adds vector moves to the intrinsics' form
/// of this loop (bench/mca.py: 4.41 instead of 4.0 cycles per block x row).
#define PIQUANT_Q4K_DOT4(NIB)                                                                   \
  asm("ldp %q[a0], %q[a1], [%[aq]]\n\t"                                                        \
      "ldp %q[x0], %q[x1], [%[w]]\n\t"                                                         \
      "ldp %q[x2], %q[x3], [%[w], #144]\n\t"                                                   \
      "ldp %q[x4], %q[x5], [%[w], #288]\n\t"                                                   \
      "ldp %q[x6], %q[x7], [%[w], #432]\n\t"                                                   \
      "ldp %q[i0], %q[i1], [%[st]]\n\t"                                                        \
      "ldp %q[i2], %q[i3], [%[st], #32]\n\t"                                                   \
      NIB("x0") NIB("x1") NIB("x2") NIB("x3") NIB("x4") NIB("x5") NIB("x6") NIB("x7")          \
      "sdot %[i0].4s, %[x0].16b, %[a0].16b\n\t"                                                \
      "sdot %[i1].4s, %[x2].16b, %[a0].16b\n\t"                                                \
      "sdot %[i2].4s, %[x4].16b, %[a0].16b\n\t"                                                \
      "sdot %[i3].4s, %[x6].16b, %[a0].16b\n\t"                                                \
      "sdot %[i0].4s, %[x1].16b, %[a1].16b\n\t"                                                \
      "sdot %[i1].4s, %[x3].16b, %[a1].16b\n\t"                                                \
      "sdot %[i2].4s, %[x5].16b, %[a1].16b\n\t"                                                \
      "sdot %[i3].4s, %[x7].16b, %[a1].16b\n\t"                                                \
      "addp %[i0].4s, %[i0].4s, %[i1].4s\n\t"                                                  \
      "addp %[i2].4s, %[i2].4s, %[i3].4s\n\t"                                                  \
      "addp %[i0].4s, %[i0].4s, %[i2].4s"                                                      \
      : [i0] "=&w"(i0), [i1] "=&w"(i1), [i2] "=&w"(i2), [i3] "=&w"(i3), [a0] "=&w"(a0),        \
        [a1] "=&w"(a1), [x0] "=&w"(x0), [x1] "=&w"(x1), [x2] "=&w"(x2), [x3] "=&w"(x3),        \
        [x4] "=&w"(x4), [x5] "=&w"(x5), [x6] "=&w"(x6), [x7] "=&w"(x7)                         \
      : [w] "r"(qs), [aq] "r"(aqs), [st] "r"(start), [m] "w"(m4),                               \
        "m"(*reinterpret_cast<const uint8_t(*)[3 * kQ4KRowBytes + 32]>(qs)),                   \
        "m"(*reinterpret_cast<const int8_t(*)[kBlock]>(aqs)),                                  \
        "m"(*reinterpret_cast<const int32_t(*)[16]>(start)))
#define PIQUANT_NIB_LO(x) "and %[" x "].16b, %[" x "].16b, %[m].16b\n\t"
#define PIQUANT_NIB_HI(x) "ushr %[" x "].16b, %[" x "].16b, #4\n\t"
template <int HALF>
inline int32x4_t dot4_q4k(const uint8_t* qs, const int8_t* aqs, const int32_t* start, uint8x16_t m4) {
  int32x4_t i0, i1, i2, i3;
  int8x16_t a0, a1, x0, x1, x2, x3, x4, x5, x6, x7;
  if constexpr (HALF == 0) {
    PIQUANT_Q4K_DOT4(PIQUANT_NIB_LO);
  } else {
    PIQUANT_Q4K_DOT4(PIQUANT_NIB_HI);
  }
  return i0;
}
#undef PIQUANT_Q4K_DOT4
#undef PIQUANT_NIB_LO
#undef PIQUANT_NIB_HI

/// q4_k: super-block `sb` (8 sub-blocks) of the group at sbk (4 rows) for one token, q4m's GEMV
/// sequence per sub-block with the super-block's scales made 4 sub-blocks at a time just before
/// their use (q4k_scale_bytes, q4k_vec: the same values as q4k_scales).
inline float32x4_t gemv_q4k_superblock(const uint8_t* __restrict sbk, const BlockQ8A* __restrict xa,
                                       const ActRec* __restrict rc, float32x4_t facc) {
  uint8x16_t t[4];
  float32x4_t d, dmin;
  alignas(16) float c[8];
  q4k_scale_bytes(sbk, t, d, dmin, c);
  const float32x4_t ndmin = vnegq_f32(dmin);
  const uint8x16_t m4 = vdupq_n_u8(0x0F);
  PIQUANT_UNROLL
  for (int q = 0; q < 2; ++q) {
    float32x4_t dw[4], mw[4];
    q4k_vec(t[2 * q], d, c, dw);
    q4k_vec(t[2 * q + 1], ndmin, c + 4, mw);
    PIQUANT_UNROLL
    for (int cc = 0; cc < 2; ++cc) {
      const int c2 = 2 * q + cc;  // the 32 bytes of sub-blocks 2 c2, 2 c2 + 1
      const uint8_t* qs = sbk + offsetof(BlockQ4K, qs) + 32 * c2;
      PIQUANT_UNROLL
      for (int half = 0; half < 2; ++half) {
        const int j = 2 * c2 + half;
        const int32x4_t p = half == 0 ? dot4_q4k<0>(qs, xa[j].qs, rc[j].start[0], m4)
                                      : dot4_q4k<1>(qs, xa[j].qs, rc[j].start[0], m4);
        const float32x2_t dd = vld1_f32(&rc[j].da);  // d_a, d_a s
        const float32x4_t w = dw[j % 4];             // the GEMM's order, as gemv_block
        const float32x4_t u = vfmaq_f32(vmulq_n_f32(w, -kMagic), vreinterpretq_f32_s32(p), w);
        facc = vfmaq_lane_f32(facc, u, dd, 0);
        facc = vfmaq_lane_f32(facc, mw[j % 4], dd, 1);
      }
    }
  }
  return facc;
}

/// q5_k: as gemv_q4k_superblock (the GEMM's float sequence per sub-block), the value of
/// sub-block j = its nibble with bit 4 = bit j of qh[l]: the qh bytes shifted by a register
/// (`ushl`) and inserted with one bit-select (`bit`) under 0x10.
inline float32x4_t gemv_q5k_superblock(const uint8_t* __restrict sbk, const BlockQ8A* __restrict xa,
                                       const ActRec* __restrict rc, float32x4_t facc) {
  constexpr size_t rb = sizeof(BlockQ5K);
  uint8x16_t t[4];
  float32x4_t d, dmin;
  alignas(16) float c[8];
  q4k_scale_bytes<rb>(sbk, t, d, dmin, c);
  const float32x4_t ndmin = vnegq_f32(dmin);
  const uint8x16_t b4 = vdupq_n_u8(0x10), m4 = vdupq_n_u8(0x0F);
  PIQUANT_UNROLL
  for (int q = 0; q < 2; ++q) {
    float32x4_t dw[4], mw[4];
    q4k_vec(t[2 * q], d, c, dw);
    q4k_vec(t[2 * q + 1], ndmin, c + 4, mw);
    PIQUANT_UNROLL
    for (int cc = 0; cc < 2; ++cc) {
      const int c2 = 2 * q + cc;  // the 32 bytes of sub-blocks 2 c2, 2 c2 + 1
      PIQUANT_UNROLL
      for (int half = 0; half < 2; ++half) {
        const int j = 2 * c2 + half;
        const int8x16_t sh = vdupq_n_s8(static_cast<int8_t>(4 - j));
        const int8x16_t alo = vld1q_s8(xa[j].qs), ahi = vld1q_s8(xa[j].qs + 16);
        int32x4_t i[4];
        PIQUANT_UNROLL
        for (int r = 0; r < 4; ++r) {
          const uint8_t* p = sbk + r * rb;
          const uint8x16_t x0 = vld1q_u8(p + offsetof(BlockQ5K, qs) + 32 * c2);
          const uint8x16_t x1 = vld1q_u8(p + offsetof(BlockQ5K, qs) + 32 * c2 + 16);
          const uint8x16_t h0 = vshlq_u8(vld1q_u8(p + offsetof(BlockQ5K, qh)), sh);
          const uint8x16_t h1 = vshlq_u8(vld1q_u8(p + offsetof(BlockQ5K, qh) + 16), sh);
          const uint8x16_t n0 = half == 0 ? vandq_u8(x0, m4) : vshrq_n_u8(x0, 4);
          const uint8x16_t n1 = half == 0 ? vandq_u8(x1, m4) : vshrq_n_u8(x1, 4);
          const int8x16_t u0 = vreinterpretq_s8_u8(vbslq_u8(b4, h0, n0));
          const int8x16_t u1 = vreinterpretq_s8_u8(vbslq_u8(b4, h1, n1));
          i[r] = vdotq_s32(vdotq_s32(vld1q_s32(rc[j].start[r]), u0, alo), u1, ahi);
        }
        const int32x4_t p = vpaddq_s32(vpaddq_s32(i[0], i[1]), vpaddq_s32(i[2], i[3]));
        const float32x2_t dd = vld1_f32(&rc[j].da);  // d_a, d_a s
        const float32x4_t w = dw[j % 4];             // the GEMM's order, as gemv_block
        const float32x4_t u = vfmaq_f32(vmulq_n_f32(w, -kMagic), vreinterpretq_f32_s32(p), w);
        facc = vfmaq_lane_f32(facc, u, dd, 0);
        facc = vfmaq_lane_f32(facc, mw[j % 4], dd, 1);
      }
    }
  }
  return facc;
}

/// q6_k: super-block `sb` of the group at sbk (4 rows) for one token, the GEMM's float sequence
/// per block (half 0, then half 1). Per block and half: per row one sdot chain from the record's
/// start (the -32 offset in it), three addp fold the 4 rows (lane r = row r). The scales are
/// made per pair of blocks, just before their use (fewer live registers).
inline float32x4_t gemv_q6k_superblock(const uint8_t* __restrict sbk, const BlockQ8A* __restrict xa,
                                       const ActRecQ6* __restrict rc, float32x4_t facc) {
  uint8x16_t t[4];
  float32x4_t d;
  alignas(16) float c[4];
  q6k_scale_bytes(sbk, t, d, c);
  auto block = [&](auto j_c, const float32x4_t* dw) {
    constexpr int J = decltype(j_c)::value, QQ = J % 4, H = J / 4;
    int32x4_t p[2];
    PIQUANT_UNROLL
    for (int lh = 0; lh < 2; ++lh) {
      const int8x16_t a = vld1q_s8(xa[J].qs + 16 * lh);
      int32x4_t i[4];
      PIQUANT_UNROLL
      for (int r = 0; r < 4; ++r) {
        const int8x16_t q = q6k_quarter<QQ>(sbk + r * kQ6KRowBytes, H, lh);
        i[r] = vdotq_s32(vld1q_s32(rc[J].start[lh][r]), q, a);
      }
      p[lh] = vpaddq_s32(vpaddq_s32(i[0], i[1]), vpaddq_s32(i[2], i[3]));
    }
    const float da = rc[J].da;
    PIQUANT_UNROLL
    for (int lh = 0; lh < 2; ++lh) {
      const float32x4_t nm = vmulq_n_f32(dw[lh], -kMagic);
      const float32x4_t u = vfmaq_f32(nm, vreinterpretq_f32_s32(p[lh]), dw[lh]);
      facc = vfmaq_n_f32(facc, u, da);
    }
  };
  auto pair = [&](auto k_c) {
    constexpr int K = decltype(k_c)::value;
    float32x4_t dw[4];  // sub-blocks 4K..4K+3 = blocks 2K, 2K + 1
    q6k_dw(t[K], d, c, dw);
    block(std::integral_constant<int, 2 * K>{}, dw);
    block(std::integral_constant<int, 2 * K + 1>{}, dw + 2);
  };
  pair(std::integral_constant<int, 0>{});
  pair(std::integral_constant<int, 1>{});
  pair(std::integral_constant<int, 2>{});
  pair(std::integral_constant<int, 3>{});
  return facc;
}

// Records per pass: K <= 8192 in one pass (20 KB of stack; q6_k 36 KB); longer rows take several passes over
// the row groups, the running sums parked in the output between them (a float store and load:
// the same float sequence as one pass).
constexpr size_t kRecBlocks = 4 * kChunk;

template <WeightType T>
void gemv(const GemmArgs& a) {
  const size_t nb = a.k / kBlock;
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  constexpr size_t gb = kGroupBytes<T>;
  // 32-value blocks per packed group block
  constexpr size_t per =
      T == WeightType::kQ4K || T == WeightType::kQ5K || T == WeightType::kQ6K ? 8 : 1;
  ActRecOf<T> recs[kRecBlocks];
  for (size_t n = a.n0; n < a.n1; ++n) {
    const auto* x = reinterpret_cast<const BlockQ8A*>(static_cast<const char*>(a.act) + n * a.act_stride);
    float* out = a.dst + n * a.dst_stride;
    for (size_t k0 = 0; k0 < nb; k0 += kRecBlocks) {
      const size_t k1 = nb - k0 < kRecBlocks ? nb : k0 + kRecBlocks;
      build_recs<T>(x + k0, k1 - k0, recs);
      for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += kRowInterleave) {
        const uint8_t* w = wt + row / kRowInterleave * nb / per * gb;
        const bool full = row >= a.m0 && row + 4 <= a.m1;
        float32x4_t y = vdupq_n_f32(0.0f);
        if (k0 > 0) {
          float tmp[4] = {0.0f, 0.0f, 0.0f, 0.0f};
          for (size_t r = 0; r < 4; ++r) {
            if (!full && row + r >= a.m0 && row + r < a.m1) tmp[r] = out[row + r];
          }
          y = full ? vld1q_f32(out + row) : vld1q_f32(tmp);
        }
        for (size_t kc = k0; kc < k1; kc += kChunk) {
          const size_t ke = k1 - kc < kChunk ? k1 : kc + kChunk;
          float32x4_t facc = vdupq_n_f32(0.0f);
          // One block per iteration: unrolled by 2, GCC 12 adds vector moves (the loop counter's
          // 4 instructions then cost less than those).
          const ActRecOf<T>* rc = recs + (kc - k0);
          if constexpr (T == WeightType::kQ6K) {
            for (size_t b = kc; b < ke; b += 8, rc += 8) {
              PIQUANT_MCA_BEGIN(T, 4, 1, 8);
              facc = gemv_q6k_superblock(w + b / 8 * gb, x + b, rc, facc);
              PIQUANT_MCA_END();
            }
          } else if constexpr (T == WeightType::kQ5K) {
            for (size_t b = kc; b < ke; b += 8, rc += 8) {
              PIQUANT_MCA_BEGIN(T, 4, 1, 8);
              facc = gemv_q5k_superblock(w + b / 8 * gb, x + b, rc, facc);
              PIQUANT_MCA_END();
            }
          } else if constexpr (T == WeightType::kQ4K) {
            for (size_t b = kc; b < ke; b += 8, rc += 8) {
              PIQUANT_MCA_BEGIN(T, 4, 1, 8);
              facc = gemv_q4k_superblock(w + b / 8 * gb, x + b, rc, facc);
              PIQUANT_MCA_END();
            }
          } else {
            for (size_t b = kc; b < ke; ++b, ++rc) {
              PIQUANT_MCA_BEGIN(T, 4, 1, 1);
              facc = gemv_block<T>(w + b * gb, x[b], *rc, facc);
              PIQUANT_MCA_END();
            }
          }
          y = kc == 0 ? facc : vaddq_f32(y, facc);
        }
        if (full) {
          vst1q_f32(out + row, y);
        } else {
          float tmp[4];
          vst1q_f32(tmp, y);
          for (size_t r = 0; r < 4; ++r) {
            if (row + r >= a.m0 && row + r < a.m1) out[row + r] = tmp[r];
          }
        }
      }
    }
  }
}

}  // namespace

void gemv_f32_q8_q8_neondot(const GemmArgs& a) { gemv<WeightType::kQ8>(a); }
void gemv_f32_q8_q4_neondot(const GemmArgs& a) { gemv<WeightType::kQ4>(a); }
void gemv_f32_q8_q4m_neondot(const GemmArgs& a) { gemv<WeightType::kQ4M>(a); }
void gemm_f32_q8_q8_4x8_neondot(const GemmArgs& a) { gemm<WeightType::kQ8>(a); }
void gemm_f32_q8_q4_4x8_neondot(const GemmArgs& a) { gemm<WeightType::kQ4>(a); }
void gemm_f32_q8_q4m_4x8_neondot(const GemmArgs& a) { gemm<WeightType::kQ4M>(a); }
void gemv_f32_q8_q4k_neondot(const GemmArgs& a) { gemv<WeightType::kQ4K>(a); }
void gemv_f32_q8_q5k_neondot(const GemmArgs& a) { gemv<WeightType::kQ5K>(a); }
void gemv_f32_q8_q6k_neondot(const GemmArgs& a) { gemv<WeightType::kQ6K>(a); }
void gemv_f32_q8_q50_neondot(const GemmArgs& a) { kmatmul<WeightType::kQ5_0, 1>(a); }
void gemv_f32_q8_q51_neondot(const GemmArgs& a) { kmatmul<WeightType::kQ5_1, 1>(a); }
void gemm_f32_q8_q4k_4x8_neondot(const GemmArgs& a) { gemm<WeightType::kQ4K>(a); }
void gemm_f32_q8_q5k_4x8_neondot(const GemmArgs& a) { gemm<WeightType::kQ5K>(a); }
void gemm_f32_q8_q6k_4x8_neondot(const GemmArgs& a) { gemm<WeightType::kQ6K>(a); }
void gemm_f32_q8_q50_1x4_neondot(const GemmArgs& a) { kmatmul<WeightType::kQ5_0, 4>(a); }
void gemm_f32_q8_q51_1x4_neondot(const GemmArgs& a) { kmatmul<WeightType::kQ5_1, 4>(a); }

}  // namespace piquant::kernels
