#pragma once
// Weight quantization (round-to-nearest, GGUF-compatible) and on-the-fly activation
// quantization (f32 -> BlockQ8A). Row-major "rows" here are GGUF-style: each row is K/32
// consecutive blocks (or K floats / halves for f32 / f16); the kernels read the packed form
// (common/pack.hpp).
#include <cstddef>
#include <cstdint>

#include "common/blocks.hpp"
#include "common/cpu.hpp"

namespace piquant::kernels {

/// Element type of a weight matrix. Numeric values are stable (stored in .piq files).
enum class WeightType : uint8_t { kF32 = 0, kF16 = 1, kQ8 = 2, kQ4 = 3, kQ4M = 4 };

/// "f32", "f16", "q8", "q4", "q4m".
const char* to_string(WeightType t);
/// True for the block-quantized types (q8, q4, q4m).
inline bool is_quantized(WeightType t) { return t == WeightType::kQ8 || t == WeightType::kQ4 || t == WeightType::kQ4M; }
/// Bytes of one 32-element block of this type (f32: 128, f16: 64, q8: 34, q4: 18, q4m: 20).
size_t block_bytes(WeightType t);
/// Bytes of one row-major row of k elements (k a multiple of 32).
inline size_t row_bytes(WeightType t, size_t k) { return k / kBlock * block_bytes(t); }

// --- weights: one row of k elements (k % 32 == 0) ---------------------------------------
void quantize_row_q8(const float* x, BlockQ8* y, size_t k);
void quantize_row_q4(const float* x, BlockQ4* y, size_t k);
void quantize_row_q4m(const float* x, BlockQ4M* y, size_t k);
void dequantize_row_q8(const BlockQ8* x, float* y, size_t k);
void dequantize_row_q4(const BlockQ4* x, float* y, size_t k);
void dequantize_row_q4m(const BlockQ4M* x, float* y, size_t k);

/// Quantizes `rows` row-major f32 rows of k elements into row-major rows of type t
/// (row_bytes(t, k) each; f16 rounds to nearest even, f32 copies).
void quantize_rows(WeightType t, const float* x, size_t rows, size_t k, void* dst);
/// The inverse: row-major rows of type t back to f32.
void dequantize_rows(WeightType t, const void* src, size_t rows, size_t k, float* y);

// --- activations ------------------------------------------------------------------------
/// f32 -> int8 blocks of 32: d = max|x| / 127, qs = round_half_even(x / d), s = sum(qs).
/// Every variant gives bit-identical blocks (same float operations, same rounding).
using QuantActFn = void (*)(const float* x, BlockQ8A* y, size_t k);

void quant_q8a_f32_ref(const float* x, BlockQ8A* y, size_t k);
#if defined(__x86_64__)
void quant_q8a_f32_avx2(const float* x, BlockQ8A* y, size_t k);
void quant_q8a_f32_avx512vnni(const float* x, BlockQ8A* y, size_t k);
#endif
#if defined(__aarch64__)
void quant_q8a_f32_neon(const float* x, BlockQ8A* y, size_t k);
#endif

struct QuantActKernel {
  const char* name;
  CpuFeature needs;
  QuantActFn run;
};
/// Every compiled variant, best first (the last is the reference).
const QuantActKernel* quant_act_kernels(size_t* count);
/// The best variant the CPU (capped by PIQUANT_ISA) has; chosen once.
const QuantActKernel& quant_act_kernel();

}  // namespace piquant::kernels
