// Every matmul variant the CPU has against an independent double-precision reference: random
// data, extremes, exact-integer data (bit-exact), sub-ranges, row/token splits, GEMV == GEMM.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <set>
#include <string>

#include <piquant/error.hpp>

#include "matmul_test_util.hpp"
#include "model/linear.hpp"

using namespace piquant::kernels;
using piquant::test::Fill;
using piquant::test::Problem;

namespace {

std::vector<const GemmKernel*> available(std::vector<std::string>* skipped = nullptr) {
  size_t n = 0;
  const GemmKernel* ks = matmul_kernels(&n);
  std::vector<const GemmKernel*> out;
  for (size_t i = 0; i < n; ++i) {
    if (cpu_info().has(ks[i].needs)) out.push_back(&ks[i]);
    else if (skipped) skipped->push_back(ks[i].name);
  }
  return out;
}

struct Shape {
  size_t m, n, k;
};
// Sampled from M in {1, 2, 3, 4, 5, 7, 8, 10, 16, 17, 31, 33, 65}, N in 1..17, 64, 128, K from 32 to 8192
// including non-multiples of 256 (96, 160, 288, 2080) and one above 8192 (8224: the neondot
// GEMV's second pass of per-token block records).
const Shape kShapes[] = {{1, 1, 32},   {3, 1, 96},   {7, 2, 288},   {17, 3, 2080}, {5, 17, 32},
                         {33, 1, 8192}, {4, 8, 256},  {9, 9, 288},   {17, 16, 96},  {13, 64, 64},
                         {6, 128, 32},  {65, 5, 1024}, {2, 12, 4096}, {31, 7, 160},  {1, 11, 64},
                         {8, 15, 2080}, {3, 6, 8192}, {10, 128, 288}, {7, 64, 1056},
                         {16, 10, 32},  {2, 4, 5632},  {6, 2, 8224}};

const char* fill_name(Fill f) { return f == Fill::kRandom ? "random" : f == Fill::kExtreme ? "extreme" : "exact"; }

// The tolerance for float outputs: each block term is one int32 -> float conversion (exact,
// |partial sums| < 2^24) times a float scale product (2 roundings), summed in float in a few
// chains of <= K/32 terms: |err| <= (K/32 + 2 + log2(lanes)) * 2^-24 * sum|terms|, doubled
// for margin. For f32/f16 weights every one of the K products rounds: K instead of K/32.
double tolerance(const Problem& p, double abs_sum) {
  const double terms = is_quantized(p.type) ? double(p.k / 32) : double(p.k);
  return 2.0 * (terms + 8.0) * std::ldexp(1.0, -24) * abs_sum + 1e-30;
}

void check_kernel(const GemmKernel& kr, const Problem& p, const piquant::test::Expected& e,
                  Fill fill, uint32_t seed) {
  const size_t stride = p.m + 3;
  std::vector<float> y(p.n * stride, std::numeric_limits<float>::quiet_NaN());
  kr.run(piquant::test::args_for(p, y.data(), stride));
  const bool exact = fill == Fill::kExact;
  for (size_t j = 0; j < p.n; ++j) {
    for (size_t i = 0; i < stride; ++i) {
      const float got = y[j * stride + i];
      if (i >= p.m) {
        if (!std::isnan(got)) FAIL(kr.name << " wrote past row " << p.m << " at (" << i << ", " << j << ")");
        continue;
      }
      const double want = e.value[j * p.m + i];
      const double tol = exact ? 0.0 : tolerance(p, e.abs_sum[j * p.m + i]);
      if (!(std::fabs(double(got) - want) <= tol) && !(exact && got == static_cast<float>(want))) {
        FAIL(kr.name << " " << fill_name(fill) << " seed " << seed << " M=" << p.m << " N=" << p.n
                     << " K=" << p.k << ": first mismatch at row " << i << " token " << j
                     << ": got " << got << " want " << want << " (tol " << tol << ")");
      }
    }
  }
}

// The GEMV of g's ISA and weight type (nullptr if none).
const GemmKernel* same_isa_gemv(const std::vector<const GemmKernel*>& ks, const GemmKernel& g) {
  for (const GemmKernel* v : ks) {
    if (v->op == MatmulOp::kGemv && v->weights == g.weights && v->needs == g.needs) return v;
  }
  return nullptr;
}

// One problem run three ways, outputs NaN-filled first: g over everything (whole), g over rows
// [m0, m1) and tokens [n0, n) (sub), and v one token at a time (gemv).
struct SplitRuns {
  std::vector<float> whole, sub, gemv;
};
SplitRuns run_split(const GemmKernel& g, const GemmKernel& v, const Problem& p, size_t m0, size_t m1,
                    size_t n0) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  SplitRuns r{std::vector<float>(p.n * p.m, nan), std::vector<float>(p.n * p.m, nan),
              std::vector<float>(p.n * p.m, nan)};
  g.run(piquant::test::args_for(p, r.whole.data(), p.m));
  GemmArgs a = piquant::test::args_for(p, r.sub.data(), p.m);
  a.m0 = m0;
  a.m1 = m1;
  a.n0 = n0;
  g.run(a);
  for (size_t j = 0; j < p.n; ++j) {
    GemmArgs a1 = piquant::test::args_for(p, r.gemv.data(), p.m);
    a1.n0 = j;
    a1.n1 = j + 1;
    v.run(a1);
  }
  return r;
}

}  // namespace

