#include "format/dtype_convert.hpp"

#include <cstring>

#include "piquant/error.hpp"

namespace piquant {

const char* dtype_name(FileDType t) {
  switch (t) {
    case FileDType::kF32: return "F32";
    case FileDType::kF16: return "F16";
    case FileDType::kBF16: return "BF16";
    case FileDType::kUnsupported: break;
  }
  return "unsupported";
}

size_t dtype_size(FileDType t) {
  switch (t) {
    case FileDType::kF32: return 4;
    case FileDType::kF16:
    case FileDType::kBF16: return 2;
    case FileDType::kUnsupported: break;
  }
  return 0;
}

namespace {

float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return bits_to_f32(sign | 0x7F800000u | (mant << 13));  // Inf / NaN + payload
  if (exp != 0) return bits_to_f32(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return bits_to_f32(sign);  // +-0
  // Subnormal: value = mant * 2^-24. Normalise: shift until the implicit bit (0x400) is set.
  int e = -1;
  do {
    mant <<= 1;
    ++e;
  } while ((mant & 0x400u) == 0);
  // mant had its leading one at bit (9 - e); value = 1.xxx * 2^(-15 - e).
  return bits_to_f32(sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3FFu) << 13));
}

float bf16_to_f32(uint16_t b) { return bits_to_f32(static_cast<uint32_t>(b) << 16); }

uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t exp = (u >> 23) & 0xFFu;
  const uint32_t mant = u & 0x7FFFFFu;
  if (exp == 0xFF) {  // Inf or NaN (keep the top payload bits, force quiet so it stays NaN)
    return static_cast<uint16_t>(sign | 0x7C00u | (mant != 0 ? (0x200u | (mant >> 13)) : 0u));
  }
  const int e = static_cast<int>(exp) - 127 + 15;  // f16 biased exponent
  if (e >= 31) return static_cast<uint16_t>(sign | 0x7C00u);  // overflow -> Inf
  if (e <= 0) {
    // Subnormal f16 (or zero): value = m * 2^-24 with m = round(full_mant * 2^(e - 1 - 13)).
    if (e < -10) return sign;  // below half the smallest subnormal: rounds to 0
    const uint32_t full = mant | 0x800000u;
    const int shift = 14 - e;  // 14..24
    uint32_t m = full >> shift;
    const uint32_t rem = full & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (m & 1u))) ++m;  // may carry into the smallest normal
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t m = mant >> 13;
  const uint32_t rem = mant & 0x1FFFu;
  uint32_t h = (static_cast<uint32_t>(e) << 10) | m;
  if (rem > 0x1000u || (rem == 0x1000u && (m & 1u))) ++h;  // carry may reach Inf: correct
  return static_cast<uint16_t>(sign | h);
}

uint16_t f32_to_bf16(float f) {
  const uint32_t u = f32_to_bits(f);
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x7FFFFFu) != 0) {
    return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN: keep sign/payload top, make quiet
  }
  const uint32_t rounding = 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

void convert_to_f32(FileDType t, const void* src, float* dst, size_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  switch (t) {
    case FileDType::kF32:
      std::memcpy(dst, p, n * 4);
      return;
    case FileDType::kF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      return;
    case FileDType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, p + 2 * i, 2);
        dst[i] = bf16_to_f32(b);
      }
      return;
    case FileDType::kUnsupported: break;
  }
  throw Error(ErrorCode::kInternal, "convert_to_f32 called with an unsupported dtype");
}

}  // namespace piquant
