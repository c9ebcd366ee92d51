#pragma once
// Block formats of the quantized weights and activations. Weight blocks are bit-exact GGUF
// blocks (Q8_0, Q4_0, Q4_1), so GGUF tensors convert without loss; the packed (interleaved)
// layout the kernels read is defined by common/pack.cpp and described in docs/formats.md.
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
