// linear_multi(): several weights over one input in one pass give the bytes of separate
// linear() calls, for any thread count, odd row counts and mixed weight types.
#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <vector>

#include "common/quant.hpp"
#include "model/linear.hpp"
#include "model/linear_multi.hpp"
#include "threads/thread_pool.hpp"

using piquant::WeightType;

TEST_CASE("linear_multi gives the bytes of separate linear calls for any thread count",
          "[lib][linear]") {
  std::mt19937 rng(777);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  piquant::ThreadPool pool1(1), pool2(2), pool3(3);
  // Row counts that are not multiples of the interleave, and one weight of another type (mixed
  // types fall back to one pass per weight).
  for (WeightType t : {WeightType::kQ4, WeightType::kQ8, WeightType::kF32}) {
    for (size_t n : {1, 5}) {
      const int64_t cols = 96;
      const int64_t rows[3] = {37, 6, 9};
      std::vector<piquant::OwnedQuantWeight> ws;
      for (int64_t r : rows) {
        std::vector<float> w(static_cast<size_t>(r * cols));
        for (float& v : w) v = dist(rng);
        ws.push_back(piquant::quantize_weight(t, w.data(), r, cols));
      }
      std::vector<float> wm(static_cast<size_t>(11 * cols));
      for (float& v : wm) v = dist(rng);
      ws.push_back(piquant::quantize_weight(WeightType::kQ8, wm.data(), 11, cols));
      std::vector<piquant::LinearWeight> lws;
      for (const auto& o : ws) lws.emplace_back(o.weight);
      std::vector<float> x(n * cols);
      for (float& v : x) v = dist(rng);
      for (size_t n_out : {size_t{3}, size_t{4}}) {
        std::vector<std::vector<float>> want(n_out);
        piquant::LinearScratch s;
        for (size_t i = 0; i < n_out; ++i) {
          const auto& w = lws[i].weight();
          want[i].assign(n * static_cast<size_t>(w.rows), 0.0f);
          piquant::linear(lws[i], x.data(), n, cols, want[i].data(), static_cast<size_t>(w.rows), &pool1,
                          s);
        }
        for (piquant::ThreadPool* pool : {&pool1, &pool2, &pool3}) {
          std::vector<std::vector<float>> got(n_out);
          std::vector<piquant::LinearOut> outs;
          for (size_t i = 0; i < n_out; ++i) {
            const auto& w = lws[i].weight();
            got[i].assign(n * static_cast<size_t>(w.rows), -1.0f);
            outs.push_back({&lws[i], got[i].data(), static_cast<size_t>(w.rows)});
          }
          piquant::linear_multi(outs.data(), n_out, x.data(), n, cols, pool, s);
          for (size_t i = 0; i < n_out; ++i) {
            CAPTURE(piquant::kernels::to_string(t), n, n_out, i, pool->size());
            REQUIRE(std::memcmp(got[i].data(), want[i].data(), want[i].size() * 4) == 0);
          }
        }
      }
    }
  }
}