// Prints the paths this run exercises (the CI log is grepped for "matmul paths tested:"; ctest
// -V -R matmul_paths shows it) and checks that the detected features match the emulated core
// when PIQUANT_QEMU_CPU names one: cortex-a72 must never pick a dotprod kernel (it would also
// die of SIGILL running one), cortex-a76 must pick them.
TEST_CASE("matmul kernel paths exercised", "[kernels][matmul]") {
  std::vector<std::string> skipped;
  const auto ks = available(&skipped);
  std::string ran, isas;
  std::set<std::string> seen;
  for (const GemmKernel* k : ks) {
    ran += std::string(ran.empty() ? "" : " ") + k->name;
    const std::string n = k->name, isa = n.substr(n.rfind('_') + 1);
    if (seen.insert(isa).second) isas += (isas.empty() ? "" : " ") + isa;
  }
  std::string sk;
  for (const std::string& s : skipped) sk += (sk.empty() ? "" : " ") + s;
  const char* qemu = std::getenv("PIQUANT_QEMU_CPU");
  const std::string emu = PIQUANT_TEST_EMULATOR;
  std::cout << "matmul paths tested: " << isas << " (cpu " << features_to_string(cpu_info().detected)
            << ", PIQUANT_ISA='" << cpu_info().isa_cap << "'"
            << (emu.empty() ? "" : ", qemu -cpu " + std::string(qemu ? qemu : "cortex-a76")) << ")\n"
            << "matmul kernels tested: " << ran << "\n"
            << "matmul kernels skipped (CPU lacks them): " << (sk.empty() ? "none" : sk) << "\n"
            << "matmul kernels chosen: " << matmul_kernel_names() << std::endl;
  if (!skipped.empty()) WARN("skipped (CPU lacks them): " << sk);
  CHECK(cpu_isa_error().empty());
  CHECK(ks.size() >= 10);  // at least the references
  const std::string chosen = matmul_kernel_names();
  if (cpu_info().isa_cap == "ref") {  // forcing works: only references are chosen
    for (WeightType t : {WeightType::kQ4, WeightType::kQ8, WeightType::kQ4M, WeightType::kQ4K, WeightType::kQ5K,
                         WeightType::kQ6K, WeightType::kQ5_0, WeightType::kQ5_1}) {
      for (MatmulOp op : {MatmulOp::kGemv, MatmulOp::kGemm}) {
        CHECK(matmul_kernel(op, t).needs == CpuFeature::kNone);
      }
    }
  }
#if defined(__aarch64__)
  if (!emu.empty()) {
    const std::string core = qemu ? qemu : "cortex-a76";  // scripts/qemu-aarch64.sh's default
    if (core == "cortex-a72") {
      CHECK_FALSE(cpu_info().has(CpuFeature::kNeonDot));
      CHECK(chosen.find("neondot") == std::string::npos);
      CHECK(isas.find("neondot") == std::string::npos);
    } else if (core == "cortex-a76" && cpu_info().isa_cap.empty()) {
      CHECK(cpu_info().has(CpuFeature::kNeonDot));
      CHECK(chosen.find("gemv_f32_q8_q4_neondot") != std::string::npos);
    }
  }
#endif
}

