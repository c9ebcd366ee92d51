// The GGUF-only weight types (q4_k, q5_k, q6_k super-blocks of 256; q5_0, q5_1 blocks of 32):
// dequantization on hand-made blocks, pack/unpack, and every registered matmul kernel of each
// type against an independent double reference built from the dequantized rows (random GGUF
// block bytes with finite scales, extreme quants and scales, exact-integer data; odd M, tails,
// several super-blocks). A new SIMD kernel is tested here as soon as it has a registry line.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/fp16.hpp"
#include "common/pack.hpp"
#include "matmul_test_util.hpp"

using namespace piquant::kernels;
using piquant::test::Fill;
using piquant::test::Problem;

namespace {

constexpr WeightType kGgufTypes[] = {WeightType::kQ4K, WeightType::kQ5K, WeightType::kQ6K, WeightType::kQ5_0,
                                     WeightType::kQ5_1};

const char* fill_name(Fill f) { return f == Fill::kRandom ? "random" : f == Fill::kExtreme ? "extreme" : "exact"; }

// As test_matmul.cpp's tolerance: every 32-value block term is an exact integer sum (or one
// int -> float conversion) times float scales, summed in float over K/32 terms; the reference's
// dequantized weights round once each (<= 2^-24 of their terms, inside abs_sum).
double tolerance(size_t k, double abs_sum) {
  return 2.0 * (double(k / 32) + 8.0) * std::ldexp(1.0, -24) * abs_sum + 1e-30;
}

struct Shape {
  size_t m, n, k;
};
// M odd or not a multiple of 4 (padding rows of the last group), N from 1 (GEMV) to beyond the
// GEMM tiles, K from one super-block to 16 (and 32-value tails for q5_0 / q5_1).
const Shape kKShapes[] = {{1, 1, 256},  {3, 1, 512},  {5, 2, 768},  {7, 3, 256},   {9, 1, 2048},
                          {13, 5, 256}, {17, 9, 512}, {6, 17, 256}, {31, 1, 4096}, {2, 4, 1280},
                          {33, 2, 256}, {4, 8, 768},  {3, 2, 8448},   // 33: the NEON kernels' passes
                          {67, 9, 2304}};  // neondot 4x8 tiles: 2 row panels, a 64-block chunk + 8
const Shape kBlockShapes[] = {{1, 1, 32}, {3, 1, 96},  {7, 2, 288},  {17, 3, 2080}, {5, 17, 32},
                              {9, 9, 288}, {31, 7, 160}, {2, 4, 5632}, {13, 1, 256}};

}  // namespace

