#include "lora_test_util.hpp"

#include <nlohmann/json.hpp>

#include "format/gguf_writer.hpp"
#include "load/hf_model.hpp"
#include "format/safetensors.hpp"
#include "model/quantize_model.hpp"
#include "test_util.hpp"

namespace piquant::test {

ModelConfig lora_test_config() {
  ModelConfig c;
  c.dim = 64;
  c.hidden_dim = 96;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 300;
  c.max_seq_len = 128;
  c.tied_classifier = false;
  return c;
}

std::vector<LoraTarget> all_targets() {
  return {LoraTarget::kQ,    LoraTarget::kK,  LoraTarget::kV,   LoraTarget::kO,
          LoraTarget::kGate, LoraTarget::kUp, LoraTarget::kDown};
}

const char* hf_module(LoraTarget t) {
  static const char* const k[] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                  "gate_proj", "up_proj", "down_proj"};
  return k[static_cast<int>(t)];
}

TestAdapter make_adapter(const ModelConfig& c, int r, float alpha, bool rslora, uint64_t seed,
                         std::vector<LoraTarget> targets) {
  TestAdapter a;
  a.r = r;
  a.alpha = alpha;
  a.rslora = rslora;
  a.targets = targets;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int l = 0; l < c.n_layers; ++l) {
    for (LoraTarget t : targets) {
      const size_t in = size_t(lora_in_dim(c, t)), out = size_t(lora_out_dim(c, t));
      LoraMat m;
      m.a.resize(size_t(r) * in);
      m.b.resize(out * size_t(r));
      // A ~ 1/sqrt(in) (unit-size A x), B sized so scale * B A x is a sizeable fraction of W x.
      for (float& x : m.a) x = nd(rng) / std::sqrt(float(in));
      const float bs = 0.5f / (a.scale() * std::sqrt(float(r)));
      for (float& x : m.b) x = nd(rng) * bs;
      a.mats[{l, static_cast<int>(t)}] = std::move(m);
    }
  }
  return a;
}

void write_peft(const std::string& dir, const TestAdapter& a, FileDType dtype) {
  nlohmann::json j;
  j["peft_type"] = "LORA";
  j["r"] = a.r;
  j["lora_alpha"] = a.alpha;
  j["use_rslora"] = a.rslora;
  j["fan_in_fan_out"] = false;
  j["bias"] = "none";
  j["task_type"] = "CAUSAL_LM";
  std::vector<std::string> mods;
  for (LoraTarget t : a.targets) mods.push_back(hf_module(t));
  j["target_modules"] = mods;
  write_file(dir + "/adapter_config.json", j.dump(2));
  SafetensorsWriter w;
  for (const auto& [key, m] : a.mats) {
    const auto t = static_cast<LoraTarget>(key.second);
    const bool attn = key.second <= static_cast<int>(LoraTarget::kO);
    const std::string base = "base_model.model.model.layers." + std::to_string(key.first) +
                             (attn ? ".self_attn." : ".mlp.") + hf_module(t);
    const int64_t r = a.r;
    const int64_t in = int64_t(m.a.size()) / r, out = int64_t(m.b.size()) / r;
    w.add_f32(base + ".lora_A.weight", {r, in}, m.a.data(), dtype);
    w.add_f32(base + ".lora_B.weight", {out, r}, m.b.data(), dtype);
  }
  w.write(dir + "/adapter_model.safetensors");
}

void write_gguf_adapter(const std::string& path, const ModelConfig& c, const TestAdapter& a) {
  GgufWriter g;
  g.add("general.architecture", GgufWriteValue::string("llama"));
  g.add("general.type", GgufWriteValue::string("adapter"));
  g.add("adapter.type", GgufWriteValue::string("lora"));
  g.add("adapter.lora.alpha", GgufWriteValue::f32(a.alpha));
  for (const auto& [key, m] : a.mats) {
    const auto t = static_cast<LoraTarget>(key.second);
    const std::string base = "blk." + std::to_string(key.first) + "." + gguf_stem(t) + ".weight";
    const size_t r = size_t(a.r), in = m.a.size() / r, out = m.b.size() / r;
    std::vector<float> b = m.b;
    if (t == LoraTarget::kQ || t == LoraTarget::kK) {  // llama.cpp's converter permutes q/k
      const int heads = t == LoraTarget::kQ ? c.n_heads : c.n_kv_heads;
      permute_halves_to_pairs(m.b.data(), b.data(), heads, c.head_dim, r, sizeof(float));
    }
    g.add_tensor(base + ".lora_a", 0, {in, r},
                 std::string(reinterpret_cast<const char*>(m.a.data()), m.a.size() * 4));
    g.add_tensor(base + ".lora_b", 0, {r, out},
                 std::string(reinterpret_cast<const char*>(b.data()), b.size() * 4));
  }
  g.write(path);
}