// Run by the ctests matmul_isa_unknown / matmul_isa_missing with PIQUANT_ISA set to a level
// that does not exist or that this CPU lacks: the library must refuse, not fall back.
TEST_CASE("linear refuses a PIQUANT_ISA the CPU cannot honour", "[.isa_env]") {
  const char* env = std::getenv("PIQUANT_ISA");
  if (env == nullptr) FAIL("run with PIQUANT_ISA set to an unknown or missing level");
  std::cout << "PIQUANT_ISA=" << env << ": " << cpu_isa_error() << std::endl;
  REQUIRE_FALSE(cpu_isa_error().empty());
  CHECK(cpu_isa_error().find(std::string("PIQUANT_ISA=") + env) != std::string::npos);
  const std::vector<float> w(4 * 32, 0.5f), x(32, 1.0f);
  const piquant::OwnedQuantWeight q = piquant::quantize_weight(WeightType::kQ4, w.data(), 4, 32);
  std::vector<float> y(4);
  piquant::LinearScratch scratch;
  try {
    // The check is made once, with the weight's handle (at load).
    const piquant::LinearWeight lw(q.weight);
    piquant::linear(lw, x.data(), 1, 32, y.data(), 4, nullptr, scratch);
    FAIL("linear() ran with PIQUANT_ISA=" << env);
  } catch (const piquant::Error& e) {
    CHECK(e.code() == piquant::ErrorCode::kUnsupported);
    CHECK(std::string(e.what()).find("PIQUANT_ISA") != std::string::npos);
  }
  CHECK_THROWS_AS(piquant::linear_kernel_names(), piquant::Error);
}

TEST_CASE("every matmul variant matches the double reference on random, extreme and exact data",
          "[kernels][matmul]") {
  const auto ks = available();
  uint32_t seed = 20261122;
  for (WeightType t : {WeightType::kQ4, WeightType::kQ8, WeightType::kQ4M, WeightType::kF32, WeightType::kF16}) {
    for (Fill fill : {Fill::kRandom, Fill::kExtreme, Fill::kExact}) {
      if (!is_quantized(t) && fill != Fill::kRandom) continue;
      for (const Shape& s : kShapes) {
        // Exact mode needs |sums| < 2^24: q8 extremes reach 16256 per product.
        if (fill == Fill::kExact && t == WeightType::kQ8 && s.k > 1024) continue;
        if (!is_quantized(t) && s.m * s.n * s.k > 300000) continue;  // keep the float refs fast
        const Problem p = piquant::test::make_problem(t, s.m, s.n, s.k, fill, ++seed);
        const auto e = piquant::test::reference(p);
        for (const GemmKernel* k : ks) {
          if (k->weights != t) continue;
          if (k->needs == CpuFeature::kNone && s.m * s.n * s.k > 2000000) continue;  // slow ref
          check_kernel(*k, p, e, fill, seed);
        }
      }
    }
  }
}

TEST_CASE("matmul variants give identical bits for any row and token split", "[kernels][matmul]") {
  for (const GemmKernel* k : available()) {
    const uint32_t seed = 77;
    // K = 96 (3 blocks), or 2 super-blocks for the K-quants
    const size_t kk = block_values(k->weights) == kSuperBlock ? 512 : 96;
    const Problem p = piquant::test::make_problem(k->weights, 17, 6, kk, Fill::kRandom, seed);
    const size_t stride = 21;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> whole(p.n * stride, nan), parts(p.n * stride, nan), sub(p.n * stride, nan);
    k->run(piquant::test::args_for(p, whole.data(), stride));
    const size_t il = row_interleave(k->weights);
    const size_t cuts[] = {0, il, 3 * il, 17};
    for (size_t c = 0; c + 1 < 4; ++c) {
      for (size_t n0 : {0, 2}) {
        GemmArgs a = piquant::test::args_for(p, parts.data(), stride);
        a.m0 = cuts[c];
        a.m1 = cuts[c + 1];
        a.n0 = n0;
        a.n1 = n0 == 0 ? 2 : 6;
        k->run(a);
      }
    }
    GemmArgs a = piquant::test::args_for(p, sub.data(), stride);
    a.m0 = il;
    a.m1 = il + 5;
    a.n0 = 1;
    a.n1 = 4;
    k->run(a);
    for (size_t j = 0; j < p.n; ++j) {
      for (size_t i = 0; i < stride; ++i) {
        CAPTURE(k->name, i, j, seed);
        const float w = whole[j * stride + i], q = parts[j * stride + i], s = sub[j * stride + i];
        REQUIRE(std::memcmp(&w, &q, 4) == 0);
        const bool inside = i >= a.m0 && i < a.m1 && j >= a.n0 && j < a.n1;
        if (inside) REQUIRE(std::memcmp(&w, &s, 4) == 0);
        else REQUIRE(std::isnan(s));
      }
    }
  }
}

