// GGUF models written by the GGUF writer: the same weights as a llama2.c checkpoint give the
// same logits; every architecture matches the f32 oracle; Q8_0 stays close to F32 at
// Llama-3.2-1B widths; bad files give clear errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <piquant/piquant.hpp>

#include "format/gguf_writer.hpp"
#include "load/llama2c_model.hpp"
#include "ref_forward.hpp"
#include "test_util.hpp"
#include "threads/thread_pool.hpp"

namespace {

constexpr uint32_t kF32 = 0, kQ8_0 = 8, kQ8_1 = 9;  // Q8_1: a type piquant refuses for weights

// Cheap deterministic pseudo-normal values (sum of uniforms), fast enough for 100M weights.
struct Rng {
  uint64_t s;
  float next() {
    float acc = 0;
    for (int i = 0; i < 4; ++i) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      acc += static_cast<float>(s >> 40) * (1.0f / 16777216.0f);
    }
    return (acc - 2.0f) * 1.7320508f;  // mean 0, variance 1
  }
};

std::string bytes_of(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

std::string q8_0_of(const std::vector<float>& v, size_t cols) {
  std::string out(v.size() / 32 * 34, '\0');
  piquant::kernels::quantize_rows(piquant::kernels::WeightType::kQ8, v.data(), v.size() / cols,
                                  cols, out.data());
  return out;
}

struct GgufSpec {
  std::string arch = "llama";
  piquant::ModelConfig c;
  bool tied = false;
  bool biases = false;
  bool qk_norm = false;
  bool llama3_freqs = false;
  uint32_t matrix_type = kF32;
  uint64_t seed = 1;
  int meta_hidden = 0;  ///< != 0: feed_forward_length written into the metadata instead
};

// Writes a GGUF model with random weights; matrices as f32 or Q8_0.
void write_gguf(const std::string& path, const GgufSpec& s) {
  const piquant::ModelConfig& c = s.c;
  piquant::GgufWriter w;
  using V = piquant::GgufWriteValue;
  const std::string a = s.arch;
  w.add("general.architecture", V::string(a));
  w.add(a + ".embedding_length", V::u32(static_cast<uint32_t>(c.dim)));
  w.add(a + ".block_count", V::u32(static_cast<uint32_t>(c.n_layers)));
  w.add(a + ".feed_forward_length",
        V::u32(static_cast<uint32_t>(s.meta_hidden ? s.meta_hidden : c.hidden_dim)));
  w.add(a + ".attention.head_count", V::u32(static_cast<uint32_t>(c.n_heads)));
  w.add(a + ".attention.head_count_kv", V::u32(static_cast<uint32_t>(c.n_kv_heads)));
  w.add(a + ".attention.key_length", V::u32(static_cast<uint32_t>(c.head_dim)));
  w.add(a + ".context_length", V::u32(static_cast<uint32_t>(c.max_seq_len)));
  w.add(a + ".attention.layer_norm_rms_epsilon", V::f32(1e-5f));
  w.add(a + ".rope.freq_base", V::f32(c.rope_theta));
  Rng rng{s.seed};
  auto rand = [&](size_t n, float sd, float mean) {
    std::vector<float> v(n);
    for (float& x : v) x = mean + sd * rng.next();
    return v;
  };
  const size_t d = static_cast<size_t>(c.dim), h = static_cast<size_t>(c.hidden_dim);
  const size_t hd = static_cast<size_t>(c.head_dim);
  const size_t q = static_cast<size_t>(c.n_heads) * hd, kv = static_cast<size_t>(c.n_kv_heads) * hd;
  const size_t vocab = static_cast<size_t>(c.vocab_size);
  auto mat = [&](const std::string& name, size_t rows, size_t cols, uint32_t type) {
    const auto v = rand(rows * cols, 1.0f / std::sqrt(float(cols)), 0.0f);
    w.add_tensor(name, type, {cols, rows}, type == kF32 ? bytes_of(v) : q8_0_of(v, cols));
  };
  auto vec = [&](const std::string& name, size_t n, float sd, float mean) {
    w.add_tensor(name, kF32, {n}, bytes_of(rand(n, sd, mean)));
  };
  w.add_tensor("token_embd.weight", s.matrix_type == kF32 ? kF32 : kQ8_0, {d, vocab},
               s.matrix_type == kF32 ? bytes_of(rand(vocab * d, 1.0f, 0.0f))
                                     : q8_0_of(rand(vocab * d, 1.0f, 0.0f), d));
  vec("output_norm.weight", d, 0.1f, 1.0f);
  if (!s.tied) mat("output.weight", vocab, d, s.matrix_type);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    vec(b + "attn_norm.weight", d, 0.1f, 1.0f);
    mat(b + "attn_q.weight", q, d, s.matrix_type);
    mat(b + "attn_k.weight", kv, d, s.matrix_type);
    mat(b + "attn_v.weight", kv, d, s.matrix_type);
    mat(b + "attn_output.weight", d, q, s.matrix_type);
    if (s.biases) {
      vec(b + "attn_q.bias", q, 0.3f, 0.0f);
      vec(b + "attn_k.bias", kv, 0.3f, 0.0f);
      vec(b + "attn_v.bias", kv, 0.3f, 0.0f);
    }
    if (s.qk_norm) {
      vec(b + "attn_q_norm.weight", hd, 0.1f, 1.0f);
      vec(b + "attn_k_norm.weight", hd, 0.1f, 1.0f);
    }
    vec(b + "ffn_norm.weight", d, 0.1f, 1.0f);
    mat(b + "ffn_gate.weight", h, d, s.matrix_type);
    mat(b + "ffn_up.weight", h, d, s.matrix_type);
    mat(b + "ffn_down.weight", d, h, s.matrix_type);
  }
  if (s.llama3_freqs) {
    // Llama 3.1's scaling as per-frequency divisors (llama.cpp writes rope_freqs.weight).
    std::vector<float> f(hd / 2);
    for (size_t i = 0; i < f.size(); ++i) f[i] = i < f.size() / 2 ? 1.0f : 8.0f;
    w.add_tensor("rope_freqs.weight", kF32, {hd / 2}, bytes_of(f));
  }
  w.write(path);
}

