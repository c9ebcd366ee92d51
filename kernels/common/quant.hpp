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
/// kQ4K..kQ5_1 are GGUF's Q4_K, Q5_K, Q6_K, Q5_0, Q5_1 blocks, kept as GGUF stores them.
enum class WeightType : uint8_t {
  kF32 = 0,
  kF16 = 1,
  kQ8 = 2,
  kQ4 = 3,
  kQ4M = 4,
  kQ4K = 5,
  kQ5K = 6,
  kQ6K = 7,
  kQ5_0 = 8,
  kQ5_1 = 9,
};
/// One more than the largest WeightType value (table sizes).
constexpr size_t kWeightTypeCount = 10;

/// "f32", "f16", "q8", "q4", "q4m", "q4_k", "q5_k", "q6_k", "q5_0", "q5_1".
const char* to_string(WeightType t);
/// True for the block-quantized types (all but f32 / f16).
inline bool is_quantized(WeightType t) { return t != WeightType::kF32 && t != WeightType::kF16; }
/// True for the K-quant super-block types (q4_k, q5_k, q6_k).
inline bool is_kquant(WeightType t) {
  return t == WeightType::kQ4K || t == WeightType::kQ5K || t == WeightType::kQ6K;
}
/// Values per block of t: 256 (kSuperBlock) for the K-quants, 32 (kBlock) for the others. Rows
/// of type t hold a whole number of blocks.
inline size_t block_values(WeightType t) { return is_kquant(t) ? kSuperBlock : kBlock; }
/// Bytes of one block (block_values(t) elements) of this type: f32 128, f16 64, q8 34, q4 18,
/// q4m 20, q5_0 22, q5_1 24 (32 values); q4_k 144, q5_k 176, q6_k 210 (256 values).
size_t block_bytes(WeightType t);
/// Bytes of one row-major row of k elements (k a multiple of block_values(t)).
inline size_t row_bytes(WeightType t, size_t k) { return k / block_values(t) * block_bytes(t); }

// --- weights: one row of k elements (k % 32 == 0) ---------------------------------------
void quantize_row_q8(const float* x, BlockQ8* y, size_t k);
void quantize_row_q4(const float* x, BlockQ4* y, size_t k);
void quantize_row_q4m(const float* x, BlockQ4M* y, size_t k);
void dequantize_row_q8(const BlockQ8* x, float* y, size_t k);
void dequantize_row_q4(const BlockQ4* x, float* y, size_t k);
void dequantize_row_q4m(const BlockQ4M* x, float* y, size_t k);
// Bit-exact with llama.cpp's dequantize_row_* (same float operations in the same order;
// common/dequant.cpp is built with -ffp-contract=off so no FMA changes a rounding).
void dequantize_row_q5_0(const BlockQ5_0* x, float* y, size_t k);
void dequantize_row_q5_1(const BlockQ5_1* x, float* y, size_t k);
void dequantize_row_q4k(const BlockQ4K* x, float* y, size_t k);  // k % 256 == 0
void dequantize_row_q5k(const BlockQ5K* x, float* y, size_t k);
void dequantize_row_q6k(const BlockQ6K* x, float* y, size_t k);

/// True when quantize_rows() can produce type t (f32, f16, q8, q4, q4m; the GGUF-only types are
/// read from files and have no quantizer here yet).
bool has_quantizer(WeightType t);
/// Quantizes `rows` row-major f32 rows of k elements into row-major rows of type t
/// (row_bytes(t, k) each; f16 rounds to nearest even, f32 copies). t must have a quantizer
/// (has_quantizer(t); the library checks and throws before calling).
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
