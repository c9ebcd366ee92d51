// LoRA kernels (kernels/lora): every table the CPU has against the scalar reference, for f32 and
// f16 weights, ranks 1..64, odd K and M (vector tails), 1..9 tokens (the 4-token blocks and
// their remainders), strides wider than the rows, sub-ranges of rank rows / output columns.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "common/fp16.hpp"
#include "lora/lora.hpp"

namespace {

namespace k = piquant::kernels;

std::vector<const k::LoraKernels*> tables_on_cpu() {
  size_t n = 0;
  const k::LoraKernels* const* all = k::lora_kernel_tables(&n);
  const uint32_t det = k::cpu_info().detected;
  std::vector<const k::LoraKernels*> out;
  for (size_t i = 0; i < n; ++i) {
    if (all[i]->needs == k::CpuFeature::kNone || (det & uint32_t(all[i]->needs))) {
      out.push_back(all[i]);
    } else {
      WARN("skipped lora tables for " << all[i]->isa << ": CPU lacks it");
    }
  }
  return out;
}

// Weights as the kernel reads them (f32 values or f16 bits), and their exact f32 values.
struct Weights {
  std::vector<float> f32;
  std::vector<uint16_t> f16;
  const void* data(k::LoraWeight w) const {
    return w == k::LoraWeight::kF32 ? static_cast<const void*>(f32.data()) : f16.data();
  }
};

Weights weights(size_t n, std::mt19937& rng, k::LoraWeight w) {
  std::normal_distribution<float> nd(0.0f, 0.05f);
  Weights out;
  out.f32.resize(n);
  out.f16.resize(n);
  for (size_t i = 0; i < n; ++i) {
    float v = nd(rng);
    if (i % 97 == 5) v = 0.0f;
    if (i % 89 == 7) v = 3.5f;  // a large entry
    out.f16[i] = k::fp16_from_f32(v);
    out.f32[i] = w == k::LoraWeight::kF16 ? k::fp16_to_f32(out.f16[i]) : v;
  }
  return out;
}

std::vector<float> acts(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

// Float sums of `len` products, in any order, differ from the double reference by at most
// len * u * sum|terms| (u = 2^-24 per rounding); 2x margin plus an absolute floor.
float tol(size_t len, double abs_sum) {
  return static_cast<float>(1e-6 + 2.0 * double(len + 2) * 0x1p-24 * abs_sum);
}

}  // namespace

TEST_CASE("lora down kernels match the reference for odd shapes and ranks 1 to 64",
          "[kernels][lora]") {
  const auto tables = tables_on_cpu();
  const size_t ranks[] = {1, 2, 3, 7, 8, 16, 17, 33, 64};
  const size_t ks[] = {1, 3, 8, 15, 16, 17, 31, 32, 33, 65, 130, 288};
  const uint32_t seed = 1234;
  std::mt19937 rng(seed);
  for (const k::LoraKernels* tab : tables) {
    for (k::LoraWeight w : {k::LoraWeight::kF32, k::LoraWeight::kF16}) {
      for (size_t r : ranks) {
        for (size_t kk : ks) {
          const size_t n = 1 + (r * 7 + kk) % 9;  // 1..9 tokens
          const size_t xs = kk + (kk % 3);        // stride > k sometimes
          const Weights A = weights(r * kk, rng, w);
          const std::vector<float> x = acts(n * xs, rng);
          const size_t j0 = r > 2 ? 1 : 0, j1 = r > 3 ? r - 1 : r;
          const size_t ts = r + 2;
          std::vector<float> got(n * ts, -7.0f), want(n * ts, -7.0f);
          k::LoraDownArgs a{n, kk, x.data(), xs, A.data(w), got.data(), ts, j0, j1};
          tab->down[size_t(w)](a);
          a.t = want.data();
          k::kLoraRef.down[size_t(w)](a);
          for (size_t t = 0; t < n; ++t) {
            for (size_t j = 0; j < ts; ++j) {
              double abs_sum = 0;
              if (j >= j0 && j < j1) {
                for (size_t c = 0; c < kk; ++c) abs_sum += std::fabs(double(A.f32[j * kk + c]) * double(x[t * xs + c]));
              }
              const float g = got[t * ts + j], e = want[t * ts + j];
              if (!(std::fabs(g - e) <= tol(kk, abs_sum))) {
                FAIL("lora_down_f32_" << k::to_string(w) << "_" << tab->isa << " seed " << seed
                                      << " r " << r << " k " << kk << " n " << n << ": t[" << t
                                      << "][" << j << "] = " << g << ", ref " << e);
              }
            }
          }
        }
      }
    }
  }
  SUCCEED("all tables agree");
}

TEST_CASE("lora up kernels match the reference for odd widths, ranks and token counts",
          "[kernels][lora]") {
  const auto tables = tables_on_cpu();
  const size_t ranks[] = {1, 2, 5, 8, 16, 31, 64};
  const size_t ms[] = {1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 65, 100, 256};
  const uint32_t seed = 4321;
  std::mt19937 rng(seed);
  for (const k::LoraKernels* tab : tables) {
    for (k::LoraWeight w : {k::LoraWeight::kF32, k::LoraWeight::kF16}) {
      for (size_t r : ranks) {
        for (size_t m : ms) {
          const size_t n = 1 + (r + m * 3) % 9;
          const Weights B = weights(r * m, rng, w);
          const size_t ts = r + 1, ys = m + 3;
          const std::vector<float> t = acts(n * ts, rng);
          const std::vector<float> y0 = acts(n * ys, rng);
          const size_t i0 = m > 4 ? 3 : 0, i1 = m > 6 ? m - 2 : m;
          const float scale = 0.75f;
          std::vector<float> got = y0, want = y0;
          k::LoraUpArgs a{n, r, m, t.data(), ts, B.data(w), scale, got.data(), ys, i0, i1};
          tab->up[size_t(w)](a);
          a.y = want.data();
          k::kLoraRef.up[size_t(w)](a);
          for (size_t q = 0; q < n; ++q) {
            for (size_t i = 0; i < ys; ++i) {
              double abs_sum = std::fabs(double(y0[q * ys + i]));
              if (i >= i0 && i < i1) {
                for (size_t j = 0; j < r; ++j) {
                  abs_sum += std::fabs(double(scale) * double(t[q * ts + j]) * double(B.f32[j * m + i]));
                }
              }
              const float g = got[q * ys + i], e = want[q * ys + i];
              const bool in_range = i >= i0 && i < i1;
              if (!in_range && g != y0[q * ys + i]) {
                FAIL("lora_up " << tab->isa << " wrote outside [i0, i1) at " << i);
              }
              if (!(std::fabs(g - e) <= tol(r + 1, abs_sum))) {
                FAIL("lora_up_f32_" << k::to_string(w) << "_" << tab->isa << " seed " << seed
                                    << " r " << r << " m " << m << " n " << n << ": y[" << q
                                    << "][" << i << "] = " << g << ", ref " << e);
              }
            }
          }
        }
      }
    }
  }
  SUCCEED("all tables agree");
}

TEST_CASE("lora reference computes y plus scale times B A x exactly on small integers",
          "[kernels][lora]") {
  // A = [[1, 2, 3]], B^T = [[1, -1]] (B = [[1], [-1]]), x = [1, 1, 1]: A x = 6, y += 0.5 * 6 * B.
  const float A[] = {1, 2, 3}, Bt[] = {1, -1}, x[] = {1, 1, 1};
  for (const k::LoraKernels* tab : tables_on_cpu()) {
    float t[1] = {0}, y[2] = {10, 20};
    tab->down[0](k::LoraDownArgs{1, 3, x, 3, A, t, 1, 0, 1});
    CHECK(t[0] == 6.0f);
    tab->up[0](k::LoraUpArgs{1, 1, 2, t, 1, Bt, 0.5f, y, 2, 0, 2});
    CHECK(y[0] == 13.0f);
    CHECK(y[1] == 17.0f);
  }
  CHECK(std::string(k::lora_kernels().isa).size() > 0);
}
