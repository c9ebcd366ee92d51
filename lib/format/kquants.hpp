#pragma once
// Dequantizers for the GGUF block types piquant has no kernels for (Q2_K, Q3_K, Q8_K, IQ4_NL,
// IQ4_XS), so such files load: their tensors are expanded to f32 once and re-quantized to
// piquant's nearest type (and Q4_K / Q5_K / Q6_K for the converter). Layouts as in ggml's
// ggml-common.h:
//   Q4_K (144 B): fp16 d, fp16 dmin, scales[12] (8 x 6-bit scale + 6-bit min), qs[128] nibbles
//   Q5_K (176 B): as Q4_K plus qh[32], the fifth bit of each value
//   Q6_K (210 B): ql[128] low nibbles, qh[64] high 2 bits, int8 scales[16], fp16 d
//   Q8_K (292 B): f32 d, int8 qs[256], int16 bsums[16]
#include <cstddef>
#include <cstdint>

namespace piquant {

constexpr size_t kQK = 256;

/// Dequantizes `n` values (a multiple of the type's block) of the given ggml type id (10 Q2_K,
/// 11 Q3_K, 12 Q4_K, 13 Q5_K, 14 Q6_K, 15 Q8_K, 20 IQ4_NL, 23 IQ4_XS), as llama.cpp's
/// dequantize_row_*. Returns false for another type. The loader keeps Q4_K / Q5_K / Q6_K in
/// their own types (kernels/common/dequant.cpp dequantizes those); the others are re-quantized.
bool dequantize_kquant(uint32_t ggml_type, const uint8_t* src, float* dst, size_t n);

}  // namespace piquant