TEST_CASE("GGUF-only types dequantize as llama.cpp does (hand-made blocks)", "[kernels][quant][kquant]") {
  SECTION("q5_0: 5-bit values with the fifth bits in qh, minus 16") {
    BlockQ5_0 b{};
    b.d = 0x4000;  // 2
    const uint32_t qh = 0x80010001;  // bits 0, 16 (value 16), 31 (value 31)
    std::memcpy(b.qh, &qh, 4);
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | (15 - j) << 4);
    float y[32];
    dequantize_row_q5_0(&b, y, 32);
    for (int j = 0; j < 16; ++j) {
      CAPTURE(j);
      CHECK(y[j] == 2.0f * float((j | (j == 0 ? 16 : 0)) - 16));
      CHECK(y[j + 16] == 2.0f * float(((15 - j) | (j == 0 || j == 15 ? 16 : 0)) - 16));
    }
  }
  SECTION("q5_1: unsigned 5-bit values times d plus m") {
    BlockQ5_1 b{};
    b.d = 0x3800;  // 0.5
    b.m = 0xBC00;  // -1
    const uint32_t qh = 0xFFFF0000;  // the second half has the fifth bit
    std::memcpy(b.qh, &qh, 4);
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | j << 4);
    float y[32];
    dequantize_row_q5_1(&b, y, 32);
    for (int j = 0; j < 16; ++j) {
      CAPTURE(j);
      CHECK(y[j] == 0.5f * float(j) - 1.0f);
      CHECK(y[j + 16] == 0.5f * float(j + 16) - 1.0f);
    }
  }
  SECTION("q4_k / q5_k: 6-bit scales and minimums per 32 values") {
    BlockQ5K b{};
    b.d = 0x3C00;      // 1
    b.dmin = 0x3800;   // 0.5
    // sub-block j: scale j + 1 ... packed by hand: j < 4 low 6 bits of scales[j] / [j + 4];
    // j >= 4: low nibble of scales[j + 4] + top bits of scales[j - 4], minimum: high nibble of
    // scales[j + 4] + top bits of scales[j]. Scale of sub-block 7 = 49 = 0b110001, minimum 35.
    const uint8_t sc[8] = {1, 2, 3, 4, 5, 6, 7, 49}, mn[8] = {8, 9, 10, 11, 12, 13, 14, 35};
    for (int j = 0; j < 4; ++j) {
      b.scales[j] = static_cast<uint8_t>(sc[j] | (sc[j + 4] >> 4) << 6);
      b.scales[j + 4] = static_cast<uint8_t>(mn[j] | (mn[j + 4] >> 4) << 6);
      b.scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
    }
    for (size_t j = 0; j < 8; ++j) {
      uint8_t s, m;
      kquant_scale_min(j, b.scales, &s, &m);
      CHECK(s == sc[j]);
      CHECK(m == mn[j]);
    }
    for (int l = 0; l < 128; ++l) b.qs[l] = static_cast<uint8_t>((l % 16) | (15 - l % 16) << 4);
    b.qh[5] = 0x81;  // value 5 (bit 0) and value 224 + 5 (bit 7) get +16
    float y5[256], y4[256];
    dequantize_row_q5k(&b, y5, 256);
    BlockQ4K b4{};
    b4.d = b.d;
    b4.dmin = b.dmin;
    std::memcpy(b4.scales, b.scales, 12);
    std::memcpy(b4.qs, b.qs, 128);
    dequantize_row_q4k(&b4, y4, 256);
    for (int v = 0; v < 256; ++v) {
      const int sub = v / 32, l = v % 32, chunk = v / 64;
      const uint8_t byte = b.qs[chunk * 32 + l];
      const int q = sub % 2 == 0 ? byte & 15 : byte >> 4;
      const int q5 = q + ((v == 5 || v == 229) ? 16 : 0);
      CAPTURE(v);
      CHECK(y4[v] == float(sc[sub]) * float(q) - 0.5f * float(mn[sub]));
      CHECK(y5[v] == float(sc[sub]) * float(q5) - 0.5f * float(mn[sub]));
    }
  }
  SECTION("q6_k: 16 int8 scales, 6-bit values minus 32, d last") {
    BlockQ6K b{};
    b.d = 0x3400;  // 0.25
    for (int i = 0; i < 16; ++i) b.scales[i] = static_cast<int8_t>(i % 2 ? -(i + 1) : i + 1);
    for (int i = 0; i < 128; ++i) b.ql[i] = static_cast<uint8_t>(i * 7);
    for (int i = 0; i < 64; ++i) b.qh[i] = static_cast<uint8_t>(i * 13 + 5);
    float y[256];
    dequantize_row_q6k(&b, y, 256);
    for (int v = 0; v < 256; ++v) {
      const int h = v / 128, w = v % 128, l = w % 32, quarter = w / 32;
      const uint8_t lo = b.ql[64 * h + l + (quarter % 2) * 32];
      const int q = ((quarter < 2 ? lo & 15 : lo >> 4) | ((b.qh[32 * h + l] >> (2 * quarter)) & 3) << 4) - 32;
      CAPTURE(v);
      CHECK(y[v] == 0.25f * float(b.scales[v / 16]) * float(q));
    }
  }
}