piquant::ModelConfig small(int vocab = 256) {
  piquant::ModelConfig c;
  c.dim = 128;
  c.hidden_dim = 320;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 32;
  c.vocab_size = vocab;
  c.max_seq_len = 128;
  return c;
}

std::vector<float> eval_all(const std::shared_ptr<const piquant::Model>& m,
                            const std::vector<piquant::TokenId>& toks) {
  piquant::Session s(m, piquant::SessionOptions{0, 2});
  std::vector<float> all;
  s.eval(toks, &all);
  return all;
}

using piquant::test::load_error;

}  // namespace

TEST_CASE("a GGUF and a llama2.c checkpoint of the same weights give identical logits",
          "[lib][gguf]") {
  piquant::ModelConfig c = small(300);
  c.tied_classifier = false;
  const auto w = piquant::random_llama2c_weights(c, 21);
  piquant::test::TempDir dir;
  piquant::write_llama2c(dir.file("m.bin"), w);
  // The same arrays under GGUF names (llama2.c and GGUF llama both store Q/K in pairs order).
  piquant::GgufWriter g;
  using V = piquant::GgufWriteValue;
  g.add("general.architecture", V::string("llama"));
  g.add("llama.embedding_length", V::u32(128));
  g.add("llama.block_count", V::u32(2));
  g.add("llama.feed_forward_length", V::u32(320));
  g.add("llama.attention.head_count", V::u32(4));
  g.add("llama.attention.head_count_kv", V::u32(2));
  g.add("llama.context_length", V::u32(128));
  g.add("llama.attention.layer_norm_rms_epsilon", V::f32(1e-5f));
  auto put = [&](const std::string& name, const std::vector<float>& all, size_t layer,
                 size_t rows, size_t cols) {
    const size_t n = rows * cols;
    std::vector<float> part(all.begin() + static_cast<long>(layer * n),
                            all.begin() + static_cast<long>((layer + 1) * n));
    g.add_tensor(name, kF32, rows == 1 ? std::vector<uint64_t>{cols}
                                       : std::vector<uint64_t>{cols, rows},
                 bytes_of(part));
  };
  put("token_embd.weight", w.tok_embd, 0, 300, 128);
  put("output_norm.weight", w.rms_final, 0, 1, 128);
  put("output.weight", w.wcls, 0, 300, 128);
  for (size_t l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    put(b + "attn_norm.weight", w.rms_att, l, 1, 128);
    put(b + "attn_q.weight", w.wq, l, 128, 128);
    put(b + "attn_k.weight", w.wk, l, 64, 128);
    put(b + "attn_v.weight", w.wv, l, 64, 128);
    put(b + "attn_output.weight", w.wo, l, 128, 128);
    put(b + "ffn_norm.weight", w.rms_ffn, l, 1, 128);
    put(b + "ffn_gate.weight", w.w1, l, 320, 128);
    put(b + "ffn_down.weight", w.w2, l, 128, 320);
    put(b + "ffn_up.weight", w.w3, l, 320, 128);
  }
  g.write(dir.file("m.gguf"));
  const std::vector<piquant::TokenId> toks = {1, 5, 299, 42, 42, 7, 100, 3};
  const auto a = eval_all(piquant::Model::load(dir.file("m.bin")), toks);
  const auto b = eval_all(piquant::Model::load(dir.file("m.gguf")), toks);
  REQUIRE(a.size() == b.size());
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

TEST_CASE("GGUF models of every architecture match the f32 reference forward pass",
          "[lib][gguf]") {
  struct Arch {
    const char* name;
    bool biases, qk_norm, llama3;
  };
  for (const Arch& arch : {Arch{"llama", false, false, true}, Arch{"qwen2", true, false, false},
                           Arch{"qwen3", false, true, false}, Arch{"exaone", false, false, false}}) {
    CAPTURE(arch.name);
    GgufSpec s;
    s.arch = arch.name;
    s.c = small();
    s.biases = arch.biases;
    s.qk_norm = arch.qk_norm;
    s.llama3_freqs = arch.llama3;
    s.tied = std::string(arch.name) == "qwen2";
    piquant::test::TempDir dir;
    write_gguf(dir.file("m.gguf"), s);
    auto model = piquant::Model::load(dir.file("m.gguf"));
    CHECK(model->config().arch == arch.name);
    CHECK(model->config().qkv_bias == arch.biases);
    CHECK(model->config().qk_norm == arch.qk_norm);
    const std::vector<piquant::TokenId> toks = {3, 17, 200, 9, 9, 255, 0, 64, 128, 31};
    const auto got = eval_all(model, toks);
    piquant::ForwardState st(model->config(), 64);
    piquant::ThreadPool pool(1);
    double worst = 0;
    for (size_t p = 0; p < toks.size(); ++p) {
      piquant::forward_token(model->impl(), st, toks[p], static_cast<int>(p), pool);
      for (int i = 0; i < 256; ++i) {
        worst = std::max(worst, double(std::abs(got[p * 256 + i] - st.logits[i])));
      }
    }
    INFO("worst |runtime - reference| = " << worst);
    CHECK(worst < 1e-4);
  }
}

TEST_CASE("a Llama-3.2-1B-wide GGUF gives the same greedy tokens through Q8_0 as through F32",
          "[lib][gguf][slow]") {
  // Llama-3.2-1B's widths (dim 2048, ffn 8192, 32 heads, 8 kv heads, head_dim 64, tied
  // classifier, llama3 RoPE factors); one layer and a 2048-token vocabulary keep it small.
  GgufSpec s;
  s.c.dim = 2048;
  s.c.hidden_dim = 8192;
  s.c.n_layers = 1;
  s.c.n_heads = 32;
  s.c.n_kv_heads = 8;
  s.c.head_dim = 64;
  s.c.vocab_size = 2048;
  s.c.max_seq_len = 256;
  s.c.rope_theta = 500000.0f;
  s.tied = true;
  s.llama3_freqs = true;
  piquant::test::TempDir dir;
  write_gguf(dir.file("f32.gguf"), s);
  s.matrix_type = kQ8_0;
  write_gguf(dir.file("q8.gguf"), s);  // same seed: the same weights, quantized
  auto f32 = piquant::Model::load(dir.file("f32.gguf"));
  auto q8 = piquant::Model::load(dir.file("q8.gguf"));
  CHECK(q8->weight_bytes() < f32->weight_bytes() / 3);

  piquant::GenerateOptions go;
  go.max_tokens = 12;
  go.sampler.temperature = 0;
  go.stop_at_end_of_generation = false;
  std::vector<float> lf, lq;
  go.on_logits = [&](const float* l, size_t n) { lf.insert(lf.end(), l, l + n); };
  piquant::Session sf(f32, piquant::SessionOptions{0, 2});
  const auto rf = sf.generate_ids({1, 500, 1000, 1500}, nullptr, go);
  go.on_logits = [&](const float* l, size_t n) { lq.insert(lq.end(), l, l + n); };
  piquant::Session sq(q8, piquant::SessionOptions{0, 2});
  const auto rq = sq.generate_ids({1, 500, 1000, 1500}, nullptr, go);
  // Top-1 agreement over every evaluated position, and the relative logit error.
  REQUIRE(lf.size() == lq.size());
  const size_t positions = lf.size() / 2048;
  size_t agree = 0;
  double err2 = 0, ref2 = 0;
  for (size_t p = 0; p < positions; ++p) {
    const float* a = lf.data() + p * 2048;
    const float* b = lq.data() + p * 2048;
    agree += std::max_element(a, a + 2048) - a == std::max_element(b, b + 2048) - b;
    for (size_t i = 0; i < 2048; ++i) {
      err2 += double(a[i] - b[i]) * double(a[i] - b[i]);
      ref2 += double(a[i]) * double(a[i]);
    }
  }
  std::printf("gguf Llama-3.2-1B-wide: Q8_0 vs F32 top-1 agreement %zu/%zu, relative RMS logit "
              "error %.4f\n", agree, positions, std::sqrt(err2 / ref2));
  CHECK(rq.generated_ids == rf.generated_ids);
  CHECK(std::sqrt(err2 / ref2) < 0.05);
}

TEST_CASE("bad GGUF models give clear errors", "[lib][gguf][bad-input]") {
  piquant::test::TempDir dir;
  GgufSpec s;
  s.c = small();
  s.arch = "mamba";
  write_gguf(dir.file("arch.gguf"), s);
  CHECK_THAT(load_error(dir.file("arch.gguf")), Catch::Contains("unknown architecture 'mamba'"));

  // An unsupported tensor type names the tensor.
  piquant::GgufWriter g;
  using V = piquant::GgufWriteValue;
  g.add("general.architecture", V::string("llama"));
  for (const char* k : {"embedding_length", "block_count", "feed_forward_length",
                        "attention.head_count"}) {
    const std::string key(k);
    g.add("llama." + key, V::u32(key == "block_count" ? 1 : key == "attention.head_count" ? 4 : 64));
  }
  g.add_tensor("token_embd.weight", kQ8_1, {64, 64}, std::string(64 * 64 / 32 * 36, '\0'));
  g.write(dir.file("q8_1.gguf"));
  const std::string e = load_error(dir.file("q8_1.gguf"));
  CHECK_THAT(e, Catch::Contains("token_embd.weight") && Catch::Contains("unsupported tensor type"));

  // A missing tensor and a wrong shape are named.
  s.arch = "llama";
  write_gguf(dir.file("ok.gguf"), s);
  std::string bytes = piquant::test::read_file(dir.file("ok.gguf"));
  const size_t at = bytes.find("blk.1.ffn_up.weight");
  REQUIRE(at != std::string::npos);
  bytes[at + 6] = 'X';  // blk.1.Xfn_up.weight
  piquant::test::write_file(dir.file("missing.gguf"), bytes);
  CHECK_THAT(load_error(dir.file("missing.gguf")), Catch::Contains("missing tensor blk.1.ffn_up.weight"));
  s.meta_hidden = 352;  // the metadata claims an FFN of 352; the tensors hold 320
  write_gguf(dir.file("shape.gguf"), s);
  CHECK_THAT(load_error(dir.file("shape.gguf")),
             Catch::Contains("blk.0.ffn_gate.weight") && Catch::Contains("has shape"));
  // Truncated files never crash.
  for (size_t cut : {size_t{3}, size_t{20}, size_t{200}, bytes.size() / 2, bytes.size() - 1}) {
    piquant::test::write_file(dir.file("cut.gguf"), piquant::test::read_file(dir.file("ok.gguf")).substr(0, cut));
    CAPTURE(cut);
    CHECK_FALSE(load_error(dir.file("cut.gguf")).empty());
  }
}
