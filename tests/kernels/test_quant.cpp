// fp16/bf16 conversion, GGUF-compatible weight quantization, activation quantization (every
// variant bit-identical to the reference) and pack/unpack of the interleaved layout.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "common/aligned.hpp"
#include "common/fp16.hpp"
#include "common/pack.hpp"
#include "common/quant.hpp"

using namespace piquant::kernels;

TEST_CASE("fp16 round-trips every non-NaN half and rounds to nearest even", "[kernels][quant]") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      CHECK(std::isnan(fp16_to_f32(fp16_from_f32(f))));
      continue;
    }
    CAPTURE(h);
    REQUIRE(fp16_from_f32(f) == h);
  }
  CHECK(fp16_from_f32(1.0f) == 0x3C00);
  CHECK(fp16_from_f32(65504.0f) == 0x7BFF);
  CHECK(fp16_from_f32(65520.0f) == 0x7C00);               // rounds up to inf
  CHECK(fp16_from_f32(std::ldexp(1.0f, -24)) == 0x0001);  // smallest subnormal
  CHECK(fp16_from_f32(std::ldexp(1.0f, -25)) == 0x0000);  // tie -> even (0)
  CHECK(fp16_from_f32(std::ldexp(1.5f, -25)) == 0x0001);
  CHECK(fp16_from_f32(std::ldexp(3.0f, -25)) == 0x0002);  // 1.5 subnormal ulps: tie -> even
  CHECK(fp16_from_f32(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);      // tie -> even
  CHECK(fp16_from_f32(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);  // tie -> even (up)
  CHECK(fp16_from_f32(-2.0f) == 0xC000);
  CHECK(fp16_from_f32(std::numeric_limits<float>::infinity()) == 0x7C00);
  // Random floats: the result is the nearest half (ties checked above).
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> e(-26.0f, 16.0f);
  for (int i = 0; i < 20000; ++i) {
    const float x = std::exp2(e(rng)) * (i % 2 ? -1.0f : 1.0f);
    const uint16_t h = fp16_from_f32(x);
    const double err = std::fabs(double(fp16_to_f32(h)) - double(x));
    for (int dlt : {-1, 1}) {
      const uint16_t nb = static_cast<uint16_t>(h + dlt);
      if ((nb & 0x7FFF) >= 0x7C00 || ((nb ^ h) & 0x8000)) continue;
      CAPTURE(x, h, nb);
      REQUIRE(err <= std::fabs(double(fp16_to_f32(nb)) - double(x)));
    }
  }
}

TEST_CASE("bf16 widens exactly", "[kernels][quant]") {
  CHECK(bf16_to_f32(0x3F80) == 1.0f);
  CHECK(bf16_to_f32(0xC040) == -3.0f);
  CHECK(std::isinf(bf16_to_f32(0x7F80)));
}

TEST_CASE("q4 quantization produces GGUF Q4_0 bytes", "[kernels][quant]") {
  float x[32];
  for (int i = 0; i < 32; ++i) x[i] = float(i - 16);  // max magnitude -16: d = -16 / -8 = 2
  BlockQ4 b;
  quantize_row_q4(x, &b, 32);
  CHECK(b.d == 0x4000);  // 2.0
  for (int j = 0; j < 16; ++j) {
    // q = trunc(x / 2 + 8.5): x_j = j - 16 -> j / 2 (+0.5), x_{j+16} = j -> 8 + j / 2, <= 15
    const int q0 = static_cast<int>((j - 16) * 0.5f + 8.5f);
    const int q1 = std::min(15, static_cast<int>(j * 0.5f + 8.5f));
    CAPTURE(j);
    CHECK(b.qs[j] == (q0 | (q1 << 4)));
  }
  float y[32];
  dequantize_row_q4(&b, y, 32);
  for (int i = 0; i < 32; ++i) CHECK(std::fabs(y[i] - x[i]) <= 1.0f);  // <= d / 2
}

TEST_CASE("weight quantizers round-trip within half a step", "[kernels][quant]") {
  const uint32_t seed = 1234;
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const size_t k = 256;
  std::vector<float> x(k), y(k);
  for (float& v : x) v = dist(rng) * 3.0f;
  x[5] = 0.0f;
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // a zero block: d = 0, no NaN
  for (WeightType t : {WeightType::kQ8, WeightType::kQ4, WeightType::kQ4M, WeightType::kF16}) {
    std::vector<uint8_t> q(row_bytes(t, k));
    quantize_rows(t, x.data(), 1, k, q.data());
    dequantize_rows(t, q.data(), 1, k, y.data());
    for (size_t b = 0; b < k / 32; ++b) {
      float lo = x[b * 32], hi = x[b * 32], amax = 0;
      for (size_t i = 0; i < 32; ++i) {
        lo = std::min(lo, x[b * 32 + i]);
        hi = std::max(hi, x[b * 32 + i]);
        amax = std::max(amax, std::fabs(x[b * 32 + i]));
      }
      // step: q8 amax/127, q4 amax/8, q4m (hi-lo)/15; plus fp16 rounding of the scale/min.
      const float step = t == WeightType::kQ8 ? amax / 127 : t == WeightType::kQ4 ? amax / 8
                         : t == WeightType::kQ4M ? (hi - lo) / 15 : 0.0f;
      for (size_t i = 0; i < 32; ++i) {
        const float v = x[b * 32 + i];
        CAPTURE(to_string(t), b, i, v, y[b * 32 + i]);
        REQUIRE(std::isfinite(y[b * 32 + i]));
        REQUIRE(std::fabs(y[b * 32 + i] - v) <= 0.5f * step + 2e-3f * (std::fabs(v) + std::fabs(lo)) + 1e-6f);
      }
    }
  }
}

TEST_CASE("activation quantizers are bit-identical to the reference", "[kernels][quant]") {
  const uint32_t seed = 99;
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const size_t k = 32 * 40;
  std::vector<float> x(k);
  for (size_t i = 0; i < k; ++i) x[i] = dist(rng) * (i < 320 ? 1.0f : i < 640 ? 1e4f : 1e-3f);
  std::fill(x.begin() + 32, x.begin() + 64, 0.0f);                       // zero block
  for (size_t i = 64; i < 96; ++i) x[i] = (i % 2 ? 1.0f : -1.0f) * 3e30f;  // huge
  for (size_t i = 96; i < 128; ++i) x[i] = float(int(i) - 112) + 0.5f;     // ties after scaling
  std::vector<BlockQ8A> ref(k / 32), got(k / 32);
  quant_q8a_f32_ref(x.data(), ref.data(), k);
  for (size_t b = 0; b < k / 32; ++b) {  // the reference itself: bounds and the exact sum
    int32_t s = 0;
    for (size_t i = 0; i < 32; ++i) {
      s += ref[b].qs[i];
      REQUIRE(ref[b].qs[i] >= -127);
      REQUIRE(std::fabs(double(ref[b].d) * ref[b].qs[i] - double(x[b * 32 + i])) <= 0.5001 * double(ref[b].d));
    }
    REQUIRE(s == ref[b].s);
  }
  size_t n = 0;
  const QuantActKernel* ks = quant_act_kernels(&n);
  for (size_t v = 0; v < n; ++v) {
    if (!piquant::kernels::cpu_info().has(ks[v].needs)) {
      WARN("skipped " << ks[v].name << ": CPU lacks it");
      continue;
    }
    std::memset(got.data(), 0xAB, got.size() * sizeof(BlockQ8A));
    ks[v].run(x.data(), got.data(), k);
    for (size_t b = 0; b < k / 32; ++b) {
      CAPTURE(ks[v].name, seed, b);
      REQUIRE(std::memcmp(&got[b], &ref[b], sizeof(BlockQ8A)) == 0);
    }
  }
}

TEST_CASE("pack then unpack gives back the rows, padding is zero", "[kernels][quant]") {
  std::mt19937 rng(5);
  for (WeightType t : {WeightType::kQ8, WeightType::kQ4, WeightType::kQ4M, WeightType::kF16, WeightType::kF32}) {
    for (size_t m : {1, 3, 4, 5, 7, 17}) {
      for (size_t k : {32, 96}) {
        CAPTURE(to_string(t), m, k);
        std::vector<uint8_t> rows(m * row_bytes(t, k)), back(rows.size());
        for (uint8_t& b : rows) b = static_cast<uint8_t>(rng());
        const size_t ps = packed_size(t, m, k);
        const size_t il = row_interleave(t);
        REQUIRE(ps == (m + il - 1) / il * il * row_bytes(t, k));
        std::vector<uint8_t> packed(ps, 0xEE);
        pack(t, rows.data(), m, k, packed.data());
        unpack(t, packed.data(), m, k, back.data());
        REQUIRE(back == rows);
        if (is_quantized(t) && m % 4 != 0) {  // the padding rows unpack to all-zero blocks
          std::vector<uint8_t> padded(packed_size(t, m, k) / row_bytes(t, k) * row_bytes(t, k));
          unpack(t, packed.data(), (m + 3) / 4 * 4, k, padded.data());
          for (size_t i = m * row_bytes(t, k); i < padded.size(); ++i) REQUIRE(padded[i] == 0);
        }
      }
    }
  }
  // The q4 layout itself: group block = d0..d3 then the four rows' 16 quant bytes.
  BlockQ4 rows[4];
  for (int r = 0; r < 4; ++r) {
    rows[r].d = static_cast<uint16_t>(0x3C00 + r);
    for (int j = 0; j < 16; ++j) rows[r].qs[j] = static_cast<uint8_t>(16 * r + j);
  }
  uint8_t p[72];
  pack(WeightType::kQ4, rows, 4, 32, p);
  for (int r = 0; r < 4; ++r) {
    CHECK(p[2 * r] == uint8_t(r));
    CHECK(p[2 * r + 1] == 0x3C);
    for (int j = 0; j < 16; ++j) CHECK(p[8 + 16 * r + j] == 16 * r + j);
  }
}

TEST_CASE("AlignedBytes is zeroed, 64-byte aligned, movable and resizable", "[kernels][common]") {
  AlignedBytes empty;
  CHECK(empty.empty());
  CHECK(empty.data() == nullptr);
  for (size_t n : {size_t{1}, size_t{63}, size_t{64}, size_t{72 * 5 + 3}, size_t{1} << 20}) {
    AlignedBytes b(n);
    CAPTURE(n);
    REQUIRE(b.size() == n);
    CHECK(reinterpret_cast<uintptr_t>(b.data()) % 64 == 0);
    bool zero = true;
    for (size_t i = 0; i < n; ++i) zero = zero && b[i] == 0;
    CHECK(zero);
    b[n - 1] = 7;
    AlignedBytes moved(std::move(b));
    CHECK(moved.size() == n);
    CHECK(moved[n - 1] == 7);
    CHECK(b.data() == nullptr);  // NOLINT(bugprone-use-after-move): moved-from state is defined
    CHECK(b.size() == 0);
    b = std::move(moved);
    CHECK(b[n - 1] == 7);
    b.resize(2 * n, 128);
    CHECK(reinterpret_cast<uintptr_t>(b.data()) % 128 == 0);
    CHECK(b.size() == 2 * n);
    CHECK(b[n - 1] == 0);
  }
}
