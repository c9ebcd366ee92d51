// The converter: Hugging Face directories (F32, BF16, sharded) match a plain halves-RoPE
// reference after conversion; llama2.c, GGUF, HF and .piq copies of the same weights give
// identical logits; GGUF Q8_0 / Q4_0 files convert without changing a logit; bad inputs give
// clear errors.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "common/pack.hpp"
#include "convert/convert.hpp"
#include "convert/quantize.hpp"
#include "convert_test_util.hpp"
#include "format/gguf_writer.hpp"
#include "load/llama2c_model.hpp"
#include "format/piq.hpp"

namespace {

using namespace piquant;
using piquant::test::TempDir;

ModelConfig tiny(const std::string& arch = "llama") {
  ModelConfig c;
  c.arch = arch;
  c.dim = 64;
  c.hidden_dim = 96;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 260;
  c.max_seq_len = 64;
  c.norm_eps = 1e-5f;
  c.tied_classifier = false;
  c.qkv_bias = arch == "qwen2";
  c.qk_norm = arch == "qwen3";
  return c;
}

ConvertOptions quiet(const std::string& type) {
  ConvertOptions o;
  o.type = type;
  o.progress = false;
  o.threads = 2;
  return o;
}

std::shared_ptr<const Model> convert_and_load(const std::string& input, const std::string& out,
                                              const std::string& type,
                                              const std::string& tokenizer = "") {
  auto src = open_model_source(input, tokenizer);
  convert_model(*src, out, quiet(type));
  return Model::load(out);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a Hugging Face checkpoint converts and matches a halves-RoPE reference",
          "[convert][hf]") {
  struct Case {
    const char* arch;
    const char* hf;
    FileDType dtype;
    int shards;
  };
  for (const Case& k : {Case{"llama", "LlamaForCausalLM", FileDType::kF32, 1},
                        Case{"llama", "LlamaForCausalLM", FileDType::kBF16, 3},
                        Case{"qwen2", "Qwen2ForCausalLM", FileDType::kF32, 2},
                        Case{"qwen3", "Qwen3ForCausalLM", FileDType::kBF16, 1}}) {
    CAPTURE(k.arch, dtype_name(k.dtype), k.shards);
    const auto w = test::random_hf_weights(tiny(k.arch), k.hf, 7, k.dtype == FileDType::kBF16);
    TempDir dir;
    test::HfDirOptions o;
    o.dtype = k.dtype;
    o.shards = k.shards;
    test::write_hf_dir(dir.path(), w, o);
    auto model = convert_and_load(dir.path(), dir.file("m.piq"), "f32");
    CHECK(model->config().arch == k.arch);
    CHECK(model->mapped_bytes() > 0);
    const std::vector<TokenId> toks = {256, 3, 99, 257, 12, 12, 200, 5, 258, 64};
    const auto got = test::session_logits(model, toks);
    const auto ref = test::reference_logits(w, toks);
    double worst = 0;
    for (size_t p = 0; p < toks.size(); ++p) {
      for (size_t i = 0; i < 260; ++i) {
        worst = std::max(worst, std::abs(double(got[p * 260 + i]) - ref[p][i]));
      }
    }
    INFO("worst |piquant - reference| = " << worst);
    CHECK(worst < 2e-4);
    // The tokenizer, chat template and generation defaults came along.
    REQUIRE(model->has_tokenizer());
    CHECK(model->tokenizer().encode("the").size() == 2);  // "t" "he"
    CHECK(model->tokenizer().decode(model->tokenizer().encode(" the hat")) == " the hat");
    CHECK(model->chat_template().find("<|im_start|>") != std::string::npos);
    CHECK(model->generation_defaults().has_temperature);
    CHECK(model->generation_defaults().temperature == Approx(0.6f));
    CHECK(model->generation_defaults().eos_token_ids == std::vector<TokenId>{258});
    // The .piq's tokenizer loads on its own (piquant-tokenize -m model.piq).
    CHECK(Tokenizer::load(dir.file("m.piq")).vocab_size() == 259);
  }
}

TEST_CASE("llama2.c, GGUF, Hugging Face and piq copies of the same weights give identical logits",
          "[convert][formats]") {
  ModelConfig c = tiny();
  c.dim = 128;
  c.hidden_dim = 320;
  c.head_dim = 32;
  c.vocab_size = 300;
  const auto w = random_llama2c_weights(c, 21);
  TempDir dir;
  write_llama2c(dir.file("m.bin"), w);
  // The same arrays as GGUF (pairs layout, like llama2.c) ...
  GgufWriter g;
  using V = GgufWriteValue;
  g.add("general.architecture", V::string("llama"));
  g.add("llama.embedding_length", V::u32(128));
  g.add("llama.block_count", V::u32(2));
  g.add("llama.feed_forward_length", V::u32(320));
  g.add("llama.attention.head_count", V::u32(4));
  g.add("llama.attention.head_count_kv", V::u32(2));
  g.add("llama.context_length", V::u32(64));
  g.add("llama.attention.layer_norm_rms_epsilon", V::f32(1e-5f));
  // ... and as a Hugging Face checkpoint, Q/K rows permuted to halves.
  test::HfWeights hf;
  hf.hc.hf_architecture = "LlamaForCausalLM";
  hf.hc.config = c;
  auto slice = [](const std::vector<float>& all, size_t layer, size_t n) {
    return std::vector<float>(all.begin() + long(layer * n), all.begin() + long((layer + 1) * n));
  };
  auto put = [&](const std::string& gname, const std::string& hname, std::vector<float> v,
                 size_t rows, size_t cols, int rope_heads = 0) {
    g.add_tensor(gname, 0,
                 rows == 1 ? std::vector<uint64_t>{cols} : std::vector<uint64_t>{cols, rows},
                 std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));
    if (rope_heads > 0) {
      std::vector<float> halves(v.size());
      permute_pairs_to_halves(v.data(), halves.data(), rope_heads, 32, cols, sizeof(float));
      v = halves;
    }
    hf.t[hname] = v;
  };
  put("token_embd.weight", "model.embed_tokens.weight", w.tok_embd, 300, 128);
  put("output_norm.weight", "model.norm.weight", w.rms_final, 1, 128);
  put("output.weight", "lm_head.weight", w.wcls, 300, 128);
  for (size_t l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    const std::string p = "model.layers." + std::to_string(l) + ".";
    put(b + "attn_norm.weight", p + "input_layernorm.weight", slice(w.rms_att, l, 128), 1, 128);
    put(b + "attn_q.weight", p + "self_attn.q_proj.weight", slice(w.wq, l, 128 * 128), 128, 128, 4);
    put(b + "attn_k.weight", p + "self_attn.k_proj.weight", slice(w.wk, l, 64 * 128), 64, 128, 2);
    put(b + "attn_v.weight", p + "self_attn.v_proj.weight", slice(w.wv, l, 64 * 128), 64, 128);
    put(b + "attn_output.weight", p + "self_attn.o_proj.weight", slice(w.wo, l, 128 * 128), 128,
        128);
    put(b + "ffn_norm.weight", p + "post_attention_layernorm.weight", slice(w.rms_ffn, l, 128), 1,
        128);
    put(b + "ffn_gate.weight", p + "mlp.gate_proj.weight", slice(w.w1, l, 320 * 128), 320, 128);
    put(b + "ffn_down.weight", p + "mlp.down_proj.weight", slice(w.w2, l, 128 * 320), 128, 320);
    put(b + "ffn_up.weight", p + "mlp.up_proj.weight", slice(w.w3, l, 320 * 128), 320, 128);
  }
  g.write(dir.file("m.gguf"));
  const std::string hf_dir = dir.file("hf");
  REQUIRE(mkdir(hf_dir.c_str(), 0755) == 0);
  test::HfDirOptions ho;
  ho.tokenizer = false;
  test::write_hf_dir(hf_dir, hf, ho);

