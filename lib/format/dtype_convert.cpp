#include "format/dtype_convert.hpp"

#include <cstring>

#include "common/fp16.hpp"
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

uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace

float f16_to_f32(uint16_t h) { return kernels::fp16_to_f32(h); }
float bf16_to_f32(uint16_t b) { return kernels::bf16_to_f32(b); }
uint16_t f32_to_f16(float f) { return kernels::fp16_from_f32(f); }

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
