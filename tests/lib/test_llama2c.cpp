// llama2.c checkpoints: a seeded random model with grouped-query attention and a separate
// classifier, written to disk, loaded through the public API, and checked against an independent
// double-precision forward pass written here from the llama2.c weight arrays (not from lib/).
#include <catch2/catch.hpp>
#include <cmath>
#include <piquant/piquant.hpp>

#include "load/llama2c_model.hpp"
#include "test_util.hpp"

namespace {

using piquant::Llama2cWeights;

// Straight transcription of llama2.c run.c's forward() in double, weights in file order.
class ReferenceLlama {
 public:
  explicit ReferenceLlama(const Llama2cWeights& w) : w_(w), c_(w.config) {
    kv_dim_ = c_.n_kv_heads * c_.head_dim;
    k_.assign(static_cast<size_t>(c_.n_layers), {});
    v_.assign(static_cast<size_t>(c_.n_layers), {});
  }

  std::vector<double> forward(int token, int pos) {
    const int d = c_.dim, hd = c_.head_dim, hid = c_.hidden_dim;
    std::vector<double> x(d);
    for (int i = 0; i < d; ++i) x[i] = double(w_.tok_embd[static_cast<size_t>(token) * d + i]);
    for (int l = 0; l < c_.n_layers; ++l) {
      auto xb = rmsnorm(x, &w_.rms_att[static_cast<size_t>(l) * d]);
      auto q = matvec(&w_.wq[static_cast<size_t>(l) * d * d], xb, d);
      auto k = matvec(&w_.wk[static_cast<size_t>(l) * kv_dim_ * d], xb, kv_dim_);
      auto v = matvec(&w_.wv[static_cast<size_t>(l) * kv_dim_ * d], xb, kv_dim_);
      rope(q, pos);
      rope(k, pos);
      k_[l].insert(k_[l].end(), k.begin(), k.end());
      v_[l].insert(v_[l].end(), v.begin(), v.end());
      std::vector<double> att_out(d, 0.0);
      const int group = c_.n_heads / c_.n_kv_heads;
      for (int h = 0; h < c_.n_heads; ++h) {
        const int kvh = h / group;
        std::vector<double> score(pos + 1);
        double mx = -1e300;
        for (int t = 0; t <= pos; ++t) {
          double s = 0;
          for (int i = 0; i < hd; ++i) {
            s += q[h * hd + i] * k_[l][static_cast<size_t>(t) * kv_dim_ + kvh * hd + i];
          }
          score[t] = s / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, score[t]);
        }
        double sum = 0;
        for (double& s : score) sum += (s = std::exp(s - mx));
        for (int t = 0; t <= pos; ++t) {
          for (int i = 0; i < hd; ++i) {
            att_out[h * hd + i] +=
                score[t] / sum * v_[l][static_cast<size_t>(t) * kv_dim_ + kvh * hd + i];
          }
        }
      }
      auto o = matvec(&w_.wo[static_cast<size_t>(l) * d * d], att_out, d);
      for (int i = 0; i < d; ++i) x[i] += o[i];
      xb = rmsnorm(x, &w_.rms_ffn[static_cast<size_t>(l) * d]);
      auto g = matvec(&w_.w1[static_cast<size_t>(l) * hid * d], xb, hid);
      auto u = matvec(&w_.w3[static_cast<size_t>(l) * hid * d], xb, hid);
      for (int i = 0; i < hid; ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
      auto down = matvec(&w_.w2[static_cast<size_t>(l) * d * hid], g, d);
      for (int i = 0; i < d; ++i) x[i] += down[i];
    }
    x = rmsnorm(x, w_.rms_final.data());
    const auto& cls = c_.tied_classifier ? w_.tok_embd : w_.wcls;
    return matvec(cls.data(), x, c_.vocab_size);
  }

