#include "load/llama2c_model.hpp"

#include <cmath>
#include <random>

#include "format/mapped_file.hpp"

namespace piquant {
namespace {

void fill_layers(Model::Impl& m, const float* base, const Llama2cLayout& s) {
  const ModelConfig& c = m.config;
  const int64_t d = c.dim, h = c.hidden_dim, q_dim = int64_t{c.n_heads} * c.head_dim,
                kv = int64_t{c.n_kv_heads} * c.head_dim;
  const float* p = base;
  auto take = [&p](size_t n) {
    const float* r = p;
    p += n;
    return r;
  };
  auto mat = [](std::string name, int64_t rows, int64_t cols, const float* data) {
    Tensor t;
    t.name = std::move(name);
    t.rows = rows;
    t.cols = cols;
    t.data = data;
    return t;
  };
  const float* embd = take(s.embd);
  const float* rms_att = take(s.rms_att);
  const float* wq = take(s.wq);
  const float* wk = take(s.wk);
  const float* wv = take(s.wv);
  const float* wo = take(s.wo);
  const float* rms_ffn = take(s.rms_ffn);
  const float* w1 = take(s.w1);
  const float* w2 = take(s.w2);
  const float* w3 = take(s.w3);
  const float* rms_final = take(s.rms_final);
  take(2 * s.freq);  // precomputed RoPE tables: recomputed at run time instead
  const float* wcls = take(s.wcls);

  m.tok_embd = mat("token_embd.weight", c.vocab_size, d, embd);
  m.output_norm = mat("output_norm.weight", 1, d, rms_final);
  m.output = mat("output.weight", c.vocab_size, d, c.tied_classifier ? embd : wcls);
  m.layers.resize(c.n_layers);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LayerWeights& lw = m.layers[l];
    const std::string b = "blk." + std::to_string(l) + ".";
    lw.attn_norm = mat(b + "attn_norm.weight", 1, d, rms_att + l * d);
    lw.wq = mat(b + "attn_q.weight", q_dim, d, wq + l * q_dim * d);
    lw.wk = mat(b + "attn_k.weight", kv, d, wk + l * kv * d);
    lw.wv = mat(b + "attn_v.weight", kv, d, wv + l * kv * d);
    lw.wo = mat(b + "attn_output.weight", d, q_dim, wo + l * d * q_dim);
    lw.ffn_norm = mat(b + "ffn_norm.weight", 1, d, rms_ffn + l * d);
    lw.w_gate = mat(b + "ffn_gate.weight", h, d, w1 + l * h * d);
    lw.w_down = mat(b + "ffn_down.weight", d, h, w2 + l * d * h);
    lw.w_up = mat(b + "ffn_up.weight", h, d, w3 + l * h * d);
  }
}

}  // namespace

std::unique_ptr<Model::Impl> load_llama2c(std::shared_ptr<const MappedFile> file) {
  auto m = std::make_unique<Model::Impl>();
  m->config = read_llama2c_header(*file);
  validate_config(m->config, file->path());
  m->origin = ModelOrigin::kLlama2c;
  m->source = "llama2.c checkpoint";
  fill_layers(*m, llama2c_weights(*file, m->config), llama2c_layout(m->config));
  m->storage.push_back(file);
  finish_model(*m);
  return m;
}

Llama2cWeights random_llama2c_weights(const ModelConfig& cfg, uint64_t seed) {
  Llama2cWeights w;
  w.config = cfg;
  if (w.config.head_dim == 0 && w.config.n_heads > 0) w.config.head_dim = cfg.dim / cfg.n_heads;
  validate_config(w.config, "random llama2.c weights");
  const Llama2cLayout s = llama2c_layout(w.config);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto fill = [&](std::vector<float>& v, size_t n, float stddev, float mean) {
    v.resize(n);
    for (float& x : v) x = mean + stddev * normal(rng);
  };
  // Scale by 1/sqrt(fan_in) so activations keep unit size through the layers.
  const float sd = 1.0f / std::sqrt(static_cast<float>(w.config.dim));
  const float sh = 1.0f / std::sqrt(static_cast<float>(w.config.hidden_dim));
  fill(w.tok_embd, s.embd, 1.0f, 0.0f);
  fill(w.rms_att, s.rms_att, 0.1f, 1.0f);
  fill(w.wq, s.wq, sd, 0.0f);
  fill(w.wk, s.wk, sd, 0.0f);
  fill(w.wv, s.wv, sd, 0.0f);
  fill(w.wo, s.wo, sd, 0.0f);
  fill(w.rms_ffn, s.rms_ffn, 0.1f, 1.0f);
  fill(w.w1, s.w1, sd, 0.0f);
  fill(w.w2, s.w2, sh, 0.0f);
  fill(w.w3, s.w3, sd, 0.0f);
  fill(w.rms_final, s.rms_final, 0.1f, 1.0f);
  fill(w.wcls, s.wcls, sd, 0.0f);
  return w;
}

std::unique_ptr<Model::Impl> model_from_llama2c_weights(Llama2cWeights w, std::string source) {
  auto m = std::make_unique<Model::Impl>();
  m->config = w.config;
  m->source = std::move(source);
  const Llama2cLayout s = llama2c_layout(w.config);
  auto all = std::make_shared<std::vector<float>>();
  all->reserve(s.total());
  for (const std::vector<float>* v : {&w.tok_embd, &w.rms_att, &w.wq, &w.wk, &w.wv, &w.wo,
                                      &w.rms_ffn, &w.w1, &w.w2, &w.w3, &w.rms_final}) {
    all->insert(all->end(), v->begin(), v->end());
  }
  all->resize(all->size() + 2 * s.freq, 0.0f);
  all->insert(all->end(), w.wcls.begin(), w.wcls.end());
  if (all->size() != s.total()) {
    throw Error(ErrorCode::kInvalidArgument, "llama2.c weights do not match their config");
  }
  fill_layers(*m, all->data(), s);
  m->storage.push_back(all);
  finish_model(*m);
  return m;
}

}  // namespace piquant
