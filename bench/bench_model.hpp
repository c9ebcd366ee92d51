#pragma once
// Shared by the benchmarks that need a model at a real shape without a file: a TinyLlama-shaped
// (dim 2048, ffn 5632, 32 heads / 4 KV heads, vocab 32000) q4 model with seeded random weights,
// built in-process (bench_lora, bench_grammar).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <piquant/piquant.hpp>

#include "common/pack.hpp"
#include "model/linear.hpp"
#include "model/model_impl.hpp"

namespace bench_util {

namespace k = piquant::kernels;

// Cheap seeded uniform values in [-a, a] (the benchmark needs sizes, not a distribution).
struct Rng {
  uint64_t s;
  float next(float a) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return a * (static_cast<float>(s >> 40) / 8388608.0f - 1.0f);
  }
};

inline std::shared_ptr<const piquant::Model> tinyllama_q4(int layers, uint64_t seed) {
  using namespace piquant;
  auto m = std::make_unique<Model::Impl>();
  ModelConfig& c = m->config;
  c.dim = 2048;
  c.hidden_dim = 5632;
  c.n_layers = layers;
  c.n_heads = 32;
  c.n_kv_heads = 4;
  c.head_dim = 64;
  c.vocab_size = 32000;
  c.max_seq_len = 2048;
  c.tied_classifier = false;
  m->source = "synthetic TinyLlama-shaped, seed " + std::to_string(seed);
  Rng rng{seed * 0x9E3779B97F4A7C15ull + 1};
  auto keep = [&](auto bytes) {  // std::vector<uint8_t> or kernels::AlignedBytes
    auto p = std::make_shared<decltype(bytes)>(std::move(bytes));
    m->storage.push_back(p);
    return static_cast<const void*>(p->data());
  };
  std::vector<float> f;
  auto random = [&](size_t n, float a) {
    f.resize(n);
    for (float& x : f) x = rng.next(a);
  };
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols, DType type, bool packed) {
    random(size_t(rows) * size_t(cols), 1.7f / std::sqrt(float(cols)));
    Tensor t;
    t.name = name;
    t.type = type;
    t.rows = rows;
    t.cols = cols;
    const auto wt = type;
    if (packed) {
      OwnedQuantWeight q = quantize_weight(wt, f.data(), rows, cols);
      t.layout = TensorLayout::kPacked;
      t.data = keep(std::move(q.storage));
    } else {
      std::vector<uint8_t> rows_q(size_t(rows) * k::row_bytes(wt, size_t(cols)));
      k::quantize_rows(wt, f.data(), size_t(rows), size_t(cols), rows_q.data());
      t.layout = TensorLayout::kRows;
      t.data = keep(std::move(rows_q));
    }
    return t;
  };
  auto norm = [&](const std::string& name, int64_t n) {
    std::vector<uint8_t> b(size_t(n) * 4);
    for (int64_t i = 0; i < n; ++i) {
      const float v = 1.0f + rng.next(0.1f);
      std::memcpy(b.data() + 4 * i, &v, 4);
    }
    Tensor t;
    t.name = name;
    t.rows = 1;
    t.cols = n;
    t.data = keep(std::move(b));
    return t;
  };
  m->tok_embd = matrix("token_embd.weight", c.vocab_size, c.dim, DType::kQ8, false);
  m->output = matrix("output.weight", c.vocab_size, c.dim, DType::kQ8, true);
  m->output_norm = norm("output_norm.weight", c.dim);
  for (int l = 0; l < layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    LayerWeights w;
    w.attn_norm = norm(b + "attn_norm.weight", c.dim);
    w.ffn_norm = norm(b + "ffn_norm.weight", c.dim);
    w.wq = matrix(b + "attn_q.weight", 2048, 2048, DType::kQ4, true);
    w.wk = matrix(b + "attn_k.weight", 256, 2048, DType::kQ4, true);
    w.wv = matrix(b + "attn_v.weight", 256, 2048, DType::kQ4, true);
    w.wo = matrix(b + "attn_output.weight", 2048, 2048, DType::kQ4, true);
    w.w_gate = matrix(b + "ffn_gate.weight", 5632, 2048, DType::kQ4, true);
    w.w_up = matrix(b + "ffn_up.weight", 5632, 2048, DType::kQ4, true);
    w.w_down = matrix(b + "ffn_down.weight", 2048, 5632, DType::kQ4, true);
    m->layers.push_back(std::move(w));
  }
  finish_model(*m);
  return std::make_shared<const Model>(std::move(m));
}

}  // namespace bench_util
