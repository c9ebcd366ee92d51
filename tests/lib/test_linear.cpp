// linear(): quantize-once + row-split kernels against a double reference on the unquantized
// activations, identical bytes for 1 and 2 threads, and clear errors for bad shapes.
#include <catch2/catch.hpp>

#include <piquant/error.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/quant.hpp"
#include "model/linear.hpp"
#include "threads/thread_pool.hpp"

using piquant::WeightType;

TEST_CASE("linear matches a double reference and is identical for 1 and 2 threads", "[lib][linear]") {
  const uint32_t seed = 4242;
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  piquant::ThreadPool pool1(1), pool2(2);
  for (WeightType t : {WeightType::kQ4, WeightType::kQ8, WeightType::kQ4M, WeightType::kF16, WeightType::kF32}) {
    for (size_t n : {1, 3, 19}) {
      const int64_t rows = 37, cols = 288;
      std::vector<float> w(rows * cols), x(n * (cols + 5));
      for (float& v : w) v = dist(rng);
      for (float& v : x) v = dist(rng) * 2.0f;
      const auto qw = piquant::quantize_weight(t, w.data(), rows, cols);
      REQUIRE(qw.storage.size() == qw.weight.packed_bytes());
      const piquant::LinearWeight lw(qw.weight);
      // Reference: the dequantized weights times the unquantized activations, in double.
      std::vector<float> wq(rows * cols);
      std::vector<uint8_t> row_major(rows * piquant::kernels::row_bytes(t, cols));
      piquant::kernels::quantize_rows(t, w.data(), rows, cols, row_major.data());
      piquant::kernels::dequantize_rows(t, row_major.data(), rows, cols, wq.data());
      const size_t ys = rows + 2;
      std::vector<float> y1(n * ys, -1.0f), y2(n * ys, -2.0f);
      piquant::LinearScratch s1, s2;
      piquant::linear(lw, x.data(), n, cols + 5, y1.data(), ys, &pool1, s1);
      piquant::linear(lw, x.data(), n, cols + 5, y2.data(), ys, &pool2, s2);
      for (size_t j = 0; j < n; ++j) {
        for (int64_t r = 0; r < rows; ++r) {
          const float* xr = x.data() + j * (cols + 5);
          double want = 0, bound = 0;
          for (int64_t b = 0; b < cols / 32; ++b) {
            // Activation quantization moves each x by at most d_a / 2 = max|x_block| / 254.
            float amax = 0;
            for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xr[b * 32 + i]));
            for (int i = 0; i < 32; ++i) {
              const double wv = wq[r * cols + b * 32 + i];
              want += wv * double(xr[b * 32 + i]);
              bound += std::fabs(wv) * (piquant::kernels::is_quantized(t) ? double(amax) / 254.0 * 1.001 : 0.0) +
                       std::fabs(wv * double(xr[b * 32 + i])) * 1e-5;
            }
          }
          CAPTURE(piquant::kernels::to_string(t), n, j, r, seed);
          const float got = y1[j * ys + r];
          REQUIRE(std::fabs(double(got) - want) <= bound);
          REQUIRE(std::memcmp(&got, &y2[j * ys + r], 4) == 0);
        }
        REQUIRE(y1[j * ys + rows] == -1.0f);  // padding columns untouched
        REQUIRE(y2[j * ys + rows + 1] == -2.0f);
      }
      if (n == 3) {  // decode (GEMV) gives the same bits as that token inside a batch (GEMM)
        std::vector<float> y3(rows);
        piquant::linear(lw, x.data() + 2 * (cols + 5), 1, cols, y3.data(), rows, &pool2, s2);
        REQUIRE(std::memcmp(y3.data(), y1.data() + 2 * ys, rows * 4) == 0);
      }
    }
  }
}

TEST_CASE("linear and quantize_weight reject bad shapes with a clear error", "[lib][linear]") {
  std::vector<float> w(8 * 40, 1.0f);
  try {
    piquant::quantize_weight(WeightType::kQ4, w.data(), 8, 40);
    FAIL("no error");
  } catch (const piquant::Error& e) {
    CHECK(e.code() == piquant::ErrorCode::kInvalidArgument);
    CHECK(std::string(e.what()).find("40 columns is not a multiple of 32") != std::string::npos);
  }
  CHECK_THROWS_AS(piquant::quantize_weight(WeightType::kQ8, w.data(), 0, 32), piquant::Error);
  CHECK_THROWS_AS(piquant::quantize_weight(WeightType::kQ8, nullptr, 8, 32), piquant::Error);
  const auto qw = piquant::quantize_weight(WeightType::kQ8, w.data(), 8, 32);
  std::vector<float> x(64), y(16);
  piquant::LinearScratch s;
  const piquant::LinearWeight lw(qw.weight);
  CHECK_THROWS_AS(piquant::linear(lw, x.data(), 2, 16, y.data(), 8, nullptr, s), piquant::Error);
  // A weight is checked once, when its handle is made, with validate_weight()'s messages.
  try {
    piquant::LinearWeight bad(piquant::QuantWeight{WeightType::kQ8, 8, 40, qw.weight.packed});
    FAIL("no error");
  } catch (const piquant::Error& e) {
    CHECK(e.code() == piquant::ErrorCode::kInvalidArgument);
    CHECK(std::string(e.what()) == "linear: 40 columns is not a multiple of 32 (the q8 block size)");
  }
  piquant::QuantWeight empty;
  CHECK_THROWS_AS(piquant::LinearWeight(empty), piquant::Error);
  CHECK_THROWS_AS(piquant::LinearWeight(piquant::QuantWeight{WeightType::kQ8, 8, 32, nullptr}),
                  piquant::Error);
  CHECK_THROWS_AS(piquant::linear(piquant::LinearWeight(), x.data(), 1, 32, y.data(), 8, nullptr, s),
                  piquant::Error);
  CHECK(!piquant::linear_kernel_names().empty());
}
