#pragma once
// Float storage types of checkpoint files (F32, F16, BF16) and their conversion to f32, one row
// at a time. Scalar and bit-exact: NaN stays NaN (payload and sign kept where f32 can hold them),
// +-Inf stays Inf, F16 subnormals become the exact f32 value, BF16 is the top half of an f32.
// The other direction rounds to nearest even, as numpy and torch do.
#include <cstddef>
#include <cstdint>
#include <string>

namespace piquant {

/// Element types piquant converts from. kUnsupported: a type the file format knows (I64, F64,
/// F8_E4M3, ...) that piquant does not read; the caller reports it by tensor name.
enum class FileDType { kF32, kF16, kBF16, kUnsupported };

/// "F32", "F16", "BF16" (safetensors spelling); "unsupported" otherwise.
const char* dtype_name(FileDType t);
/// Bytes per element; 0 for kUnsupported.
size_t dtype_size(FileDType t);

// f16 <-> f32 and bf16 -> f32 are kernels/common/fp16.hpp's, the tree's one implementation (the
// kernels, the KV cache and the converters round the same way); these are its names here.
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t b);
/// Round to nearest even; overflow gives Inf, NaN stays a (quiet) NaN with the sign kept.
uint16_t f32_to_f16(float f);
uint16_t f32_to_bf16(float f);

/// Converts `n` elements of type `t` at `src` (any alignment, little-endian) to f32 at `dst`.
/// t must not be kUnsupported (PIQUANT_ASSERT-style precondition; throws kInternal if it is).
void convert_to_f32(FileDType t, const void* src, float* dst, size_t n);

}  // namespace piquant