TEST_CASE("GGUF-only types: sizes, pack/unpack round trip and the packed layout", "[kernels][quant][kquant]") {
  CHECK(row_bytes(WeightType::kQ4K, 512) == 288);
  CHECK(row_bytes(WeightType::kQ5K, 256) == 176);
  CHECK(row_bytes(WeightType::kQ6K, 768) == 630);  // 210 B per 256 values
  CHECK(row_bytes(WeightType::kQ5_0, 64) == 44);
  CHECK(row_bytes(WeightType::kQ5_1, 96) == 72);
  CHECK(block_values(WeightType::kQ6K) == 256);
  CHECK(block_values(WeightType::kQ5_1) == 32);
  CHECK(std::string(to_string(WeightType::kQ4K)) == "q4_k");
  CHECK(std::string(to_string(WeightType::kQ5_0)) == "q5_0");
  std::mt19937 rng(11);
  for (WeightType t : kGgufTypes) {
    REQUIRE(is_quantized(t));
    const size_t bv = block_values(t), bb = block_bytes(t);
    for (size_t m : {1, 3, 4, 5, 7, 17}) {
      for (size_t nb : {1, 3}) {
        const size_t k = nb * bv;
        CAPTURE(to_string(t), m, k);
        std::vector<uint8_t> rows(m * row_bytes(t, k)), back(rows.size());
        for (uint8_t& b : rows) b = static_cast<uint8_t>(rng());
        const size_t ps = packed_size(t, m, k);
        REQUIRE(ps == (m + 3) / 4 * 4 * row_bytes(t, k));
        std::vector<uint8_t> packed(ps, 0xEE);
        pack(t, rows.data(), m, k, packed.data());
        unpack(t, packed.data(), m, k, back.data());
        REQUIRE(back == rows);
        // group g, block b, row r at ((g * nb + b) * 4 + r) * bb, bytes unchanged; padding 0
        for (size_t row = 0; row < (m + 3) / 4 * 4; ++row) {
          for (size_t b = 0; b < nb; ++b) {
            const uint8_t* p = packed.data() + ((row / 4 * nb + b) * 4 + row % 4) * bb;
            if (row < m) {
              REQUIRE(std::memcmp(p, rows.data() + row * row_bytes(t, k) + b * bb, bb) == 0);
            } else {
              for (size_t i = 0; i < bb; ++i) REQUIRE(p[i] == 0);
            }
          }
        }
      }
    }
  }
  CHECK(kGroupBytes<WeightType::kQ5K> == 704);
  CHECK(kGroupBytes<WeightType::kQ5_1> == 96);
}

TEST_CASE("every q4_k / q5_k / q6_k / q5_0 / q5_1 matmul variant matches the double reference",
          "[kernels][matmul][kquant]") {
  size_t n = 0;
  const GemmKernel* all = matmul_kernels(&n);
  std::map<std::string, std::set<std::string>> tested, skipped;
  uint32_t seed = 20261204;
  for (WeightType t : kGgufTypes) {
    const bool super = block_values(t) == kSuperBlock;
    for (Fill fill : {Fill::kRandom, Fill::kExtreme, Fill::kExact}) {
      const auto run_shape = [&](const Shape& s) {
        // exact mode: |sums| < 2^24 needs K <= 1024 with its small scales
        if (fill == Fill::kExact && s.k > 1024) return;
        const Problem p = piquant::test::make_problem(t, s.m, s.n, s.k, fill, ++seed);
        const auto e = piquant::test::reference(p);
        const size_t stride = p.m + 3;
        for (size_t i = 0; i < n; ++i) {
          const GemmKernel& kr = all[i];
          if (kr.weights != t) continue;
          if (!cpu_info().has(kr.needs)) {
            skipped[to_string(t)].insert(kr.name);
            continue;
          }
          if (kr.needs == CpuFeature::kNone && s.m * s.n * s.k > 1000000) continue;  // slow ref
          std::vector<float> y(p.n * stride, std::numeric_limits<float>::quiet_NaN());
          kr.run(piquant::test::args_for(p, y.data(), stride));
          for (size_t j = 0; j < p.n; ++j) {
            for (size_t r = 0; r < stride; ++r) {
              const float got = y[j * stride + r];
              if (r >= p.m) {
                if (!std::isnan(got)) FAIL(kr.name << " wrote past row " << p.m << " at (" << r << ", " << j << ")");
                continue;
              }
              const double want = e.value[j * p.m + r];
              const bool exact = fill == Fill::kExact;
              const double tol = exact ? 0.0 : tolerance(p.k, e.abs_sum[j * p.m + r]);
              if (!(std::fabs(double(got) - want) <= tol) && !(exact && got == static_cast<float>(want))) {
                FAIL(kr.name << " " << fill_name(fill) << " seed " << seed << " M=" << p.m << " N=" << p.n
                             << " K=" << p.k << ": first mismatch at row " << r << " token " << j
                             << ": got " << got << " want " << want << " (tol " << tol << ")");
              }
            }
          }
          tested[to_string(t)].insert(kr.name);
        }
      };
      if (super) {
        for (const Shape& s : kKShapes) run_shape(s);
      } else {
        for (const Shape& s : kBlockShapes) run_shape(s);
      }
    }
  }
  std::cout << "kquant matmul paths tested (cpu " << features_to_string(cpu_info().detected) << ", PIQUANT_ISA='"
            << cpu_info().isa_cap << "'):\n";
  for (WeightType t : kGgufTypes) {
    std::cout << "  " << to_string(t) << ":";
    for (const std::string& k : tested[to_string(t)]) std::cout << " " << k;
    if (!skipped[to_string(t)].empty()) {
      std::cout << " (skipped, CPU lacks them:";
      for (const std::string& k : skipped[to_string(t)]) std::cout << " " << k;
      std::cout << ")";
    }
    std::cout << "\n";
    CHECK_FALSE(tested[to_string(t)].empty());  // at least the reference
  }
  std::cout << std::flush;
}