 private:
  std::vector<double> rmsnorm(const std::vector<double>& x, const float* weight) const {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double scale = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + double(c_.norm_eps));
    std::vector<double> out(x.size());
    for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] * scale * double(weight[i]);
    return out;
  }
  static std::vector<double> matvec(const float* w, const std::vector<double>& x, int rows) {
    std::vector<double> y(rows, 0.0);
    for (int r = 0; r < rows; ++r) {
      for (size_t c = 0; c < x.size(); ++c) y[r] += double(w[static_cast<size_t>(r) * x.size() + c]) * x[c];
    }
    return y;
  }
  // Adjacent pairs (x[2i], x[2i+1]) rotate by pos * theta^(-2i/head_dim), per head.
  void rope(std::vector<double>& v, int pos) const {
    for (size_t i = 0; i < v.size(); i += 2) {
      const int j = static_cast<int>(i) % c_.head_dim;
      const double freq = std::pow(static_cast<double>(c_.rope_theta), -double(j) / c_.head_dim);
      const double a = pos * freq, c = std::cos(a), s = std::sin(a);
      const double x0 = v[i], x1 = v[i + 1];
      v[i] = x0 * c - x1 * s;
      v[i + 1] = x0 * s + x1 * c;
    }
  }

  const Llama2cWeights& w_;
  const piquant::ModelConfig& c_;
  int kv_dim_ = 0;
  std::vector<std::vector<double>> k_, v_;
};

piquant::ModelConfig small_config(bool tied, int n_heads, int n_kv_heads) {
  piquant::ModelConfig c;
  c.dim = 64;
  c.hidden_dim = 172;
  c.n_layers = 3;
  c.n_heads = n_heads;
  c.n_kv_heads = n_kv_heads;
  c.head_dim = c.dim / n_heads;
  c.vocab_size = 97;
  c.max_seq_len = 24;
  c.tied_classifier = tied;
  return c;
}

}  // namespace

TEST_CASE("llama2.c checkpoint with GQA and a separate classifier matches a double reference",
          "[lib][llama2c]") {
  const bool tied = GENERATE(false, true);
  const int n_kv = GENERATE(1, 2, 8);
  const uint64_t seed = 1234 + static_cast<uint64_t>(n_kv) + (tied ? 100 : 0);
  CAPTURE(tied, n_kv, seed);
  const Llama2cWeights w = piquant::random_llama2c_weights(small_config(tied, 8, n_kv), seed);
  piquant::test::TempDir dir;
  const std::string path = dir.file("model.bin");
  piquant::write_llama2c(path, w);

  auto model = piquant::Model::load(path);
  const piquant::ModelConfig& c = model->config();
  REQUIRE(c.n_heads == 8);
  REQUIRE(c.n_kv_heads == n_kv);
  REQUIRE(c.tied_classifier == tied);
  REQUIRE(c.vocab_size == 97);

  ReferenceLlama ref(w);
  piquant::Session session(model, piquant::SessionOptions{0, 2});
  const std::vector<piquant::TokenId> tokens = {1, 5, 96, 40, 40, 0, 17, 63, 2, 88, 31, 7};
  double worst = 0;
  for (size_t p = 0; p < tokens.size(); ++p) {
    const float* logits = session.eval({tokens[p]});
    const std::vector<double> want = ref.forward(tokens[p], static_cast<int>(p));
    for (int i = 0; i < c.vocab_size; ++i) {
      // f32 accumulation over K <= 172 of unit-size terms: errors ~1e-6 relative; 1e-4 is wide.
      const double err = std::abs(static_cast<double>(logits[i]) - want[i]);
      worst = std::max(worst, err);
      CAPTURE(p, i, logits[i], want[i]);
      REQUIRE(err <= 1e-4 + 1e-4 * std::abs(want[i]));
    }
  }
  INFO("worst |logit - ref| = " << worst);
  CHECK(worst > 0.0);  // the two computations are independent: exact equality would be suspicious
}

TEST_CASE("a llama2.c checkpoint's classifier choice changes the logits", "[lib][llama2c]") {
  // Guards the test above: with the wrong classifier the reference must disagree.
  Llama2cWeights w = piquant::random_llama2c_weights(small_config(false, 8, 2), 99);
  piquant::test::TempDir dir;
  piquant::write_llama2c(dir.file("m.bin"), w);
  auto model = piquant::Model::load(dir.file("m.bin"));
  piquant::Session session(model, piquant::SessionOptions{0, 1});
  const float* logits = session.eval({3});
  w.config.tied_classifier = true;  // reference now (wrongly) uses the embedding
  ReferenceLlama wrong(w);
  const std::vector<double> bad = wrong.forward(3, 0);
  double diff = 0;
  for (int i = 0; i < 97; ++i) diff = std::max(diff, std::abs(double(logits[i]) - bad[i]));
  CHECK(diff > 1e-2);
}