  const std::vector<TokenId> toks = {1, 5, 299, 42, 42, 7, 100, 3, 250, 17, 17, 9};
  const auto ref = test::session_logits(Model::load(dir.file("m.bin")), toks);
  const auto bytes = ref.size() * sizeof(float);
  CHECK(std::memcmp(test::session_logits(Model::load(dir.file("m.gguf")), toks).data(), ref.data(),
                    bytes) == 0);
  for (const std::string& in : {dir.file("m.bin"), dir.file("m.gguf"), hf_dir}) {
    CAPTURE(in);
    auto m = convert_and_load(in, dir.file("m.piq"), "f32");
    CHECK(m->describe().find("piquant file") != std::string::npos);
    CHECK(std::memcmp(test::session_logits(m, toks).data(), ref.data(), bytes) == 0);
  }
  // The HF checkpoint run with halves RoPE (no permutation, straight from safetensors as the
  // reference does) agrees with the pairs layout to float rounding.
  const auto halves = test::reference_logits(hf, toks);
  double worst = 0;
  for (size_t p = 0; p < toks.size(); ++p) {
    for (size_t i = 0; i < 300; ++i)
      worst = std::max(worst, std::abs(halves[p][i] - double(ref[p * 300 + i])));
  }
  CHECK(worst < 2e-4);
}

