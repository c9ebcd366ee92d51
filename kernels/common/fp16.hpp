#pragma once
// Scalar IEEE half <-> float and bfloat16 -> float conversions, bit-exact (round to nearest
// even, subnormals, inf and NaN). In an unnamed namespace on purpose: ISA files compiled with
// -mavx2/-march=...+dotprod include this header too, and an inline function with external
// linkage built with different flags is an ODR clash (the linker may keep the AVX2 copy).
#include <cstdint>
#include <cstring>

namespace piquant::kernels {
namespace {

inline float fp32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline uint32_t fp32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

/// fp16 bits -> float (exact: every half is a float).
inline float fp16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return fp32_from_bits(sign | 0x7F800000u | (mant << 13));  // inf / NaN
  if (exp != 0) return fp32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return fp32_from_bits(sign);  // +-0
  // Subnormal half: normalize.
  uint32_t e = 113;
  while ((mant & 0x400u) == 0) {
    mant <<= 1;
    --e;
  }
  return fp32_from_bits(sign | (e << 23) | ((mant & 0x3FFu) << 13));
}

/// float -> fp16 bits, round to nearest even; overflow gives inf, NaN stays NaN.
inline uint16_t fp16_from_f32(float f) {
  const uint32_t u = fp32_to_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) {  // inf or NaN
    return uint16_t(sign | 0x7C00u | (abs > 0x7F800000u ? 0x200u | ((abs >> 13) & 0x3FFu) : 0u));
  }
  if (abs >= 0x477FF000u) return uint16_t(sign | 0x7C00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {                                 // below the smallest normal half
    if (abs < 0x33000000u) return sign;                    // < half of the smallest subnormal
    const uint32_t e = abs >> 23;
    const uint32_t mant = (abs & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
    return uint16_t(sign | h);
  }
  uint32_t h = ((abs >> 13) - (112u << 10));
  const uint32_t rem = abs & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent: ok
  return uint16_t(sign | h);
}

/// bfloat16 bits -> float (exact).
inline float bf16_to_f32(uint16_t b) { return fp32_from_bits(uint32_t(b) << 16); }

}  // namespace
}  // namespace piquant::kernels