// GEMVs whose float order differs from their GEMM's (a GEMV sums a row's sub-block lanes at the
// end, the GEMM one sub-block after another): within twice the reference tolerance of each
// other instead of bit for bit. Decode (GEMV) and batched passes (GEMM) of these weight types
// then agree to rounding, not bit for bit; tests/lib/test_batch.cpp's greedy-id check runs on
// q8 / q4 weights, whose GEMV == GEMM.
const char* const kGemvOwnOrder[] = {"gemv_f32_q8_q4k_avx512vnni", "gemv_f32_q8_q5k_avx512vnni",
                                     "gemv_f32_q8_q6k_avx512vnni", "gemv_f32_q8_q6k_avx2"};

TEST_CASE("gemv and gemm of one ISA give identical bits per token", "[kernels][matmul]") {
  const auto ks = available();
  for (const GemmKernel* g : ks) {
    if (g->op != MatmulOp::kGemm) continue;
    for (const GemmKernel* v : ks) {
      if (v->op != MatmulOp::kGemv || v->weights != g->weights || v->needs != g->needs) continue;
      // K-quants: 9 super-blocks, so the GEMMs that pass sums between chunks of super-blocks
      // (avx2 4, avx512vnni 2) do so twice or more, with a partial chunk at the end
      const size_t kk = block_values(g->weights) == kSuperBlock ? 2304 : 288;
      const Problem p = piquant::test::make_problem(g->weights, 9, 13, kk, Fill::kRandom, 3);
      std::vector<float> y1(p.n * p.m), y2(p.n * p.m);
      g->run(piquant::test::args_for(p, y1.data(), p.m));
      for (size_t j = 0; j < p.n; ++j) {
        GemmArgs a = piquant::test::args_for(p, y2.data(), p.m);
        a.n0 = j;
        a.n1 = j + 1;
        v->run(a);
      }
      CAPTURE(g->name, v->name);
      bool own_order = false;
      for (const char* name : kGemvOwnOrder) own_order = own_order || std::string(v->name) == name;
      if (!own_order) {
        REQUIRE(std::memcmp(y1.data(), y2.data(), y1.size() * 4) == 0);
        continue;
      }
      const auto e = piquant::test::reference(p);
      for (size_t i = 0; i < y1.size(); ++i) {
        CAPTURE(i, y1[i], y2[i]);
        REQUIRE(std::fabs(double(y1[i]) - double(y2[i])) <= 2 * tolerance(p, e.abs_sum[i]));
      }
    }
  }
}

// A decode step of a few sequences: 2..8 tokens take the GEMM kernels' small-batch paths (the
// AVX-512 q4 multi-token GEMV: 2 and 3 tokens; the tiles' token tails elsewhere). Random
// data against the double reference, row ranges starting and ending inside the 16-row panels
// and row groups (M = 37, 29 and 6: partial panels and groups), odd K in blocks, and each token
// bit for bit the GEMV's. Every GEMM kernel of the quantized types this CPU has.
TEST_CASE("small batches (2..8 tokens) match the reference and the GEMV's bits", "[kernels][matmul]") {
  const auto ks = available();
  std::set<std::string> ran;
  uint32_t seed = 4100;
  for (const GemmKernel* g : ks) {
    if (g->op != MatmulOp::kGemm || !is_quantized(g->weights)) continue;
    const GemmKernel* gv = same_isa_gemv(ks, *g);
    REQUIRE(gv != nullptr);
    const GemmKernel& v = *gv;
    // GEMVs with their own float order (kGemvOwnOrder) agree with the GEMM within the tolerance.
    bool own_order = false;
    for (const char* name : kGemvOwnOrder) own_order = own_order || std::string(v.name) == name;
    const bool ksb = block_values(g->weights) == kSuperBlock;
    const struct { size_t m, k; } sizes[] = {{37, ksb ? 768u : 96u}, {29, ksb ? 256u : 288u}, {6, ksb ? 512u : 160u}};
    for (const auto& sz : sizes) {
      for (size_t n = 2; n <= 8; ++n) {
        const Problem p = piquant::test::make_problem(g->weights, sz.m, n, sz.k, Fill::kRandom, ++seed);
        const auto e = piquant::test::reference(p);
        check_kernel(*g, p, e, Fill::kRandom, seed);
        // A sub-range: rows [5, m - 3) (inside the first panel and group), tokens [1, n).
        const size_t m0 = 5, m1 = p.m - 3, n0 = 1;
        const SplitRuns r = run_split(*g, v, p, m0, m1, n0);
        for (size_t j = 0; j < n; ++j) {
          for (size_t i = 0; i < p.m; ++i) {
            CAPTURE(g->name, v.name, sz.m, sz.k, n, i, j, seed);
            const float w = r.whole[j * p.m + i], s = r.sub[j * p.m + i], q = r.gemv[j * p.m + i];
            if (i >= m0 && i < m1 && j >= n0) REQUIRE(std::memcmp(&w, &s, 4) == 0);
            else REQUIRE(std::isnan(s));
            if (own_order) {
              const double tol = 2 * tolerance(p, e.abs_sum[j * p.m + i]);
              REQUIRE(std::fabs(double(w) - double(q)) <= tol);
            } else {
              REQUIRE(std::memcmp(&w, &q, 4) == 0);
            }
          }
        }
      }
    }
    ran.insert(g->name);
  }
  std::string names;
  for (const std::string& r : ran) names += " " + r;
  std::cout << "small-batch matmul kernels tested:" << names << std::endl;
  CHECK(ran.size() >= 8);  // every quantized type has a GEMM (at least the references)
}

