#pragma once
// KV cache element formats, shared by the attention kernels, the KV cache and the tests.
//
//   f32  float rows                         4    bytes/element
//   f16  IEEE binary16 rows (the default)   2    bytes/element
//   q8   int8 rows + one f32 scale per block of 32 elements along head_dim
//        (x ~= d * q, d = max|x| / 127, q in [-127, 127]); scales live in a separate plane,
//        so int8 rows stay contiguous:     1.125 bytes/element
//
// Layout (KvStore and every attention kernel): one plane per (layer, kv head), positions
// contiguous:  row t of a kv head = head_dim elements at base + t * head_dim; for q8 its
// scales are scale_base + t * kv_q8_blocks(head_dim) (a last block shorter than 32 when
// head_dim % 32 != 0; the SIMD kernels require head_dim % 32 == 0, the ref takes any).
//
// Why per-block-32 scales for int8: keys have outlier channels, so one scale per row loses
// the small channels; 32 matches GGUF Q8_0 and every SIMD width we use.
//
// The helpers here are scalar and have internal linkage (anonymous namespace): this header is
// included by files built with -mavx2/-mavx512f, and an `inline` function compiled there could
// be the copy the linker keeps for generic code (ODR clash, see STYLE.md).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/fp16.hpp"

namespace piquant::kernels {

enum class KvType : uint8_t { kF32, kF16, kQ8 };

constexpr size_t kKvQ8Block = 32;

namespace {

inline const char* kv_type_name(KvType t) {
  switch (t) {
    case KvType::kF32:
      return "f32";
    case KvType::kF16:
      return "f16";
    case KvType::kQ8:
      return "q8";
  }
  return "?";
}

inline size_t kv_q8_blocks(size_t head_dim) { return (head_dim + kKvQ8Block - 1) / kKvQ8Block; }

/// Bytes of one row's elements (scales excluded).
inline size_t kv_row_bytes(KvType t, size_t head_dim) {
  return head_dim * (t == KvType::kF32 ? 4 : t == KvType::kF16 ? 2 : 1);
}

/// binary16 <-> binary32 (exact; round to nearest even the other way, as F16C / NEON FCVT do):
/// common/fp16.hpp's, the tree's one implementation, under the names the KV code uses.
inline float f16_to_f32_scalar(uint16_t h) { return fp16_to_f32(h); }
inline uint16_t f32_to_f16_scalar(float f) { return fp16_from_f32(f); }

/// Quantizes one row of n floats into q8 (blocks of 32, the last may be shorter).
inline void kv_quantize_q8_row(int8_t* q, float* scales, const float* x, size_t n) {
  for (size_t b0 = 0, bi = 0; b0 < n; b0 += kKvQ8Block, ++bi) {
    const size_t b1 = b0 + kKvQ8Block < n ? b0 + kKvQ8Block : n;
    float amax = 0.0f;
    for (size_t i = b0; i < b1; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (size_t i = b0; i < b1; ++i) {
      float r = std::nearbyint(x[i] * id);
      r = r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
      q[i] = static_cast<int8_t>(r);
    }
    scales[bi] = d;
  }
}

}  // namespace
}  // namespace piquant::kernels