namespace {

// A GGUF model whose matrices are Q8_0 or Q4_0 (embedding Q8_0, tied classifier).
void write_quant_gguf(const std::string& path, uint32_t matrix_type, uint64_t seed) {
  const ModelConfig c = [] {
    ModelConfig m = tiny();
    m.dim = 128;
    m.hidden_dim = 256;
    m.head_dim = 32;
    m.vocab_size = 320;
    return m;
  }();
  GgufWriter g;
  using V = GgufWriteValue;
  g.add("general.architecture", V::string("llama"));
  g.add("llama.embedding_length", V::u32(128));
  g.add("llama.block_count", V::u32(2));
  g.add("llama.feed_forward_length", V::u32(256));
  g.add("llama.attention.head_count", V::u32(4));
  g.add("llama.attention.head_count_kv", V::u32(2));
  g.add("llama.context_length", V::u32(64));
  test::Rng64 rng{seed};
  auto mat = [&](const std::string& name, size_t rows, size_t cols, uint32_t type) {
    std::vector<float> v(rows * cols);
    for (float& x : v) x = rng.normal() / std::sqrt(float(cols));
    const auto wt = type == 8 ? kernels::WeightType::kQ8 : kernels::WeightType::kQ4;
    std::string q(rows * kernels::row_bytes(wt, cols), '\0');
    kernels::quantize_rows(wt, v.data(), rows, cols, q.data());
    g.add_tensor(name, type, {cols, rows}, q);
  };
  auto vec = [&](const std::string& name, size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = 1.0f + 0.1f * rng.normal();
    g.add_tensor(name, 0, {n}, std::string(reinterpret_cast<const char*>(v.data()), n * 4));
  };
  mat("token_embd.weight", 320, 128, 8);
  vec("output_norm.weight", 128);
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    vec(b + "attn_norm.weight", 128);
    mat(b + "attn_q.weight", 128, 128, matrix_type);
    mat(b + "attn_k.weight", 64, 128, matrix_type);
    mat(b + "attn_v.weight", 64, 128, matrix_type);
    mat(b + "attn_output.weight", 128, 128, matrix_type);
    vec(b + "ffn_norm.weight", 128);
    mat(b + "ffn_gate.weight", 256, 128, matrix_type);
    mat(b + "ffn_up.weight", 256, 128, matrix_type);
    mat(b + "ffn_down.weight", 128, 256, matrix_type);
  }
  g.write(path);
}

}  // namespace

