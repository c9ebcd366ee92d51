// The K-quant / Q5_0 / Q5_1 quantizers (kernels/common/quant_k): bytes GGUF's dequantizer reads
// (lib/format/kquants.cpp for the K types), error bounds on random and outlier data, the search
// never worse than round-to-nearest under the weighted error, importance weights that help the
// heavy columns, and the converter's clear error for a row length that is not a multiple of 256.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/quant.hpp"
#include "common/quant_k.hpp"
#include "convert/quantize.hpp"
#include "format/kquants.hpp"
#include "piquant/error.hpp"

namespace {

using namespace piquant;
using kernels::KQuant;

constexpr KQuant kAll[] = {KQuant::kQ4K, KQuant::kQ5K, KQuant::kQ6K, KQuant::kQ5_0, KQuant::kQ5_1};

std::vector<float> random_row(std::mt19937& rng, size_t k, bool outliers, float offset = 0.0f) {
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> x(k);
  for (float& v : x) v = offset + n(rng);
  if (outliers) {
    std::uniform_int_distribution<size_t> pos(0, k - 1);
    for (int i = 0; i < int(k / 64); ++i) x[pos(rng)] *= 25.0f;
  }
  return x;
}

std::vector<float> round_trip(KQuant t, const std::vector<float>& x, const float* imp, bool search) {
  std::vector<uint8_t> q(kernels::kquant_row_bytes(t, x.size()));
  kernels::KQuantOptions o;
  o.search = search;
  o.importance = imp;
  kernels::quantize_row_kquant(t, x.data(), q.data(), x.size(), o);
  std::vector<float> y(x.size());
  kernels::dequantize_row_kquant(t, q.data(), y.data(), x.size());
  return y;
}

double werr(const std::vector<float>& x, const std::vector<float>& y, const float* w) {
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double r = double(x[i]) - double(y[i]);
    e += (w ? double(w[i]) : 1.0) * r * r;
  }
  return e;
}

double rel_rms(const std::vector<float>& x, const std::vector<float>& y) {
  double s = 0;
  for (float v : x) s += double(v) * double(v);
  return std::sqrt(werr(x, y, nullptr) / s);
}

}  // namespace

