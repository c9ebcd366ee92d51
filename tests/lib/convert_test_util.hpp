#pragma once
// Helpers for the converter tests: seeded weights under Hugging Face names, a tiny byte-level
// tokenizer.json, HF directories (single file or sharded), a plain halves-RoPE reference
// forward pass over the HF-layout weights, and logits comparisons (KL, top-1).
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <piquant/piquant.hpp>
#include <string>
#include <vector>

#include "format/dtype_convert.hpp"
#include "load/hf_model.hpp"
#include "format/safetensors.hpp"
#include "test_util.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace piquant::test {

struct Rng64 {
  uint64_t s;
  float normal() {  // sum of 4 uniforms, variance 1
    float acc = 0;
    for (int i = 0; i < 4; ++i) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      acc += static_cast<float>(s >> 40) * (1.0f / 16777216.0f);
    }
    return (acc - 2.0f) * 1.7320508f;
  }
};

/// A model as Hugging Face stores it: tensors by HF name, row-major [out, in], Q/K in halves.
struct HfWeights {
  HfConfig hc;  // hc.config is the piquant config
  std::map<std::string, std::vector<float>> t;
  const std::vector<float>& at(const std::string& n) const { return t.at(n); }
};

inline HfWeights random_hf_weights(const ModelConfig& c, const std::string& hf_arch, uint64_t seed,
                                   bool bf16_round = false) {
  HfWeights w;
  w.hc.hf_architecture = hf_arch;
  w.hc.config = c;
  Rng64 rng{seed};
  for (const HfTensorSpec& sp : hf_tensor_specs(w.hc)) {
    size_t n = 1;
    for (int64_t d : sp.shape) n *= static_cast<size_t>(d);
    std::vector<float> v(n);
    const bool vec = sp.shape.size() == 1;
    const bool norm = sp.name.find("norm") != std::string::npos;
    const float sd = vec ? (norm ? 0.1f : 0.3f) : 1.0f / std::sqrt(float(sp.shape[1]));
    for (float& x : v) {
      x = (norm ? 1.0f : 0.0f) + sd * rng.normal();
      if (bf16_round) x = bf16_to_f32(f32_to_bf16(x));
    }
    w.t[sp.hf_name] = std::move(v);
  }
  return w;
}

inline nlohmann::json hf_config_json(const HfWeights& w) {
  const ModelConfig& c = w.hc.config;
  nlohmann::json j = {{"architectures", {w.hc.hf_architecture}},
                      {"hidden_size", c.dim},
                      {"intermediate_size", c.hidden_dim},
                      {"num_hidden_layers", c.n_layers},
                      {"num_attention_heads", c.n_heads},
                      {"num_key_value_heads", c.n_kv_heads},
                      {"head_dim", c.head_dim},
                      {"vocab_size", c.vocab_size},
                      {"max_position_embeddings", c.max_seq_len},
                      {"rms_norm_eps", c.norm_eps},
                      {"rope_theta", c.rope_theta},
                      {"tie_word_embeddings", c.tied_classifier},
                      {"hidden_act", "silu"},
                      {"bos_token_id", 256},
                      {"eos_token_id", 258}};
  return j;
}

/// A byte-level BPE tokenizer.json: 256 byte pieces, two merges, one special token.
inline std::string hf_dir_tokenizer_json() {
  nlohmann::json vocab = nlohmann::json::object();
  const auto& b2u = byte_to_unicode();
  for (int b = 0; b < 256; ++b) {
    std::string piece;
    const char32_t cp = b2u[static_cast<size_t>(b)];
    if (cp < 0x80) {
      piece += static_cast<char>(cp);
    } else {
      piece += static_cast<char>(0xC0 | (cp >> 6));
      piece += static_cast<char>(0x80 | (cp & 0x3F));
    }
    vocab[piece] = b;
  }
  vocab["\xC4\xA0t"] = 256;  // "Ġt"
  vocab["he"] = 257;
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 258},
         {"content", "<|endoftext|>"},
         {"special", true},
         {"single_word", false},
         {"lstrip", false},
         {"rstrip", false},
         {"normalized", false}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "ByteLevel"},
        {"add_prefix_space", false},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"\xC4\xA0 t", "h e"}}}}};
  return j.dump();
}

struct HfDirOptions {
  FileDType dtype = FileDType::kF32;
  int shards = 1;  ///< > 1: model-0000k-of-0000n.safetensors + model.safetensors.index.json
  bool tokenizer = true;
};

