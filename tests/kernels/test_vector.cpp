// The float ops: every xsimd table the CPU has against the scalar ref (odd lengths, tails,
// misaligned pointers, extreme values), the ref against double math, f16 conversions bit-exact,
// RoPE pairs vs halves under the HF -> GGUF permutation, Llama 3 frequency scaling.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "attention/kv_format.hpp"
#include "ref_forward.hpp"
#include "vector/vector.hpp"

namespace {

using piquant::kernels::VectorKernels;

constexpr float kU = 0x1p-24f;  // float unit roundoff

std::vector<const VectorKernels*> tables_on_cpu() {
  size_t n = 0;
  const VectorKernels* const* all = piquant::kernels::vector_kernel_tables(&n);
  const uint32_t det = piquant::kernels::cpu_info().detected;
  std::vector<const VectorKernels*> out;
  for (size_t i = 0; i < n; ++i) {
    if (all[i]->needs == piquant::kernels::CpuFeature::kNone || (det & uint32_t(all[i]->needs))) {
      out.push_back(all[i]);
    }
  }
  return out;
}

const VectorKernels& ref() { return piquant::kernels::kVectorRef; }

/// Data of length n (+1 so callers can misalign by one float): normal spread with extremes
/// sprinkled in when `extreme` (huge, tiny, subnormal, zero, negative zero).
std::vector<float> data(size_t n, std::mt19937& rng, float amp, bool extreme) {
  std::normal_distribution<float> nd(0.0f, amp);
  std::vector<float> v(n + 1);
  for (float& x : v) x = nd(rng);
  if (extreme) {
    const float ex[] = {0.0f, -0.0f, 1e-40f, -1e-30f, 3e4f, -3e4f, 1e-3f, 87.0f, -87.0f};
    for (size_t i = 0; i < n; i += 5) v[i + 1] = ex[(i / 5) % 9];
  }
  return v;
}

bool close(float y, float r, float tol) {
  if (std::isnan(r)) return std::isnan(y);
  if (std::isinf(r)) return y == r;
  return std::fabs(y - r) <= tol;
}

const size_t kLengths[] = {1,  2,  3,  4,  5,  7,  8,   9,   15,   16,
                           17, 31, 32, 33, 63, 65, 127, 129, 1001, 4099};

}  // namespace

TEST_CASE("vector op tables available on this CPU are listed", "[kernels][vector]") {
  size_t n = 0;
  const VectorKernels* const* all = piquant::kernels::vector_kernel_tables(&n);
  const uint32_t det = piquant::kernels::cpu_info().detected;
  for (size_t i = 0; i < n; ++i) {
    const bool ok =
        all[i]->needs == piquant::kernels::CpuFeature::kNone || (det & uint32_t(all[i]->needs));
    if (ok) {
      WARN("vector: testing rmsnorm/rope/swiglu/softmax/add/cvt _" << all[i]->isa);
    } else {
      WARN("vector: skipped _" << all[i]->isa << ": CPU lacks "
                               << piquant::kernels::features_to_string(uint32_t(all[i]->needs)));
    }
  }
  WARN("vector: dispatch picks _" << piquant::kernels::vector_kernels().isa);
  CHECK(std::strcmp(piquant::kernels::vector_kernels(0).isa, "ref") == 0);
}

