// Every attention variant the CPU has against the double-precision oracle
// (test_attention_oracle.hpp): head dims, GQA ratios, context lengths, KV types, strides.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "attention/attention.hpp"
#include "common/cpu.hpp"
#include "test_attention_oracle.hpp"

namespace {

using piquant::kernels::AttnArgs;
using piquant::kernels::AttnKernel;
using piquant::kernels::KvType;
using piquant::test::KvRows;

/// Variants for `kv` this CPU can run (all detected features, whatever PIQUANT_ISA says).
std::vector<const AttnKernel*> runnable(KvType kv, size_t head_dim) {
  size_t n = 0;
  const AttnKernel* all = piquant::kernels::attn_kernels(&n);
  const uint32_t det = piquant::kernels::cpu_info().detected;
  std::vector<const AttnKernel*> out;
  for (size_t i = 0; i < n; ++i) {
    const AttnKernel& k = all[i];
    const bool cpu_ok = k.needs == piquant::kernels::CpuFeature::kNone || (det & uint32_t(k.needs));
    if (k.kv == kv && cpu_ok && head_dim % k.head_dim_multiple == 0) out.push_back(&k);
  }
  return out;
}

struct Case {
  size_t hd, n_q, n_kv;
  KvType kv;
  size_t q_stride, out_stride;  // 0: dense
  float q_amp;
};

/// Runs every runnable variant on one random case and checks it against the oracle.
void check_case(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const KvRows k = piquant::test::make_kv_rows(c.kv, c.hd, c.n_kv, rng, 1.0f);
  const KvRows v = piquant::test::make_kv_rows(c.kv, c.hd, c.n_kv, rng, 1.0f);
  const size_t qs = c.q_stride ? c.q_stride : c.hd, os = c.out_stride ? c.out_stride : c.hd;
  // +1: q and out start one float past a 64-byte boundary (misaligned on purpose)
  std::vector<float> q(c.n_q * qs + 1);
  std::normal_distribution<float> nd(0.0f, c.q_amp);
  for (float& x : q) x = nd(rng);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));

  std::vector<std::vector<double>> ref(c.n_q), tol(c.n_q);
  for (size_t h = 0; h < c.n_q; ++h) {
    piquant::test::attention_oracle(q.data() + 1 + h * qs, k, v, c.n_kv, scale, ref[h], tol[h]);
  }
  const auto variants = runnable(c.kv, c.hd);
  REQUIRE(!variants.empty());
  for (const AttnKernel* kern : variants) {
    std::vector<float> out(c.n_q * os + 1, std::numeric_limits<float>::quiet_NaN());
    AttnArgs a{};
    a.q = q.data() + 1;
    a.q_stride = qs;
    a.out = out.data() + 1;
    a.out_stride = os;
    a.n_q = c.n_q;
    a.head_dim = c.hd;
    a.n_kv = c.n_kv;
    a.k = k.data();
    a.v = v.data();
    a.k_scale = k.scale_data();
    a.v_scale = v.scale_data();
    a.scale = scale;
    kern->run(a);
    double worst = 0.0;  // largest err / tol
    size_t bad = 0, bad_h = 0, bad_j = 0;
    for (size_t h = 0; h < c.n_q; ++h) {
      for (size_t j = 0; j < c.hd; ++j) {
        const double y = static_cast<double>(a.out[h * os + j]);
        const double r = std::fabs(y - ref[h][j]) / tol[h][j];
        if (!(r <= 1.0)) {
          if (bad++ == 0) bad_h = h, bad_j = j;
        }
        if (r > worst || std::isnan(r)) worst = std::isnan(r) ? 1e300 : r;
      }
      // columns between heads (stride padding) must stay untouched
      for (size_t j = c.hd; j < os && h + 1 < c.n_q; ++j) REQUIRE(std::isnan(a.out[h * os + j]));
    }
    CAPTURE(kern->name, seed, c.hd, c.n_q, c.n_kv, qs, os, worst);
    if (bad) {
      CAPTURE(bad, bad_h, bad_j, a.out[bad_h * os + bad_j], ref[bad_h][bad_j], tol[bad_h][bad_j]);
      FAIL("attention output outside the derived tolerance");
    }
    SUCCEED();
  }
}

}  // namespace

TEST_CASE("attention variants available on this CPU are listed", "[kernels][attention]") {
  size_t n = 0;
  const AttnKernel* all = piquant::kernels::attn_kernels(&n);
  const uint32_t det = piquant::kernels::cpu_info().detected;
  size_t ran = 0;
  for (size_t i = 0; i < n; ++i) {
    const bool ok =
        all[i].needs == piquant::kernels::CpuFeature::kNone || (det & uint32_t(all[i].needs));
    if (ok) {
      WARN("attention: testing " << all[i].name);
      ++ran;
    } else {
      WARN("attention: skipped " << all[i].name << ": CPU lacks "
                                 << piquant::kernels::features_to_string(uint32_t(all[i].needs)));
    }
  }
  REQUIRE(ran >= 3);  // at least the three refs
  // dispatch picks a SIMD variant on any SIMD CPU, the ref otherwise
  const AttnKernel* best = piquant::kernels::attn_select(KvType::kF16, 64, det);
  REQUIRE(best != nullptr);
  WARN("attention: dispatch picks " << best->name << " for f16, head_dim 64");
#if defined(__aarch64__)
  CHECK(std::string(best->name) == "attn_f32_f16_neon");
#endif
#if defined(__x86_64__)
  // a PIQUANT_ISA=avx2 cap (enabled = avx2 only) keeps AVX-512 out
  if (det & uint32_t(piquant::kernels::CpuFeature::kAvx2)) {
    CHECK(piquant::kernels::attn_select(KvType::kQ8, 128,
                                        uint32_t(piquant::kernels::CpuFeature::kAvx2))
              ->name == std::string("attn_f32_q8_avx2"));
  }
#endif
  CHECK(piquant::kernels::attn_select(KvType::kF16, 64, 0)->name ==
        std::string("attn_f32_f16_ref"));
  CHECK(piquant::kernels::attn_select(KvType::kQ8, 40, det)->name ==
        std::string("attn_f32_q8_ref"));
  CHECK(piquant::kernels::attn_select(KvType::kF16, 0, det) == nullptr);
  CHECK(piquant::kernels::attn_select(KvType::kF16, 512, det) == nullptr);
}

