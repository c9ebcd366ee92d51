// F16 / BF16 <-> F32 conversion: exhaustive over all 65536 half values, NaN/Inf/subnormals,
// and round-to-nearest-even in the f32 -> half direction.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "format/dtype_convert.hpp"

using namespace piquant;

namespace {
uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
}  // namespace

TEST_CASE("f16 to f32 gives the exact values of known encodings", "[lib][format]") {
  CHECK(f16_to_f32(0x3C00) == 1.0f);
  CHECK(f16_to_f32(0xC000) == -2.0f);
  CHECK(f16_to_f32(0x7BFF) == 65504.0f);
  CHECK(f16_to_f32(0x0400) == std::ldexp(1.0f, -14));          // smallest normal
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));          // smallest subnormal
  CHECK(f16_to_f32(0x03FF) == std::ldexp(1023.0f, -24));       // largest subnormal
  CHECK(f16_to_f32(0x8001) == -std::ldexp(1.0f, -24));
  CHECK(bits(f16_to_f32(0x8000)) == 0x80000000u);              // -0 keeps its sign
  CHECK(f16_to_f32(0x7C00) == std::numeric_limits<float>::infinity());
  CHECK(f16_to_f32(0xFC00) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(f16_to_f32(0x7E00)));
  CHECK(std::isnan(f16_to_f32(0x7C01)));                       // signalling-NaN payload
  CHECK(std::signbit(f16_to_f32(0xFE00)));
}

TEST_CASE("every f16 and bf16 value survives a round trip through f32", "[lib][format]") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const auto v = static_cast<uint16_t>(h);
    const float f = f16_to_f32(v);
    const float b = bf16_to_f32(v);
    CAPTURE(h);
    if (std::isnan(f)) {
      REQUIRE(std::isnan(f16_to_f32(f32_to_f16(f))));
      REQUIRE((f32_to_f16(f) & 0x8000) == (v & 0x8000));
    } else {
      REQUIRE(f32_to_f16(f) == v);
    }
    if (std::isnan(b)) {
      REQUIRE(std::isnan(bf16_to_f32(f32_to_bf16(b))));
    } else {
      REQUIRE(f32_to_bf16(b) == v);
      REQUIRE(bits(b) == static_cast<uint32_t>(v) << 16);
    }
  }
}

TEST_CASE("f32 to f16/bf16 rounds to the nearest value, ties to even", "[lib][format]") {
  // Ties: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 -> even (1); 1 + 3*2^-11 -> 1 + 2^-9.
  CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);
  CHECK(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);
  CHECK(f32_to_f16(65520.0f) == 0x7C00);  // rounds past the largest finite -> Inf
  CHECK(f32_to_f16(65519.0f) == 0x7BFF);
  CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);                 // tie to even zero
  CHECK(f32_to_f16(std::ldexp(1.5f, -25)) == 0x0001);
  CHECK(f32_to_f16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -26)) == 0x0400);  // carries to normal
  CHECK(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3F80);  // tie -> even
  CHECK(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3F82);
  CHECK(f32_to_bf16(std::numeric_limits<float>::max()) == 0x7F80);  // overflow -> Inf
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> ex(-30, 15);  // below 65504: no overflow to Inf
  for (int i = 0; i < 20000; ++i) {
    const float x = std::ldexp(mant(rng), ex(rng)) * (i % 2 ? -1.0f : 1.0f);
    const uint16_t h = f32_to_f16(x);
    const double err = std::fabs(static_cast<double>(f16_to_f32(h)) - static_cast<double>(x));
    // Neighbours one code up and down must not be closer.
    for (int d : {-1, 1}) {
      const auto n = static_cast<uint16_t>(h + d);
      const float fn = f16_to_f32(n);
      if (std::isnan(fn) || std::isinf(fn) || ((n ^ h) & 0x8000)) continue;
      CAPTURE(x, h, n);
      REQUIRE(err <= std::fabs(static_cast<double>(fn) - static_cast<double>(x)));
    }
  }
}

TEST_CASE("convert_to_f32 reads unaligned little-endian rows of each type", "[lib][format]") {
  const float vals[5] = {1.5f, -0.25f, 0.0f, 1e-6f, 3e4f};
  unsigned char buf[1 + 5 * 4];
  float out[5];
  std::memcpy(buf + 1, vals, sizeof vals);
  convert_to_f32(FileDType::kF32, buf + 1, out, 5);
  for (int i = 0; i < 5; ++i) CHECK(out[i] == vals[i]);
  for (FileDType t : {FileDType::kF16, FileDType::kBF16}) {
    for (int i = 0; i < 5; ++i) {
      const uint16_t h = t == FileDType::kF16 ? f32_to_f16(vals[i]) : f32_to_bf16(vals[i]);
      std::memcpy(buf + 1 + 2 * i, &h, 2);
    }
    convert_to_f32(t, buf + 1, out, 5);
    for (int i = 0; i < 5; ++i) {
      const float want = t == FileDType::kF16 ? f16_to_f32(f32_to_f16(vals[i]))
                                              : bf16_to_f32(f32_to_bf16(vals[i]));
      CHECK(out[i] == want);
      CHECK(std::fabs(out[i] - vals[i]) <= 0.01f * std::fabs(vals[i]) + 1e-7f);
    }
  }
  CHECK(dtype_size(FileDType::kBF16) == 2);
  CHECK(std::string(dtype_name(FileDType::kF16)) == "F16");
  CHECK_THROWS(convert_to_f32(FileDType::kUnsupported, buf, out, 1));
}