/// Writes config.json, safetensors (one file or shards + index), tokenizer.json,
/// tokenizer_config.json (a chat template) and generation_config.json into `dir`.
inline void write_hf_dir(const std::string& dir, const HfWeights& w, const HfDirOptions& o = {}) {
  write_file(dir + "/config.json", hf_config_json(w).dump(1));
  std::vector<SafetensorsWriter> shards(static_cast<size_t>(o.shards));
  nlohmann::json weight_map = nlohmann::json::object();
  size_t i = 0;
  HfTensorSpec dummy;
  for (const HfTensorSpec& sp : hf_tensor_specs(w.hc)) {
    const size_t s = i++ % shards.size();
    shards[s].add_f32(sp.hf_name, sp.shape, w.at(sp.hf_name).data(), o.dtype);
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05d.safetensors", s + 1, o.shards);
    weight_map[sp.hf_name] = name;
  }
  if (o.shards == 1) {
    shards[0].write(dir + "/model.safetensors");
  } else {
    for (size_t s = 0; s < shards.size(); ++s) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05d.safetensors", s + 1, o.shards);
      shards[s].write(dir + "/" + name);
    }
    write_file(
        dir + "/model.safetensors.index.json",
        nlohmann::json({{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}).dump());
  }
  if (o.tokenizer) {
    write_file(dir + "/tokenizer.json", hf_dir_tokenizer_json());
    write_file(dir + "/tokenizer_config.json",
               nlohmann::json({{"chat_template",
                                "{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}"},
                               {"eos_token", "<|endoftext|>"}})
                   .dump());
  }
  write_file(dir + "/generation_config.json",
             nlohmann::json({{"temperature", 0.6}, {"top_p", 0.9}, {"do_sample", true}}).dump());
}

/// The forward pass written out plainly over HF-layout weights (halves RoPE), in double.
/// Returns vocab logits per token.
inline std::vector<std::vector<double>> reference_logits(const HfWeights& w,
                                                         const std::vector<TokenId>& toks) {
  const ModelConfig& c = w.hc.config;
  const size_t d = size_t(c.dim), hd = size_t(c.head_dim), nh = size_t(c.n_heads),
               nkv = size_t(c.n_kv_heads), h = size_t(c.hidden_dim), V = size_t(c.vocab_size);
  const bool exaone = c.arch == "exaone";
  auto W = [&](const std::string& n) -> const std::vector<float>& { return w.at(n); };
  auto matvec = [](const std::vector<float>& m, const std::vector<double>& x, size_t rows) {
    std::vector<double> y(rows, 0.0);
    const size_t cols = x.size();
    for (size_t r = 0; r < rows; ++r) {
      for (size_t k = 0; k < cols; ++k) y[r] += double(m[r * cols + k]) * x[k];
    }
    return y;
  };
  auto rms = [&](const std::vector<double>& x, const float* g, size_t n, size_t off) {
    std::vector<double> y(n);
    double ss = 0;
    for (size_t i = 0; i < n; ++i) ss += x[off + i] * x[off + i];
    const double s = 1.0 / std::sqrt(ss / double(n) + double(c.norm_eps));
    for (size_t i = 0; i < n; ++i) y[i] = x[off + i] * s * double(g[i]);
    return y;
  };
  std::vector<std::vector<std::vector<double>>> K(size_t(c.n_layers)), Vc(size_t(c.n_layers));
  std::vector<std::vector<double>> out;
  const std::string embd = exaone ? "transformer.wte.weight" : "model.embed_tokens.weight";
  for (size_t pos = 0; pos < toks.size(); ++pos) {
    std::vector<double> x(d);
    for (size_t i = 0; i < d; ++i) x[i] = double(W(embd)[size_t(toks[pos]) * d + i]);
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const std::string a = p + "self_attn.";
      auto xb = rms(x, W(p + "input_layernorm.weight").data(), d, 0);
      auto q = matvec(W(a + "q_proj.weight"), xb, nh * hd);
      auto k = matvec(W(a + "k_proj.weight"), xb, nkv * hd);
      auto v = matvec(W(a + "v_proj.weight"), xb, nkv * hd);
      if (c.qkv_bias) {
        for (size_t i = 0; i < q.size(); ++i) q[i] += double(W(a + "q_proj.bias")[i]);
        for (size_t i = 0; i < k.size(); ++i)
          k[i] += double(W(a + "k_proj.bias")[i]), v[i] += double(W(a + "v_proj.bias")[i]);
      }
      auto rope_heads = [&](std::vector<double>& t, size_t heads, const char* norm) {
        for (size_t hh = 0; hh < heads; ++hh) {
          if (c.qk_norm) {
            auto n = rms(t, W(a + norm).data(), hd, hh * hd);
            for (size_t i = 0; i < hd; ++i) t[hh * hd + i] = n[i];
          }
          for (size_t i = 0; i < hd / 2; ++i) {
            const double freq = std::pow(double(c.rope_theta), -2.0 * double(i) / double(hd));
            const double ang = double(pos) * freq, cs = std::cos(ang), sn = std::sin(ang);
            double& x0 = t[hh * hd + i];
            double& x1 = t[hh * hd + i + hd / 2];
            const double a0 = x0, a1 = x1;
            x0 = a0 * cs - a1 * sn;
            x1 = a0 * sn + a1 * cs;
          }
        }
      };
      rope_heads(q, nh, "q_norm.weight");
      rope_heads(k, nkv, "k_norm.weight");
      K[size_t(l)].push_back(k);
      Vc[size_t(l)].push_back(v);
      std::vector<double> att(nh * hd, 0.0);
      for (size_t hh = 0; hh < nh; ++hh) {
        const size_t kvh = hh / (nh / nkv);
        std::vector<double> sc(pos + 1);
        double mx = -1e300;
        for (size_t t = 0; t <= pos; ++t) {
          double s = 0;
          for (size_t i = 0; i < hd; ++i) s += q[hh * hd + i] * K[size_t(l)][t][kvh * hd + i];
          sc[t] = s / std::sqrt(double(hd));
          mx = std::max(mx, sc[t]);
        }
        double sum = 0;
        for (double& s : sc) sum += (s = std::exp(s - mx));
        for (size_t t = 0; t <= pos; ++t) {
          for (size_t i = 0; i < hd; ++i)
            att[hh * hd + i] += sc[t] / sum * Vc[size_t(l)][t][kvh * hd + i];
        }
      }
      auto o = matvec(W(a + "o_proj.weight"), att, d);
      for (size_t i = 0; i < d; ++i) x[i] += o[i];
      xb = rms(x, W(p + "post_attention_layernorm.weight").data(), d, 0);
      auto g = matvec(W(p + "mlp.gate_proj.weight"), xb, h);
      auto u = matvec(W(p + "mlp.up_proj.weight"), xb, h);
      for (size_t i = 0; i < h; ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
      auto dn = matvec(W(p + "mlp.down_proj.weight"), g, d);
      for (size_t i = 0; i < d; ++i) x[i] += dn[i];
    }
    auto xf = rms(x, W("model.norm.weight").data(), d, 0);
    out.push_back(matvec(c.tied_classifier ? W(embd) : W("lm_head.weight"), xf, V));
  }
  return out;
}