TEST_CASE("PIQUANT_ISA levels parse and refuse what the CPU lacks", "[kernels][matmul]") {
  std::string err;
  const uint32_t all = uint32_t(CpuFeature::kNeon) | uint32_t(CpuFeature::kNeonDot);
  CHECK(apply_isa_cap(all, "neon", &err) == uint32_t(CpuFeature::kNeon));
  CHECK(err.empty());
  CHECK(apply_isa_cap(all, "ref", &err) == 0);
  apply_isa_cap(uint32_t(CpuFeature::kNeon), "neondot", &err);
  CHECK(err.find("neondot") != std::string::npos);
  err.clear();
  apply_isa_cap(all, "avx9000", &err);
  CHECK(err.find("not a known level") != std::string::npos);
}

// The q4 small-batch GEMMs (a decode step of 2..8 sequences; on avx512vnni the tokens-in-lanes
// kernels: a half tile for 2 tokens, full tiles of 4, padded tiles for 3, 5 and 7; 9 tokens is
// the panel again): every fill (random, the quants' extremes, exact integers), one block and
// odd block counts, row counts that end inside a group, each token bit for bit the GEMV's, and
// a sub-range of rows and tokens bit for bit the whole call's.
TEST_CASE("q4 small batches with extremes odd sizes and sub-ranges", "[kernels][matmul]") {
  const auto ks = available();
  std::set<std::string> ran;
  uint32_t seed = 5200;
  for (const GemmKernel* g : ks) {
    if (g->op != MatmulOp::kGemm || g->weights != WeightType::kQ4) continue;
    const GemmKernel* v = same_isa_gemv(ks, *g);
    REQUIRE(v != nullptr);
    const struct { size_t m, k; } sizes[] = {{13, 32}, {7, 224}, {22, 96}};
    for (const auto& sz : sizes) {
      for (Fill fill : {Fill::kRandom, Fill::kExtreme, Fill::kExact}) {
        for (size_t n = 2; n <= 9; ++n) {
          const Problem p = piquant::test::make_problem(g->weights, sz.m, n, sz.k, fill, ++seed);
          check_kernel(*g, p, piquant::test::reference(p), fill, seed);
          const size_t m0 = 1, m1 = p.m - 1, n0 = 1;
          const SplitRuns r = run_split(*g, *v, p, m0, m1, n0);
          for (size_t j = 0; j < n; ++j) {
            for (size_t i = 0; i < p.m; ++i) {
              CAPTURE(g->name, sz.m, sz.k, fill_name(fill), n, i, j, seed);
              const float w = r.whole[j * p.m + i], s = r.sub[j * p.m + i], q = r.gemv[j * p.m + i];
              REQUIRE(std::memcmp(&w, &q, 4) == 0);
              if (i >= m0 && i < m1 && j >= n0) REQUIRE(std::memcmp(&w, &s, 4) == 0);
              else REQUIRE(std::isnan(s));
            }
          }
        }
      }
    }
    ran.insert(g->name);
  }
  std::string names;
  for (const std::string& r : ran) names += " " + r;
  std::cout << "q4 small-batch kernels tested:" << names << std::endl;
  CHECK(ran.size() >= 1);  // the reference at least
}