// The NEON (A72) K-quant kernels sum a row's 16 or 32 products per lane in int16 before
// widening (q4_k 16 x 15 x 127, q5_k 16 x 16 x 127 on q - 16, q6_k 8 x 32 x 127 on q - 32: each
// <= 32767 only because |a| <= 127): every weight at its largest magnitude (bytes all 0x00 or
// all 0xFF) against activations all +127 or all -127, scales 1, so every lane meets its bound
// and a fold one level too deep would wrap. All sums are exact integers: bit-exact results.
TEST_CASE("K-quant kernels at the int16 bounds of their partial sums", "[kernels][matmul][kquant]") {
  size_t n = 0;
  const GemmKernel* all = matmul_kernels(&n);
  std::set<std::string> tested;
  for (WeightType t : {WeightType::kQ4K, WeightType::kQ5K, WeightType::kQ6K}) {
    for (uint8_t fill : {uint8_t{0x00}, uint8_t{0xFF}}) {
      for (int sign : {1, -1}) {
        Problem p = piquant::test::make_problem(t, 6, 5, 512, Fill::kExact, 7);
        const size_t bb = block_bytes(t);
        for (size_t b = 0; b < p.rows.size() / bb; ++b) {
          uint8_t* blk = p.rows.data() + b * bb;
          std::memset(blk, fill, bb);
          const uint16_t one = 0x3C00, zero = 0;
          if (t == WeightType::kQ6K) {
            std::memcpy(blk + offsetof(BlockQ6K, d), &one, 2);
            std::memset(blk + offsetof(BlockQ6K, scales), 1, 16);
          } else {  // d = 1, dmin = 0, every 6-bit scale 1 and minimum 0
            std::memcpy(blk, &one, 2);
            std::memcpy(blk + 2, &zero, 2);
            const uint8_t sc[kKScaleBytes] = {1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1};
            std::memcpy(blk + 4, sc, kKScaleBytes);
          }
        }
        pack(t, p.rows.data(), p.m, p.k, p.packed.data());
        for (BlockQ8A& a : p.act) {
          a.d = 1.0f;
          std::memset(a.qs, sign > 0 ? 127 : -127, 32);
          a.s = sign * 127 * 32;
        }
        const auto e = piquant::test::reference(p);
        for (size_t i = 0; i < n; ++i) {
          const GemmKernel& kr = all[i];
          if (kr.weights != t || !cpu_info().has(kr.needs)) continue;
          std::vector<float> y(p.n * p.m, std::numeric_limits<float>::quiet_NaN());
          kr.run(piquant::test::args_for(p, y.data(), p.m));
          for (size_t j = 0; j < y.size(); ++j) {
            CAPTURE(kr.name, int(fill), sign, j);
            REQUIRE(y[j] == static_cast<float>(e.value[j]));
          }
          tested.insert(kr.name);
        }
      }
    }
  }
  std::string names;
  for (const std::string& s : tested) names += " " + s;
  std::cout << "kquant int16-bound kernels tested:" << names << std::endl;
  CHECK(tested.size() >= 3);
}
