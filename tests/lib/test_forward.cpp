// The runtime forward pass (lib/model/graph.cpp) against the plain one-token f32 oracle
// (tests/ref_forward.cpp), batched prefill against token-by-token decode, thread-count
// invariance, and the quantized paths against f32 on the same weights.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <piquant/piquant.hpp>

#include "load/llama2c_model.hpp"
#include "ref_forward.hpp"
#include "model/quantize_model.hpp"
#include "threads/thread_pool.hpp"

namespace {

piquant::ModelConfig cfg() {
  piquant::ModelConfig c;
  c.dim = 128;
  c.hidden_dim = 352;
  c.n_layers = 3;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 32;
  c.vocab_size = 300;
  c.max_seq_len = 256;
  c.tied_classifier = false;
  return c;
}

std::shared_ptr<const piquant::Model> f32_model(uint64_t seed) {
  return std::make_shared<const piquant::Model>(piquant::model_from_llama2c_weights(
      piquant::random_llama2c_weights(cfg(), seed), "test model"));
}

std::shared_ptr<const piquant::Model> quantized(const piquant::Model& m, piquant::DType t) {
  piquant::QuantizeModelOptions o;
  o.type = t;
  o.embedding_type = piquant::DType::kQ8;
  return std::make_shared<const piquant::Model>(piquant::quantize_model(m.impl(), o));
}

std::vector<piquant::TokenId> tokens(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<piquant::TokenId> t(n);
  for (auto& x : t) x = static_cast<piquant::TokenId>(rng() % 300);
  return t;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::abs(a[i] - b[i])));
  return worst;
}

std::vector<float> run(const std::shared_ptr<const piquant::Model>& m,
                       const std::vector<piquant::TokenId>& toks, bool batched, int threads,
                       piquant::KvCacheType kv = piquant::KvCacheType::kAuto) {
  piquant::SessionOptions so;
  so.n_threads = threads;
  so.kv_type = kv;
  piquant::Session s(m, so);
  std::vector<float> all;
  if (batched) {
    s.eval(toks, &all);
  } else {
    for (auto t : toks) s.eval({t}, &all);
  }
  return all;
}

}  // namespace

TEST_CASE("the runtime forward pass matches the one-token f32 oracle", "[lib][forward]") {
  auto model = f32_model(11);
  const auto toks = tokens(20, 5);
  const std::vector<float> got = run(model, toks, false, 2);
  piquant::ForwardState st(model->config(), 64);
  piquant::ThreadPool pool(1);
  double worst = 0;
  for (size_t p = 0; p < toks.size(); ++p) {
    piquant::forward_token(model->impl(), st, toks[p], static_cast<int>(p), pool);
    for (int i = 0; i < 300; ++i) {
      const double d = std::abs(double(got[p * 300 + i]) - double(st.logits[i]));
      worst = std::max(worst, d);
    }
  }
  INFO("worst |runtime - oracle| = " << worst);
  CHECK(worst < 1e-4);
}

TEST_CASE("prefill in chunks gives the logits of token-by-token decode", "[lib][forward]") {
  auto model = f32_model(12);
  const auto toks = tokens(150, 6);  // > 2 chunks of 64
  const auto one = run(model, toks, false, 1);
  const auto batch = run(model, toks, true, 1);
  const double worst = max_abs_diff(one, batch);
  INFO("worst |batched - sequential| = " << worst);
  CHECK(worst < 1e-4);
  // Quantized weights: the integer kernels make GEMM and GEMV agree to float rounding.
  auto q4 = quantized(*model, piquant::DType::kQ4);
  const auto q_one = run(q4, toks, false, 1);
  const auto q_batch = run(q4, toks, true, 1);
  const double qworst = max_abs_diff(q_one, q_batch);
  INFO("q4: worst |batched - sequential| = " << qworst);
  CHECK(qworst < 1e-3);
}