TEST_CASE("attention matches the double oracle over head dims, GQA ratios and context lengths",
          "[kernels][attention]") {
  const size_t hd = GENERATE(64, 128);
  const size_t group = GENERATE(1, 4, 8);
  const size_t n_kv = GENERATE(1, 7, 33, 257);
  const KvType kv = GENERATE(KvType::kF32, KvType::kF16, KvType::kQ8);
  const uint32_t seed =
      static_cast<uint32_t>(hd * 1000003u + group * 101u + n_kv * 7u) + static_cast<uint32_t>(kv);
  check_case({hd, group, n_kv, kv, 0, 0, 1.0f}, seed);
}

TEST_CASE("attention matches the oracle at context 4096", "[kernels][attention]") {
  // Few cases: they are the slow ones under qemu.
  check_case({64, 8, 4096, KvType::kF16, 0, 0, 1.0f}, 4096001u);
  check_case({128, 4, 4096, KvType::kQ8, 0, 0, 1.0f}, 4096002u);
  check_case({64, 1, 4095, KvType::kF32, 0, 0, 1.0f}, 4096003u);
}

TEST_CASE("attention handles groups above kAttnMaxGroup, strides and peaky softmax",
          "[kernels][attention]") {
  const KvType kv = GENERATE(KvType::kF32, KvType::kF16, KvType::kQ8);
  check_case({64, 12, 65, kv, 0, 0, 1.0f}, 11u);       // 12 heads: a group of 8 then 4
  check_case({128, 3, 100, kv, 200, 136, 1.0f}, 12u);  // strides > head_dim
  check_case({64, 4, 300, kv, 0, 0, 6.0f}, 13u);       // scores of tens: one key dominates
  check_case({32, 2, 31, kv, 0, 0, 1.0f}, 14u);        // head_dim 32, tile not full
  check_case({256, 2, 64, kv, 0, 0, 1.0f}, 15u);       // the largest head_dim
  check_case({96, 5, 97, kv, 0, 0, 1.0f}, 16u);        // 96: not a multiple of 64
}

TEST_CASE("attention ref takes head dims that are not multiples of 32", "[kernels][attention]") {
  const size_t hd = GENERATE(1, 8, 40, 80, 130);
  const KvType kv = GENERATE(KvType::kF32, KvType::kF16, KvType::kQ8);
  const auto variants = runnable(kv, hd);
  REQUIRE(variants.size() == 1);  // only the ref accepts these
  check_case({hd, 3, 45, kv, 0, 0, 1.0f}, static_cast<uint32_t>(hd));
}

TEST_CASE("attention reads exactly the first n_kv positions", "[kernels][attention]") {
  // The key at n_kv - 1 dominates with a distinctive value: a kernel that stops one short misses
  // it; rows beyond n_kv hold NaN: a kernel that reads one too far returns NaN.
  const KvType kv = GENERATE(KvType::kF32, KvType::kF16, KvType::kQ8);
  const size_t n_kv = GENERATE(1, 32, 33, 64, 100);
  const size_t hd = 64;
  std::mt19937 rng(static_cast<uint32_t>(n_kv));
  KvRows k = piquant::test::make_kv_rows(kv, hd, n_kv + 40, rng, 0.1f);
  KvRows v = piquant::test::make_kv_rows(kv, hd, n_kv + 40, rng, 0.1f);
  std::vector<float> q(hd, 1.0f), row(hd, 1.0f),
      nan_row(hd, std::numeric_limits<float>::quiet_NaN());
  k.set_row(n_kv - 1, row.data());  // score 64 / 8 = 8 vs ~0: weight ~ 1 - n e^-8
  std::vector<float> vrow(hd, 5.0f);
  v.set_row(n_kv - 1, vrow.data());
  for (size_t t = n_kv; t < n_kv + 40; ++t) {
    if (kv == KvType::kQ8) {
      // q8 cannot store NaN in the int8s; a NaN scale does the same job
      for (size_t b = 0; b < piquant::kernels::kv_q8_blocks(hd); ++b) {
        k.scales[t * 2 + b] = v.scales[t * 2 + b] = std::numeric_limits<float>::quiet_NaN();
      }
    } else {
      k.set_row(t, nan_row.data());
      v.set_row(t, nan_row.data());
    }
  }
  for (const AttnKernel* kern : runnable(kv, hd)) {
    std::vector<float> out(hd);
    AttnArgs a{
        q.data(),       hd,    out.data(), hd, 1, hd, n_kv, k.data(), v.data(), k.scale_data(),
        v.scale_data(), 0.125f};
    kern->run(a);
    CAPTURE(kern->name, n_kv);
    for (size_t j = 0; j < hd; ++j) {
      REQUIRE(std::isfinite(out[j]));
      REQUIRE(out[j] > 4.5f);
    }
  }
}