float* weight_matrix(Llama2cWeights& w, int l, LoraTarget t) {
  const ModelConfig& c = w.config;
  const size_t n = size_t(lora_in_dim(c, t)) * size_t(lora_out_dim(c, t)) * size_t(l);
  switch (t) {
    case LoraTarget::kQ: return w.wq.data() + n;
    case LoraTarget::kK: return w.wk.data() + n;
    case LoraTarget::kV: return w.wv.data() + n;
    case LoraTarget::kO: return w.wo.data() + n;
    case LoraTarget::kGate: return w.w1.data() + n;
    case LoraTarget::kUp: return w.w3.data() + n;
    case LoraTarget::kDown: return w.w2.data() + n;
  }
  return nullptr;
}

std::shared_ptr<const Model> build_model(Llama2cWeights w, bool halves) {
  const ModelConfig c = w.config;
  if (halves) {
    for (int l = 0; l < c.n_layers; ++l) {
      for (LoraTarget t : {LoraTarget::kQ, LoraTarget::kK}) {
        float* p = weight_matrix(w, l, t);
        const int heads = t == LoraTarget::kQ ? c.n_heads : c.n_kv_heads;
        std::vector<float> src(p, p + size_t(heads * c.head_dim) * size_t(c.dim));
        permute_pairs_to_halves(src.data(), p, heads, c.head_dim, size_t(c.dim), sizeof(float));
      }
    }
  }
  auto impl = model_from_llama2c_weights(std::move(w), halves ? "test (halves)" : "test (pairs)");
  if (halves) impl->rope_layout = RopeLayout::kHalves;
  return std::make_shared<const Model>(std::move(impl));
}

Llama2cWeights merged_weights(const Llama2cWeights& base, const TestAdapter& a, float user_scale) {
  Llama2cWeights w = base;
  const ModelConfig& c = w.config;
  const double s = double(user_scale) * double(a.scale());
  for (const auto& [key, m] : a.mats) {
    const auto t = static_cast<LoraTarget>(key.second);
    const size_t r = size_t(a.r), in = m.a.size() / r, out = m.b.size() / r;
    std::vector<float> b = m.b;
    if (t == LoraTarget::kQ || t == LoraTarget::kK) {  // base rows are in pairs order
      const int heads = t == LoraTarget::kQ ? c.n_heads : c.n_kv_heads;
      permute_halves_to_pairs(m.b.data(), b.data(), heads, c.head_dim, r, sizeof(float));
    }
    float* W = weight_matrix(w, key.first, t);
    for (size_t i = 0; i < out; ++i) {
      for (size_t k = 0; k < in; ++k) {
        double d = 0;
        for (size_t j = 0; j < r; ++j) d += double(b[i * r + j]) * double(m.a[j * in + k]);
        W[i * in + k] = static_cast<float>(double(W[i * in + k]) + s * d);
      }
    }
  }
  return w;
}

std::shared_ptr<const Model> quantized_model(const Model& m, DType type) {
  QuantizeModelOptions o;
  o.type = type;
  o.embedding_type = DType::kQ8;
  return std::make_shared<const Model>(quantize_model(m.impl(), o));
}

std::vector<float> run_logits(const std::shared_ptr<const Model>& m,
                              const std::vector<AdapterChoice>& adapters,
                              const std::vector<TokenId>& tokens, size_t prefill, int threads) {
  SessionOptions so;
  so.n_threads = threads;
  so.kv_type = KvCacheType::kF32;
  Session s(m, so);
  s.set_adapters(adapters);
  std::vector<float> all;
  s.eval(std::vector<TokenId>(tokens.begin(), tokens.begin() + long(prefill)), &all);
  for (size_t i = prefill; i < tokens.size(); ++i) s.eval({tokens[i]}, &all);
  return all;
}

Diff diff(const std::vector<float>& got, const std::vector<float>& ref) {
  Diff d;
  double e2 = 0, r2 = 0;
  for (size_t i = 0; i < ref.size() && i < got.size(); ++i) {
    const double e = double(got[i]) - double(ref[i]);
    d.max_abs = std::max(d.max_abs, std::fabs(e));
    e2 += e * e;
    r2 += double(ref[i]) * double(ref[i]);
  }
  d.rel_rms = r2 > 0 ? std::sqrt(e2 / r2) : 0;
  if (got.size() != ref.size()) d.max_abs = d.rel_rms = 1e30;
  return d;
}

}  // namespace piquant::test