TEST_CASE("converting a GGUF Q8_0 or Q4_0 file keeps every logit", "[convert][gguf]") {
  TempDir dir;
  const std::vector<TokenId> toks = {1, 2, 300, 64, 64, 5, 319, 0, 100};
  for (const uint32_t type : {8u, 2u}) {
    CAPTURE(type);
    write_quant_gguf(dir.file("m.gguf"), type, 3 + type);
    const auto direct = test::session_logits(Model::load(dir.file("m.gguf")), toks);
    // keep: every tensor as stored; q8 on the Q8_0 file asks for what it already is.
    for (const std::string t : {"keep", type == 8 ? "q8" : "keep"}) {
      CAPTURE(t);
      auto m = convert_and_load(dir.file("m.gguf"), dir.file("m.piq"), t);
      CHECK(m->weight_bytes() == Model::load(dir.file("m.gguf"))->weight_bytes());
      const auto got = test::session_logits(m, toks);
      REQUIRE(got.size() == direct.size());
      CHECK(std::memcmp(got.data(), direct.data(), got.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("the scale search is never worse than absmax under its weighted error",
          "[convert][quantize]") {
  using kernels::WeightType;
  test::Rng64 rng{5};
  const size_t rows = 16, cols = 256;
  std::vector<float> w(rows * cols), imp(cols);
  for (size_t i = 0; i < w.size(); ++i) {
    w[i] = rng.normal() * (i % 97 == 0 ? 8.0f : 1.0f);  // a few outliers
  }
  for (size_t i = 0; i < cols; ++i) imp[i] = i % 16 == 0 ? 50.0f : 0.5f + std::abs(rng.normal());
  for (WeightType t : {WeightType::kQ8, WeightType::kQ4, WeightType::kQ4M}) {
    CAPTURE(kernels::to_string(t));
    auto weighted_err = [&](const QuantizeOptions& o) {
      std::vector<uint8_t> q(rows * kernels::row_bytes(t, cols));
      quantize_matrix(t, w.data(), rows, cols, o, q.data(), nullptr);
      std::vector<float> d(w.size());
      kernels::dequantize_rows(t, q.data(), rows, cols, d.data());
      double e = 0;
      for (size_t i = 0; i < w.size(); ++i)
        e += double(imp[i % cols]) * double(w[i] - d[i]) * double(w[i] - d[i]);
      return e;
    };
    QuantizeOptions absmax;
    absmax.search = false;
    QuantizeOptions plain;
    QuantizeOptions weighted;
    weighted.importance = imp.data();
    const double e_abs = weighted_err(absmax), e_plain = weighted_err(plain),
                 e_w = weighted_err(weighted);
    std::printf(
        "quantize %s: importance-weighted error absmax %.4f, search %.4f, weighted search %.4f\n",
        kernels::to_string(t), e_abs, e_plain, e_w);
    CHECK(e_w <= e_abs);
    CHECK(e_w <= e_plain * 1.0001);
    // Relative RMS of the plain search is no worse than absmax's.
    std::vector<uint8_t> qa(rows * kernels::row_bytes(t, cols)), qs(qa.size());
    quantize_matrix(t, w.data(), rows, cols, absmax, qa.data(), nullptr);
    quantize_matrix(t, w.data(), rows, cols, plain, qs.data(), nullptr);
    CHECK(relative_rms_error(t, w.data(), qs.data(), rows, cols) <=
          relative_rms_error(t, w.data(), qa.data(), rows, cols));
  }
}

TEST_CASE("the pre-quantization hook sees every tensor as f32 and its changes land in the file",
          "[convert]") {
  TempDir dir;
  const auto w = test::random_hf_weights(tiny(), "LlamaForCausalLM", 3);
  test::write_hf_dir(dir.path(), w);
  auto src = open_model_source(dir.path());
  ConvertOptions o = quiet("f32");
  std::vector<std::string> seen;
  o.pre_quantize = [&](const std::string& name, int64_t rows, int64_t cols, float* data) {
    seen.push_back(name);
    if (name == "output_norm.weight") {
      CHECK(rows == 1);
      for (int64_t i = 0; i < cols; ++i) data[i] = 0.0f;  // zero logits everywhere
    }
  };
  convert_model(*src, dir.file("m.piq"), o);
  CHECK(seen.size() == src->tensors().size());
  const auto logits = test::session_logits(Model::load(dir.file("m.piq")), {1, 2, 3});
  for (float x : logits) CHECK(x == 0.0f);
}

TEST_CASE("bad converter inputs give clear errors", "[convert][bad-input]") {
  TempDir dir;
  const auto w = test::random_hf_weights(tiny(), "LlamaForCausalLM", 9);
  test::write_hf_dir(dir.path(), w);
  const std::string st = dir.file("model.safetensors");
  const std::string good = test::read_file(st);
  auto convert_err = [&] {
    return error_of([&] { convert_and_load(dir.path(), dir.file("out.piq"), "q8"); });
  };
  SECTION("truncated safetensors") {
    for (size_t cut : {size_t{4}, size_t{100}, good.size() / 2, good.size() - 1}) {
      CAPTURE(cut);
      test::write_file(st, good.substr(0, cut));
      CHECK_THAT(convert_err(), Catch::Contains("model.safetensors"));
    }
  }
  // A header with two tensors: edits its JSON in place (same length) to break the offsets.
  uint64_t hlen = 0;
  std::memcpy(&hlen, good.data(), 8);
  const std::string header = good.substr(8, hlen);
  auto with_header = [&](nlohmann::json j) {
    std::string h = j.dump();
    h.resize(std::max<size_t>(h.size(), hlen), ' ');
    std::string out(8, '\0');
    const uint64_t n = h.size();
    std::memcpy(out.data(), &n, 8);
    test::write_file(st, out + h + good.substr(8 + hlen));
  };
  auto j = nlohmann::json::parse(header);
  SECTION("overlapping offsets") {
    auto& q = j["model.layers.0.self_attn.q_proj.weight"]["data_offsets"];
    auto& k = j["model.layers.0.self_attn.k_proj.weight"]["data_offsets"];
    const uint64_t len = k[1].get<uint64_t>() - k[0].get<uint64_t>();
    k[0] = q[0].get<uint64_t>() + 4;
    k[1] = k[0].get<uint64_t>() + len;
    with_header(j);
    CHECK_THAT(convert_err(), Catch::Contains("overlap"));
  }
  SECTION("out-of-range offsets") {
    auto& q = j["model.layers.1.mlp.up_proj.weight"]["data_offsets"];
    const uint64_t len = q[1].get<uint64_t>() - q[0].get<uint64_t>();
    q[0] = good.size();
    q[1] = good.size() + len;
    with_header(j);
    CHECK_THAT(convert_err(), Catch::Contains("model.layers.1.mlp.up_proj.weight"));
  }
  SECTION("shape mismatch against config.json") {
    auto cfg = test::hf_config_json(w);
    cfg["intermediate_size"] = 128;
    test::write_file(dir.file("config.json"), cfg.dump());
    CHECK_THAT(convert_err(), Catch::Contains("expected shape") && Catch::Contains("config.json"));
  }
  SECTION("dtype piquant does not read") {
    j["model.norm.weight"]["dtype"] = "I32";
    with_header(j);
    CHECK_THAT(convert_err(), Catch::Contains("model.norm.weight") && Catch::Contains("I32"));
  }
  SECTION("missing tensor") {
    j.erase("model.layers.1.self_attn.v_proj.weight");
    with_header(j);
    CHECK_THAT(convert_err(), Catch::Contains("missing tensor") &&
                                  Catch::Contains("model.layers.1.self_attn.v_proj.weight"));
  }
  SECTION("unknown type and block size") {
    auto src = open_model_source(dir.path());
    CHECK_THAT(error_of([&] { convert_model(*src, dir.file("o.piq"), quiet("q3")); }),
               Catch::Contains("unknown --type 'q3'"));
    ConvertOptions o = quiet("q4");
    o.block_size = 64;
    CHECK_THAT(error_of([&] { convert_model(*src, dir.file("o.piq"), o); }),
               Catch::Contains("only 32"));
  }
  SECTION("piq files: newer version, truncation, missing tensor") {
    auto src = open_model_source(dir.path());
    convert_model(*src, dir.file("m.piq"), quiet("q4_mix"));
    const std::string piq = test::read_file(dir.file("m.piq"));
    std::string newer = piq;
    newer[8] = 2;
    test::write_file(dir.file("new.piq"), newer);
    CHECK_THAT(error_of([&] { Model::load(dir.file("new.piq")); }),
               Catch::Contains("version 2 is newer"));
    for (size_t cut : {size_t{10}, size_t{63}, piq.size() / 2, piq.size() - 1}) {
      CAPTURE(cut);
      test::write_file(dir.file("cut.piq"), piq.substr(0, cut));
      CHECK_FALSE(error_of([&] { Model::load(dir.file("cut.piq")); }).empty());
    }
    // A file whose index lacks a tensor the config needs.
    PiqFile f(dir.file("m.piq"));
    PiqWriter wr(dir.file("missing.piq"));
    for (const auto& t : f.tensors()) {
      if (t.name == "blk.1.ffn_up.weight") continue;
      wr.add_tensor(t.name, t.type, t.layout, t.shape, f.data(t), t.size);
    }
    wr.finish(f.meta());
    CHECK_THAT(error_of([&] { Model::load(dir.file("missing.piq")); }),
               Catch::Contains("missing tensor blk.1.ffn_up.weight"));
  }
}