/// Every position's logits through a Session (one thread).
inline std::vector<float> session_logits(const std::shared_ptr<const Model>& m,
                                         const std::vector<TokenId>& toks) {
  Session s(m, SessionOptions{0, 1});
  std::vector<float> all;
  s.eval(toks, &all);
  return all;
}

struct Agreement {
  double kl = 0;    ///< mean KL(p_ref || p) over positions, nats
  double top1 = 0;  ///< fraction of positions with the same argmax
};

inline Agreement compare_logits(const std::vector<float>& ref, const std::vector<float>& got,
                                size_t vocab) {
  Agreement a;
  const size_t n = ref.size() / vocab;
  for (size_t p = 0; p < n; ++p) {
    const float* r = ref.data() + p * vocab;
    const float* g = got.data() + p * vocab;
    double mr = -1e300, mg = -1e300;
    size_t ar = 0, ag = 0;
    for (size_t i = 0; i < vocab; ++i) {
      if (double(r[i]) > mr) mr = double(r[i]), ar = i;
      if (double(g[i]) > mg) mg = double(g[i]), ag = i;
    }
    double zr = 0, zg = 0;
    for (size_t i = 0; i < vocab; ++i)
      zr += std::exp(double(r[i]) - mr), zg += std::exp(double(g[i]) - mg);
    double kl = 0;
    for (size_t i = 0; i < vocab; ++i) {
      const double lpr = double(r[i]) - mr - std::log(zr), lpg = double(g[i]) - mg - std::log(zg);
      kl += std::exp(lpr) * (lpr - lpg);
    }
    a.kl += kl;
    a.top1 += ar == ag;
  }
  a.kl /= double(n);
  a.top1 /= double(n);
  return a;
}

}  // namespace piquant::test