TEST_CASE("K-quant quantizers write bytes ggml's dequantization reads", "[convert][kquant]") {
  std::mt19937 rng(11);
  const size_t k = 768;
  for (KQuant t : {KQuant::kQ4K, KQuant::kQ5K, KQuant::kQ6K}) {
    for (bool search : {false, true}) {
      const auto x = random_row(rng, k, false, 0.3f);
      std::vector<uint8_t> q(kernels::kquant_row_bytes(t, k));
      kernels::KQuantOptions o;
      o.search = search;
      kernels::quantize_row_kquant(t, x.data(), q.data(), k, o);
      std::vector<float> ours(k), theirs(k);
      kernels::dequantize_row_kquant(t, q.data(), ours.data(), k);
      REQUIRE(dequantize_kquant(kernels::kquant_ggml_type(t), q.data(), theirs.data(), k));
      INFO(kernels::to_string(t) << (search ? " search" : " rtn"));
      for (size_t i = 0; i < k; ++i) {
        // Q6_K: lib/format/kquants.cpp multiplies d * (sc * q), ggml (d * sc) * q: 1 ulp apart.
        REQUIRE(ours[i] == Approx(theirs[i]).epsilon(1e-6).margin(1e-30));
      }
    }
  }
  // Bit for bit against the kernels' dequantize_rows (llama.cpp's own operations), every type,
  // and quantize_rows (round to nearest) writes the same blocks as quantize_row_kquant.
  const std::pair<KQuant, kernels::WeightType> kTypes[] = {
      {KQuant::kQ4K, kernels::WeightType::kQ4K}, {KQuant::kQ5K, kernels::WeightType::kQ5K},
      {KQuant::kQ6K, kernels::WeightType::kQ6K}, {KQuant::kQ5_0, kernels::WeightType::kQ5_0},
      {KQuant::kQ5_1, kernels::WeightType::kQ5_1}};
  for (const auto& [t, wt] : kTypes) {
    INFO(kernels::to_string(t));
    const auto x = random_row(rng, k, true, -0.2f);
    REQUIRE(kernels::row_bytes(wt, k) == kernels::kquant_row_bytes(t, k));
    std::vector<uint8_t> q(kernels::kquant_row_bytes(t, k)), r(q.size());
    kernels::quantize_row_kquant(t, x.data(), q.data(), k, {true, nullptr});
    std::vector<float> ours(k), theirs(k);
    kernels::dequantize_row_kquant(t, q.data(), ours.data(), k);
    kernels::dequantize_rows(wt, q.data(), 1, k, theirs.data());
    REQUIRE(std::memcmp(ours.data(), theirs.data(), k * sizeof(float)) == 0);
    kernels::quantize_rows(wt, x.data(), 1, k, r.data());
    kernels::quantize_row_kquant(t, x.data(), q.data(), k, {false, nullptr});
    CHECK(q == r);
  }
  // Q5_0 / Q5_1 bit layout, by hand: value j's fifth bit is qh bit j, value j + 16's bit j + 16.
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[size_t(i)] = float(i - 16);  // exactly q - 16 with d = 1
  std::vector<uint8_t> q(kernels::kQ5_0Bytes);
  kernels::quantize_row_kquant(KQuant::kQ5_0, x.data(), q.data(), 32, {false, nullptr});
  uint32_t qh;
  std::memcpy(&qh, q.data() + 2, 4);
  CHECK(qh == 0xFFFF0000u);  // values 0..15 -> q 0..15 (no fifth bit); 16..31 -> 16..31
  CHECK(q[6] == 0x00);      // q[0] = 0, q[16] = 16 (low nibble 0)
  CHECK(q[6 + 15] == 0xFF);  // q[15] = 15, q[31] = 31
  std::vector<float> y(32);
  kernels::dequantize_row_kquant(KQuant::kQ5_0, q.data(), y.data(), 32);
  CHECK(y == x);
  for (int i = 0; i < 32; ++i) x[size_t(i)] = 0.5f * float(i) - 3.0f;  // d 0.5, m -3: exact
  q.assign(kernels::kQ5_1Bytes, 0);
  kernels::quantize_row_kquant(KQuant::kQ5_1, x.data(), q.data(), 32, {false, nullptr});
  kernels::dequantize_row_kquant(KQuant::kQ5_1, q.data(), y.data(), 32);
  CHECK(y == x);
}