TEST_CASE("a prefill asking only for the last logits continues like token-by-token decode",
          "[lib][forward]") {
  // Without all_logits the last layer runs Q, attention, O and the FFN for the last prompt
  // token alone (chunks before it: for none) but still stores every token's K and V; the decode
  // steps after the prompt read those.
  auto model = f32_model(15);
  const auto toks = tokens(150, 9);
  const std::vector<piquant::TokenId> prompt(toks.begin(), toks.end() - 10);  // 140: 3 chunks
  for (auto t : {piquant::DType::kF32, piquant::DType::kQ8, piquant::DType::kQ4}) {
    CAPTURE(piquant::to_string(t));
    auto m = t == piquant::DType::kF32 ? model : quantized(*model, t);
    piquant::SessionOptions so;
    so.n_threads = 2;
    piquant::Session pre(m, so), seq(m, so);
    const size_t vocab = static_cast<size_t>(cfg().vocab_size);
    const float* lp = pre.eval(prompt);
    std::vector<float> got(lp, lp + vocab), want;
    for (auto tok : prompt) {
      const float* ls = seq.eval({tok});
      want.assign(ls, ls + vocab);
    }
    for (size_t i = prompt.size(); i < toks.size(); ++i) {
      const float* a = pre.eval({toks[i]});
      const float* b = seq.eval({toks[i]});
      got.insert(got.end(), a, a + vocab);
      want.insert(want.end(), b, b + vocab);
    }
    const double worst = max_abs_diff(got, want);
    INFO("worst |prefill+decode - sequential| = " << worst);
    CHECK(worst < (t == piquant::DType::kF32 ? 1e-4 : 1e-3));
  }
}

TEST_CASE("logits are bit-identical for any thread count", "[lib][forward]") {
  auto model = f32_model(13);
  const auto toks = tokens(70, 7);
  for (auto t : {piquant::DType::kF32, piquant::DType::kQ8, piquant::DType::kQ4,
                 piquant::DType::kQ4M}) {
    CAPTURE(piquant::to_string(t));
    auto m = t == piquant::DType::kF32 ? model : quantized(*model, t);
    const auto a = run(m, toks, true, 1);
    const auto b = run(m, toks, true, 2);
    const auto c = run(m, toks, true, 3);
    REQUIRE(a.size() == b.size());
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(a.data(), c.data(), a.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("quantized weights and KV caches stay close to the f32 model", "[lib][forward]") {
  auto model = f32_model(14);
  const auto toks = tokens(48, 8);
  const auto ref = run(model, toks, true, 2);
  struct Case {
    const char* name;
    std::shared_ptr<const piquant::Model> m;
    piquant::KvCacheType kv;
    double min_top1;
  };
  const std::vector<Case> cases = {
      {"q8 weights", quantized(*model, piquant::DType::kQ8), piquant::KvCacheType::kF32, 0.9},
      {"q4 weights", quantized(*model, piquant::DType::kQ4), piquant::KvCacheType::kF32, 0.6},
      {"q4m weights", quantized(*model, piquant::DType::kQ4M), piquant::KvCacheType::kF32, 0.6},
      {"f16 KV cache", model, piquant::KvCacheType::kF16, 0.97},
      {"q8 KV cache", model, piquant::KvCacheType::kQ8, 0.9},
  };
  for (const Case& c : cases) {
    const auto got = run(c.m, toks, true, 2, c.kv);
    size_t agree = 0;
    double err2 = 0, ref2 = 0;
    for (size_t p = 0; p < toks.size(); ++p) {
      const float* r = ref.data() + p * 300;
      const float* g = got.data() + p * 300;
      agree += std::max_element(r, r + 300) - r == std::max_element(g, g + 300) - g;
      for (int i = 0; i < 300; ++i) {
        err2 += double(g[i] - r[i]) * double(g[i] - r[i]);
        ref2 += double(r[i]) * double(r[i]);
      }
    }
    const double top1 = double(agree) / double(toks.size());
    const double rel = std::sqrt(err2 / ref2);
    std::printf("forward: %-13s top-1 agreement with f32 %.3f, relative RMS logit error %.4f\n",
                c.name, top1, rel);
    CAPTURE(c.name, top1, rel);
    CHECK(top1 >= c.min_top1);
    CHECK(rel < 0.5);
    CHECK(rel > 0.0);
  }
}