TEST_CASE("vector ref ops match double math", "[kernels][vector]") {
  std::mt19937 rng(1);
  const size_t n = 1001;
  const auto x = data(n, rng, 2.0f, false), w = data(n, rng, 1.0f, false);
  std::vector<float> y(n);
  ref().rmsnorm(y.data(), x.data(), w.data(), n, 1e-5f);
  double ss = 0;
  for (size_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
  const double r = 1.0 / std::sqrt(ss / double(n) + 1e-5);
  for (size_t i = 0; i < n; ++i) {
    const double e = double(w[i]) * double(x[i]) * r;
    REQUIRE(std::fabs(double(y[i]) - e) <= (double(n) + 8) * double(kU) * std::fabs(e) + 1e-30);
  }
  auto s = x;
  ref().softmax(s.data(), n);
  double mx = -1e300, sum = 0;
  for (size_t i = 0; i < n; ++i) mx = std::max(mx, double(x[i]));
  for (size_t i = 0; i < n; ++i) sum += std::exp(double(x[i]) - mx);
  for (size_t i = 0; i < n; ++i) {
    const double e = std::exp(double(x[i]) - mx) / sum;
    REQUIRE(std::fabs(double(s[i]) - e) <= (double(n) + 8) * double(kU) * e);
  }
  ref().swiglu(y.data(), x.data(), w.data(), n);
  for (size_t i = 0; i < n; ++i) {
    const double g = x[i], e = g / (1.0 + std::exp(-g)) * double(w[i]);
    REQUIRE(std::fabs(double(y[i]) - e) <= 8 * double(kU) * std::fabs(e) + 1e-30);
  }
}

TEST_CASE("vector xsimd ops match the scalar ref on odd lengths, tails and extremes",
          "[kernels][vector]") {
  const bool extreme = GENERATE(false, true);
  for (const VectorKernels* t : tables_on_cpu()) {
    for (const size_t n : kLengths) {
      std::mt19937 rng(static_cast<uint32_t>(n * 2 + (extreme ? 1 : 0)));
      CAPTURE(t->isa, n, extreme);
      const auto x = data(n, rng, 3.0f, extreme), w = data(n, rng, 1.0f, extreme);
      std::vector<float> y(n + 1), r(n + 1);
      // misaligned by one float on purpose
      t->rmsnorm(y.data() + 1, x.data() + 1, w.data() + 1, n, 1e-6f);
      ref().rmsnorm(r.data() + 1, x.data() + 1, w.data() + 1, n, 1e-6f);
      // sums in different orders: relative n u on the mean square, so (n/2 + 4) u on outputs
      for (size_t i = 1; i <= n; ++i) {
        REQUIRE(close(y[i], r[i], (float(n) / 2 + 4) * kU * std::fabs(r[i]) + 1e-37f));
      }
      t->swiglu(y.data() + 1, x.data() + 1, w.data() + 1, n);
      ref().swiglu(r.data() + 1, x.data() + 1, w.data() + 1, n);
      // exp within a few ulp on both sides, then a division and a product
      for (size_t i = 1; i <= n; ++i)
        REQUIRE(close(y[i], r[i], 16 * kU * std::fabs(r[i]) + 1e-37f));
      auto sy = x, sr = x;
      t->softmax(sy.data() + 1, n);
      ref().softmax(sr.data() + 1, n);
      for (size_t i = 1; i <= n; ++i) {
        REQUIRE(close(sy[i], sr[i], (float(n) + 16) * kU * std::fabs(sr[i]) + 1e-37f));
      }
      auto ay = x, ar = x;
      t->add(ay.data() + 1, w.data() + 1, n);
      ref().add(ar.data() + 1, w.data() + 1, n);
      REQUIRE(std::memcmp(ay.data(), ar.data(), ay.size() * 4) == 0);  // exact
    }
  }
}

TEST_CASE("vector rope matches the ref for both layouts and the f32 forward pass's rope",
          "[kernels][vector]") {
  const size_t hd = GENERATE(2, 8, 10, 64, 80, 128);
  const size_t n_heads = 3, half = hd / 2;
  std::vector<float> freqs(half), c(half), s(half);
  piquant::kernels::rope_freqs(freqs.data(), hd, 10000.0f);
  std::mt19937 rng(static_cast<uint32_t>(hd));
  for (const size_t pos : {size_t(0), size_t(1), size_t(17), size_t(100)}) {
    piquant::kernels::rope_cos_sin(c.data(), s.data(), freqs.data(), half, pos);
    const auto x = data(n_heads * hd, rng, 1.0f, false);
    for (const bool pairs : {true, false}) {
      auto r = x;
      (pairs ? ref().rope_pairs : ref().rope_halves)(r.data() + 1, n_heads, hd, c.data(), s.data());
      // the oracle's rope (float pow / cos) agrees to ~pos * ulp of the angle
      auto o = x;
      piquant::rope(o.data() + 1, int(n_heads), int(hd), int(pos), freqs.data(),
                    pairs ? piquant::RopeLayout::kPairs : piquant::RopeLayout::kHalves);
      for (size_t i = 1; i <= n_heads * hd; ++i) REQUIRE(std::fabs(o[i] - r[i]) <= 2e-4f);
      for (const VectorKernels* t : tables_on_cpu()) {
        auto y = x;
        (pairs ? t->rope_pairs : t->rope_halves)(y.data() + 1, n_heads, hd, c.data(), s.data());
        for (size_t i = 1; i <= n_heads * hd; ++i) {
          CAPTURE(t->isa, hd, pos, pairs, i);
          // a*c - b*s with or without fma: 2 roundings of terms bounded by |a| + |b|
          const size_t p = (i - 1) % hd;
          const size_t a = pairs ? (i - 1) - (p & 1) : (i - 1) - (p >= half ? half : 0);
          const size_t b = pairs ? a + 1 : a + half;
          REQUIRE(std::fabs(y[i] - r[i]) <= 3 * kU * (std::fabs(x[a + 1]) + std::fabs(x[b + 1])));
        }
      }
    }
  }
}

TEST_CASE("rope halves on HF-layout values equals rope pairs after the HF -> GGUF permutation",
          "[kernels][vector]") {
  // Converters permute each head's q/k rows so that HF's halves layout becomes adjacent pairs:
  // pairs[2i] = halves[i], pairs[2i + 1] = halves[i + hd/2]. RoPE must commute with it.
  const size_t hd = GENERATE(64, 128), n_heads = 4, half = hd / 2;
  std::vector<float> freqs(half), c(half), s(half);
  piquant::kernels::rope_freqs(freqs.data(), hd, 500000.0f);
  piquant::kernels::rope_cos_sin(c.data(), s.data(), freqs.data(), half, 1234);
  std::mt19937 rng(3);
  const auto hf = data(n_heads * hd, rng, 1.0f, false);
  auto permute = [&](const std::vector<float>& h) {
    std::vector<float> p(h.size());
    for (size_t head = 0; head < n_heads; ++head) {
      for (size_t i = 0; i < half; ++i) {
        p[head * hd + 2 * i] = h[head * hd + i];
        p[head * hd + 2 * i + 1] = h[head * hd + i + half];
      }
    }
    return p;
  };
  for (const VectorKernels* t : tables_on_cpu()) {
    CAPTURE(t->isa, hd);
    auto h = hf;
    t->rope_halves(h.data(), n_heads, hd, c.data(), s.data());
    auto p = permute(hf);
    t->rope_pairs(p.data(), n_heads, hd, c.data(), s.data());
    const auto hp = permute(h);
    for (size_t i = 0; i < hp.size(); ++i) REQUIRE(std::fabs(hp[i] - p[i]) <= 1e-6f);
    if (t == &ref()) REQUIRE(std::memcmp(hp.data(), p.data(), p.size() * 4) == 0);  // same ops
  }
}

TEST_CASE("llama3 rope scaling keeps short wavelengths, divides long ones, blends between",
          "[kernels][vector]") {
  const piquant::kernels::RopeLlama3Scaling sc{32.0f, 1.0f, 4.0f, 8192.0f};  // Llama 3.2
  const double two_pi = 6.283185307179586;
  // wavelengths 100 (< 8192/4: kept), 4096 (between: smooth = (2 - 1)/3), 1e5 (> 8192: / 32)
  std::vector<float> f = {float(two_pi / 100), float(two_pi / 4096), float(two_pi / 1e5)};
  const std::vector<float> f0 = f;
  piquant::kernels::rope_scale_llama3(f.data(), f.size(), sc);
  CHECK(f[0] == f0[0]);
  // (1 - 1/3) f / 32 + (1/3) f
  CHECK(double(f[1]) == Approx(double(f0[1]) * (2.0 / 3.0 / 32.0 + 1.0 / 3.0)).epsilon(1e-6));
  CHECK(double(f[2]) == Approx(double(f0[2]) / 32.0).epsilon(1e-6));
  // on real frequencies: non-increasing, and never above the unscaled value
  std::vector<float> fr(32), fs(32);
  piquant::kernels::rope_freqs(fr.data(), 64, 500000.0f);
  fs = fr;
  piquant::kernels::rope_scale_llama3(fs.data(), 32, sc);
  for (size_t i = 0; i < 32; ++i) {
    CHECK(fs[i] <= fr[i]);
    CHECK(fs[i] >= fr[i] / 32.0f * 0.999999f);
    if (i) CHECK(fs[i] <= fs[i - 1]);
  }
  CHECK(fs[0] == fr[0]);
  CHECK(double(fs[31]) == Approx(double(fr[31]) / 32.0).epsilon(1e-6));
}

TEST_CASE("f16 conversions are exact and agree with the hardware's", "[kernels][vector]") {
  using piquant::kernels::f16_to_f32_scalar;
  using piquant::kernels::f32_to_f16_scalar;
  // every half: the value by formula, and the round trip
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint32_t e = (h >> 10) & 31, m = h & 1023;
    const float f = f16_to_f32_scalar(uint16_t(h));
    if (e == 31) {
      REQUIRE((m ? std::isnan(f) : std::isinf(f)));
      continue;
    }
    const double mag = e ? std::ldexp(1024.0 + m, int(e) - 25) : std::ldexp(double(m), -24);
    REQUIRE(double(f) == ((h & 0x8000) ? -mag : mag));
    REQUIRE(f32_to_f16_scalar(f) == h);
  }
  // rounding: ties to even, overflow, underflow
  CHECK(f32_to_f16_scalar(1.0f + 0x1p-11f) == 0x3c00);             // tie -> even (down)
  CHECK(f32_to_f16_scalar(1.0f + 3 * 0x1p-11f) == 0x3c02);         // tie -> even (up)
  CHECK(f32_to_f16_scalar(1.0f + 0x1p-11f + 0x1p-20f) == 0x3c01);  // above the tie
  CHECK(f32_to_f16_scalar(65504.0f) == 0x7bff);
  CHECK(f32_to_f16_scalar(65519.0f) == 0x7bff);
  CHECK(f32_to_f16_scalar(65520.0f) == 0x7c00);
  CHECK(f32_to_f16_scalar(-1e10f) == 0xfc00);
  CHECK(f32_to_f16_scalar(0x1p-25f) == 0x0000);  // tie with 0 -> 0
  CHECK(f32_to_f16_scalar(0x1p-25f * 1.5f) == 0x0001);
  CHECK(f32_to_f16_scalar(0x1p-24f * 1.5f) == 0x0002);  // tie -> even
  CHECK(f32_to_f16_scalar(-0.0f) == 0x8000);
  CHECK(std::isnan(f16_to_f32_scalar(f32_to_f16_scalar(std::numeric_limits<float>::quiet_NaN()))));
  // every table's row conversion is bit-identical to the scalar one (NaN: any NaN)
  std::mt19937 rng(5);
  std::uniform_int_distribution<uint32_t> bits;
  const size_t n = 4099;
  std::vector<float> src(n + 1);
  for (size_t i = 0; i < src.size(); ++i) {
    // random bit patterns concentrated on the half range (exponents 100..150), plus anything
    const uint32_t b = bits(rng);
    const uint32_t u = (i % 3) ? ((b & 0x807fffffu) | ((100u + b % 51u) << 23)) : b;
    std::memcpy(&src[i], &u, 4);
  }
  std::vector<uint16_t> h(n + 1), hr(n + 1);
  std::vector<float> back(n + 1), backr(n + 1);
  ref().f32_to_f16(hr.data() + 1, src.data() + 1, n);
  ref().f16_to_f32(backr.data() + 1, hr.data() + 1, n);
  for (const VectorKernels* t : tables_on_cpu()) {
    for (const size_t len : kLengths) {
      std::fill(h.begin(), h.end(), 0);
      t->f32_to_f16(h.data() + 1, src.data() + 1, len);
      t->f16_to_f32(back.data() + 1, hr.data() + 1, len);
      for (size_t i = 1; i <= len; ++i) {
        CAPTURE(t->isa, len, i, src[i], h[i], hr[i]);
        const bool nan = std::isnan(src[i]);
        REQUIRE((nan ? (h[i] & 0x7fff) > 0x7c00 : h[i] == hr[i]));
        REQUIRE((nan ? std::isnan(back[i]) : std::memcmp(&back[i], &backr[i], 4) == 0));
      }
    }
  }
}