TEST_CASE("K-quant quantizers: error bounds, search never worse than round-to-nearest",
          "[convert][kquant]") {
  // Relative RMS error bounds for N(0,1) rows (measured: q4_k ~0.09, q5_k ~0.045, q6_k ~0.02,
  // q5_0 ~0.05, q5_1 ~0.045 with the search), with a margin.
  const double bound[] = {0.11, 0.055, 0.028, 0.065, 0.055};
  std::mt19937 rng(5);
  const size_t k = 512;
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> imp(k);
  for (size_t i = 0; i < k; ++i) imp[i] = 0.01f + u(rng) * u(rng) * 10.0f;  // skewed importance
  for (size_t ti = 0; ti < 5; ++ti) {
    const KQuant t = kAll[ti];
    INFO(kernels::to_string(t));
    double rtn_sum = 0, search_sum = 0, imp_weighted = 0, imp_unweighted = 0;
    for (int trial = 0; trial < 6; ++trial) {
      const bool outliers = trial % 2 == 1;
      const auto x = random_row(rng, k, outliers, trial >= 4 ? 1.5f : 0.0f);
      const auto rtn = round_trip(t, x, nullptr, false);
      const auto srch = round_trip(t, x, nullptr, true);
      if (!outliers) {
        CHECK(rel_rms(x, srch) < bound[ti]);
        CHECK(rel_rms(x, rtn) < bound[ti] * 1.6);
      } else {
        CHECK(rel_rms(x, srch) < 0.5);  // still bounded with 25x outliers
      }
      // Never worse, per block, under the error the search minimizes (kquant_error_weights:
      // uniform or importance-weighted, times the K types' magnitude term).
      const size_t nv = kernels::kquant_block_values(t);
      const auto wrtn = round_trip(t, x, imp.data(), false);
      const auto wsrch = round_trip(t, x, imp.data(), true);
      std::vector<float> w1(k), wi(k);
      for (size_t b = 0; b < k / nv; ++b) {
        kernels::kquant_error_weights(t, x.data() + b * nv, nullptr, w1.data() + b * nv);
        kernels::kquant_error_weights(t, x.data() + b * nv, imp.data() + b * nv, wi.data() + b * nv);
        double e_r = 0, e_s = 0, w_r = 0, w_s = 0;
        for (size_t i = b * nv; i < (b + 1) * nv; ++i) {
          const double a = double(x[i]) - double(rtn[i]), b2 = double(x[i]) - double(srch[i]);
          const double c = double(x[i]) - double(wrtn[i]), d = double(x[i]) - double(wsrch[i]);
          e_r += double(w1[i]) * a * a, e_s += double(w1[i]) * b2 * b2;
          w_r += double(wi[i]) * c * c, w_s += double(wi[i]) * d * d;
        }
        REQUIRE(e_s <= e_r);
        REQUIRE(w_s <= w_r);
      }
      rtn_sum += werr(x, wrtn, imp.data());
      search_sum += werr(x, wsrch, imp.data());
      // Importance weights pay off where they point: the weighted error of the weighted search
      // is below the unweighted search's.
      imp_weighted += werr(x, wsrch, imp.data());
      imp_unweighted += werr(x, srch, imp.data());
    }
    // And the search gains something real overall (not merely ties with round-to-nearest).
    CHECK(search_sum < 0.9 * rtn_sum);
    CHECK(imp_weighted < imp_unweighted);
  }
}

TEST_CASE("K-quant quantizers: zeros, constants, tiny and huge values", "[convert][kquant]") {
  const size_t k = 256;
  for (KQuant t : kAll) {
    INFO(kernels::to_string(t));
    for (float c : {0.0f, 1.0f, -2.5f, 1e-6f, 3e4f}) {
      std::vector<float> x(k, c);
      for (bool search : {false, true}) {
        const auto y = round_trip(t, x, nullptr, search);
        for (size_t i = 0; i < k; ++i) {
          REQUIRE(std::isfinite(y[i]));
          // 1e-6: the K types' fp16 super-block scale (a sub-block scale over 63) underflows,
          // so tiny rows may come back as 0 (as in ggml): bounded, never garbage.
          REQUIRE(std::fabs(y[i] - c) <= std::fabs(c) * 0.02f + 1.01e-6f);
        }
      }
    }
    std::mt19937 rng(3);
    auto x = random_row(rng, k, false);
    for (float& v : x) v *= 1e4f;  // large but within fp16 scale range
    const auto y = round_trip(t, x, nullptr, true);
    CHECK(rel_rms(x, y) < 0.12);
  }
}

TEST_CASE("quantize_matrix: K-quant row lengths must be whole super-blocks", "[convert][kquant]") {
  std::vector<float> w(4 * 320, 0.5f);
  std::vector<uint8_t> out(4 * 320 * 2);
  for (KQuant t : {KQuant::kQ4K, KQuant::kQ5K, KQuant::kQ6K}) {
    try {
      quantize_matrix_kquant(t, w.data(), 4, 320, QuantizeOptions{}, out.data(), nullptr);
      FAIL("no error for 320 columns");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("320") != std::string::npos);
      CHECK(std::string(e.what()).find("256") != std::string::npos);
    }
  }
  std::vector<float> w2(2 * 48, 0.5f);
  CHECK_THROWS_AS(quantize_matrix_kquant(KQuant::kQ5_0, w2.data(), 2, 48, QuantizeOptions{},
                                         out.data(), nullptr),
                  Error);
  std::vector<float> bad(256, 1.0f);
  bad[17] = std::nanf("");
  CHECK_THROWS_WITH(quantize_matrix_kquant(KQuant::kQ4K, bad.data(), 1, 256, QuantizeOptions{},
                                           out.data(), nullptr),
                    Catch::Contains("not finite") && Catch::Contains("row 0"));
}
