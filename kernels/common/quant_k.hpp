#pragma once
// Weight quantizers for GGUF's K-quant super-blocks (Q4_K, Q5_K, Q6_K: 256 values) and the
// 5-bit 32-value blocks (Q5_0, Q5_1), writing bytes exactly as GGUF defines them
// (ggml-common.h's block_q4_K / block_q5_K / block_q6_K / block_q5_0 / block_q5_1; the layouts
// are described in lib/format/kquants.hpp and docs/formats.md).
//
// Two quantizers per type:
//  - round to nearest (`search = false`): each (sub-)block's range mapped onto the integer range
//    (Q4_K / Q5_K: [min(0, min x), max x]; Q6_K / Q5_0: the largest magnitude), the sub-block
//    scales and minimums coded as 6-bit (Q6_K: 8-bit) multiples of the super-block's fp16 scale
//    by rounding, then every value rounded. The baseline.
//  - the search (default): minimizes the weighted squared error sum_i w_i (x_i - deq_i)^2,
//    w_i from kquant_error_weights (the importance per input column, 1 without calibration,
//    times a magnitude term for the K types). Per sub-block, a grid of
//    range mappings each refit by weighted least squares (scale, and minimum where the type has
//    one) for the integers it rounds to, the best kept; then the super-block scales d / dmin
//    are chosen from a few candidates around the largest sub-block scale / minimum over 63
//    (127 for Q6_K), each sub-block's 6-bit codes picked from the 3 x 3 neighbourhood of their
//    rounded values by the real (re-rounded, dequantized) error; the best candidate is kept.
//    The round-to-nearest block is a candidate too, so the search is never worse than it under
//    that weighted error (tested).
// Pure computation (no allocation, no exceptions): the callers check k (lib/convert/quantize).
#include <cstddef>
#include <cstdint>

#include "common/blocks.hpp"

namespace piquant::kernels {

/// GGUF block sizes in bytes (= sizeof BlockQ4K, BlockQ5K, BlockQ6K, BlockQ5_0, BlockQ5_1).
constexpr size_t kQ4KBytes = 144, kQ5KBytes = 176, kQ6KBytes = 210, kQ5_0Bytes = 22,
                 kQ5_1Bytes = 24;
static_assert(sizeof(BlockQ4K) == kQ4KBytes && sizeof(BlockQ5K) == kQ5KBytes &&
                  sizeof(BlockQ6K) == kQ6KBytes && sizeof(BlockQ5_0) == kQ5_0Bytes &&
                  sizeof(BlockQ5_1) == kQ5_1Bytes,
              "the quantizers write GGUF's blocks");

/// Which GGUF block a quantizer writes.
enum class KQuant : uint8_t { kQ4K, kQ5K, kQ6K, kQ5_0, kQ5_1 };

/// "q4_k", "q5_k", "q6_k", "q5_0", "q5_1".
const char* to_string(KQuant t);
/// Values per block: 256 for the K types, 32 for Q5_0 / Q5_1.
size_t kquant_block_values(KQuant t);
/// Bytes per block (144, 176, 210, 22, 24).
size_t kquant_block_bytes(KQuant t);
/// Bytes of one row of k values (k a multiple of kquant_block_values(t)).
inline size_t kquant_row_bytes(KQuant t, size_t k) {
  return k / kquant_block_values(t) * kquant_block_bytes(t);
}
/// The ggml type id (Q5_0 6, Q5_1 7, Q4_K 12, Q5_K 13, Q6_K 14).
uint32_t kquant_ggml_type(KQuant t);

struct KQuantOptions {
  bool search = true;                 ///< false: plain round to nearest
  const float* importance = nullptr;  ///< k values (>= 0, finite) per row position, or null
};

/// The per-value weights of the error the search minimizes for one block of t (block values
/// of x; importance: the block's calibration weights or null). Q4_K / Q5_K / Q6_K:
/// importance[i] * sqrt(sigma2 + x[i]^2), sigma2 = 2 * mean(x^2) over the super-block (llama.cpp's
/// idea for K-quants: the activation statistics times a magnitude term favouring a block's larger
/// weights; measured better in KL on both quality models); Q5_0 / Q5_1: importance[i] (or 1).
void kquant_error_weights(KQuant t, const float* x, const float* importance, float* w);

/// Quantizes one row of k values (k % kquant_block_values(t) == 0, checked by the caller) into
/// kquant_row_bytes(t, k) bytes of GGUF blocks. Non-finite inputs are the caller's to reject.
void quantize_row_kquant(KQuant t, const float* x, uint8_t* dst, size_t k,
                         const KQuantOptions& options);

/// The inverse, exactly as ggml dequantizes (float operations in ggml's order; built with
/// -ffp-contract=off like common/dequant.cpp), so the weighted error the search compares is that
/// of the real values. Tested bit-exact against dequantize_rows().
void dequantize_row_kquant(KQuant t, const uint8_t* src, float* y, size_t k);

}  // namespace piquant::kernels
