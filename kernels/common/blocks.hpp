#pragma once
// Block formats of the quantized weights and activations. Weight blocks are bit-exact GGUF
// blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the K-quant super-blocks Q4_K, Q5_K, Q6_K), so GGUF
// tensors convert without loss; the packed (interleaved) layout the kernels read is defined by
// common/pack.cpp and described in docs/formats.md.
#include <cassert>
#include <cstddef>
#include <cstdint>

/// Kernel preconditions: checked in debug builds only; rejecting bad input is the runtime's job.
#ifndef PIQUANT_ASSERT
#define PIQUANT_ASSERT(cond) assert(cond)
#endif

namespace piquant::kernels {

/// Elements per quantization block along K (the reduction dimension). K must be a multiple.
constexpr size_t kBlock = 32;

/// int8 weights, one fp16 scale: w[i] = d * qs[i]. = GGUF block_q8_0.
struct BlockQ8 {
  uint16_t d;  ///< fp16 bits
  int8_t qs[kBlock];
};
static_assert(sizeof(BlockQ8) == 34, "BlockQ8 must match GGUF Q8_0");

/// int4 symmetric: w[j] = d * ((qs[j] & 15) - 8), w[j + 16] = d * ((qs[j] >> 4) - 8),
/// j = 0..15 (GGUF's nibble order: low nibbles hold the first half). = GGUF block_q4_0.
struct BlockQ4 {
  uint16_t d;
  uint8_t qs[kBlock / 2];
};
static_assert(sizeof(BlockQ4) == 18, "BlockQ4 must match GGUF Q4_0");

/// int4 with a per-block minimum: w[j] = d * (qs[j] & 15) + m, w[j + 16] = d * (qs[j] >> 4) + m.
/// = GGUF block_q4_1.
struct BlockQ4M {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kBlock / 2];
};
static_assert(sizeof(BlockQ4M) == 20, "BlockQ4M must match GGUF Q4_1");

/// int5 symmetric: w[j] = d * ((qs[j] & 15 | bit j of qh << 4) - 16), w[j + 16] = d * ((qs[j] >> 4 |
/// bit j + 16 of qh << 4) - 16), j = 0..15, qh read as a little-endian uint32. = GGUF block_q5_0.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kBlock / 2];
};
static_assert(sizeof(BlockQ5_0) == 22, "BlockQ5_0 must match GGUF Q5_0");

/// int5 with a minimum: as BlockQ5_0 without the -16, plus m. = GGUF block_q5_1.
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kBlock / 2];
};
static_assert(sizeof(BlockQ5_1) == 24, "BlockQ5_1 must match GGUF Q5_1");

// --- K-quants: super-blocks of 256 values (GGUF's QK_K), layouts as ggml-common.h ------------

/// Values per K-quant super-block. Rows of the K types need K % 256 == 0.
constexpr size_t kSuperBlock = 256;
/// Bytes of the packed 6-bit scales and minimums of Q4_K / Q5_K (8 sub-blocks of 32).
constexpr size_t kKScaleBytes = 12;

/// Q4_K: 8 sub-blocks of 32 values, each with a 6-bit scale sc and 6-bit minimum mn (packed in
/// scales[12], see kquant_scale_min()): w = d * sc * q - dmin * mn, q = 0..15. qs holds 4
/// chunks of 64 values: chunk c's 32 bytes carry values 64c..64c+31 in the low nibbles and
/// 64c+32..64c+63 in the high ones. = GGUF block_q4_K.
struct BlockQ4K {
  uint16_t d;     ///< fp16 super-block scale of the scales
  uint16_t dmin;  ///< fp16 super-block scale of the minimums
  uint8_t scales[kKScaleBytes];
  uint8_t qs[kSuperBlock / 2];
};
static_assert(sizeof(BlockQ4K) == 144, "BlockQ4K must match GGUF Q4_K");

/// Q5_K: Q4_K plus the fifth bit of each value: bit 2c of qh[l] is the high bit of value
/// 64c + l, bit 2c + 1 that of value 64c + 32 + l (l = 0..31); q = 0..31. = GGUF block_q5_K.
struct BlockQ5K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qh[kSuperBlock / 8];
  uint8_t qs[kSuperBlock / 2];
};
static_assert(sizeof(BlockQ5K) == 176, "BlockQ5K must match GGUF Q5_K");

/// Q6_K: 16 sub-blocks of 16 values with int8 scales: w = d * sc * (q - 32), q = 0..63 from a
/// low nibble (ql) and 2 high bits (qh). Two halves of 128 values; in half h, for l = 0..31:
/// values l, l+32, l+64, l+96 take ql[64h+l] & 15, ql[64h+l+32] & 15, ql[64h+l] >> 4,
/// ql[64h+l+32] >> 4 and bits 0-1, 2-3, 4-5, 6-7 of qh[32h+l]; value v's scale is
/// scales[v / 16]. = GGUF block_q6_K (note: d comes last).
struct BlockQ6K {
  uint8_t ql[kSuperBlock / 2];
  uint8_t qh[kSuperBlock / 4];
  int8_t scales[kSuperBlock / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6K) == 210, "BlockQ6K must match GGUF Q6_K");

/// The j-th (0..7) 6-bit scale and minimum of a Q4_K / Q5_K super-block (ggml's
/// get_scale_min_k4): j < 4 in the low 6 bits of scales[j] / scales[j + 4]; j >= 4 split between
/// a nibble of scales[j + 4] and the top 2 bits of scales[j - 4] / scales[j].
inline void kquant_scale_min(size_t j, const uint8_t* scales, uint8_t* sc, uint8_t* mn) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *mn = scales[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
    *mn = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

/// An activation block, quantized on the fly: x[i] ~= d * qs[i], qs in [-127, 127], and
/// s = sum(qs) (exact), used by kernels that feed unsigned weights to u8 x s8 dot products (the
/// -8 offset of q4, the +128 bias of q8 on x86) and by q4m's minimum term.
struct BlockQ8A {
  float d;
  int32_t s;
  int8_t qs[kBlock];
};
static_assert(sizeof(BlockQ8A) == 40, "BlockQ8A layout");

}  // namespace piquant::kernels
