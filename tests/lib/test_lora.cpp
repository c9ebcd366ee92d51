// LoRA at run time (lib/lora, the forward pass hooks): adapters written in PEFT / GGUF / .piq form
// by the test, applied unmerged, against a float reference of the merged weights; Q/K rows in
// both RoPE layouts; many adapters and sessions on one model; decode_batch; bad adapters.
#include <catch2/catch.hpp>
#include <cstring>
#include <nlohmann/json.hpp>

#include "format/gguf_writer.hpp"
#include "format/safetensors.hpp"
#include "lora_test_util.hpp"
#include "test_util.hpp"

using namespace piquant;
using namespace piquant::test;

namespace {

std::vector<TokenId> tokens(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<TokenId> t(n);
  for (auto& x : t) x = static_cast<TokenId>(rng() % 300);
  return t;
}

std::shared_ptr<const LoraAdapter> load(const Model& m, const std::string& path,
                                        LoraStorage st = LoraStorage::kAuto) {
  LoraLoadOptions o;
  o.storage = st;
  return LoraAdapter::load(m, path, o);
}

}  // namespace

TEST_CASE("PEFT adapters at run time match the merged f32 weights in both RoPE layouts",
          "[lib][lora]") {
  const ModelConfig c = lora_test_config();
  const Llama2cWeights base = random_llama2c_weights(c, 21);
  auto pairs = build_model(base, false);
  auto halves = build_model(base, true);
  const auto toks = tokens(14, 3);
  struct Case {
    int r;
    float alpha;
    bool rslora;
    float user_scale;
  };
  for (const Case& k : {Case{8, 16.0f, false, 1.0f}, Case{16, 8.0f, false, 0.7f},
                        Case{16, 32.0f, true, 1.0f}}) {
    CAPTURE(k.r, k.alpha, k.rslora, k.user_scale);
    TempDir dir;
    const TestAdapter ta = make_adapter(c, k.r, k.alpha, k.rslora, 100 + uint64_t(k.r));
    write_peft(dir.path(), ta);
    auto ref_model = build_model(merged_weights(base, ta, k.user_scale), false);
    const auto ref = run_logits(ref_model, {}, toks, 9);
    const auto plain = run_logits(pairs, {}, toks, 9);
    // The adapter changes the model a lot (the comparison below is not vacuous).
    CHECK(diff(plain, ref).rel_rms > 0.1);
    for (const auto& m : {pairs, halves}) {
      CAPTURE(m->impl().source);
      auto ad = load(*m, dir.path());
      CHECK(ad->rank() == k.r);
      CHECK(ad->n_matrices() == size_t(7 * c.n_layers));
      CHECK(ad->targets() == std::vector<std::string>{"q", "k", "v", "o", "gate", "up", "down"});
      for (int threads : {1, 2}) {
        const Diff d = diff(run_logits(m, {{ad, k.user_scale}}, toks, 9, threads), ref);
        CAPTURE(threads, d.max_abs, d.rel_rms);
        CHECK(d.rel_rms < 2e-5);
      }
    }
  }
}

TEST_CASE("adapters on q8 and q4 bases stay within quantization error of the merged reference",
          "[lib][lora]") {
  const ModelConfig c = lora_test_config();
  const Llama2cWeights base = random_llama2c_weights(c, 22);
  auto f32 = build_model(base, false);
  TempDir dir;
  const TestAdapter ta = make_adapter(c, 16, 24.0f, false, 7);
  write_peft(dir.path(), ta, FileDType::kF16);
  const auto toks = tokens(14, 4);
  const auto ref = run_logits(build_model(merged_weights(base, ta, 1.0f), false), {}, toks, 9);
  const auto ref_base = run_logits(f32, {}, toks, 9);
  for (DType t : {DType::kQ8, DType::kQ4}) {
    auto q = quantized_model(*f32, t);
    auto ad = load(*q, dir.path());
    const double quant_err = diff(run_logits(q, {}, toks, 9), ref_base).rel_rms;
    const double err = diff(run_logits(q, {{ad, 1.0f}}, toks, 9), ref).rel_rms;
    std::printf("lora: %s base: relative RMS logit error with adapter %.4f (base alone %.4f)\n",
                to_string(t), err, quant_err);
    CAPTURE(to_string(t), err, quant_err);
    CHECK(err < 2.0 * quant_err + 2e-3);
    CHECK(err < (t == DType::kQ8 ? 0.05 : 0.3));
  }
}

TEST_CASE("GGUF and piq adapters give the PEFT adapter's logits", "[lib][lora]") {
  const ModelConfig c = lora_test_config();
  const Llama2cWeights base = random_llama2c_weights(c, 23);
  auto pairs = build_model(base, false);
  auto halves = build_model(base, true);
  TempDir dir;
  const TestAdapter ta = make_adapter(c, 8, 12.0f, false, 9);
  write_peft(dir.path(), ta);
  write_gguf_adapter(dir.file("lora.gguf"), c, ta);
  const auto toks = tokens(12, 5);
  for (const auto& m : {pairs, halves}) {
    CAPTURE(m->impl().source);
    const auto ref = run_logits(m, {{load(*m, dir.path()), 1.0f}}, toks, 8);
    CHECK(diff(run_logits(m, {{load(*m, dir.file("lora.gguf")), 1.0f}}, toks, 8), ref).rel_rms < 2e-5);
    // .piq written for this model's layout, f16 and int8, loaded back (also into the other model).
    auto f32ad = load(*m, dir.path());
    write_lora_piq(*f32ad, dir.file("a16.piq"), LoraFileType::kF16);
    write_lora_piq(*f32ad, dir.file("a8.piq"), LoraFileType::kI8);
    for (const auto& m2 : {pairs, halves}) {
      const auto ref2 = run_logits(m2, {{load(*m2, dir.path()), 1.0f}}, toks, 8);
      const double e16 = diff(run_logits(m2, {{load(*m2, dir.file("a16.piq")), 1.0f}}, toks, 8), ref2).rel_rms;
      const double e8 = diff(run_logits(m2, {{load(*m2, dir.file("a8.piq")), 1.0f}}, toks, 8), ref2).rel_rms;
      CAPTURE(e16, e8);
      CHECK(e16 < 2e-3);
      CHECK(e8 < 3e-2);
    }
  }
  // The adapter file given as adapter_model.safetensors (config beside it) or the config itself.
  auto a1 = load(*pairs, dir.file("adapter_model.safetensors"));
  auto a2 = load(*pairs, dir.file("adapter_config.json"));
  CHECK(a1->n_matrices() == a2->n_matrices());
}

TEST_CASE("merge_lora adds scale B A into f32 weights by piquant tensor name", "[lib][lora]") {
  const ModelConfig c = lora_test_config();
  const Llama2cWeights base = random_llama2c_weights(c, 24);
  TempDir dir;
  const TestAdapter ta = make_adapter(c, 8, 4.0f, true, 11, {LoraTarget::kQ, LoraTarget::kDown});
  write_peft(dir.path(), ta);
  LoraLoadOptions o;
  o.storage = LoraStorage::kF32;
  auto ad = load_lora_for(c, RopeLayout::kPairs, dir.path(), o);
  Llama2cWeights got = base;
  const Llama2cWeights want = merged_weights(base, ta, 0.5f);
  int merged = 0;
  for (int l = 0; l < c.n_layers; ++l) {
    for (LoraTarget t : all_targets()) {
      const std::string name = "blk." + std::to_string(l) + "." + gguf_stem(t) + ".weight";
      merged += merge_lora(*ad, 0.5f, name, lora_out_dim(c, t), lora_in_dim(c, t),
                           weight_matrix(got, l, t));
    }
  }
  CHECK(merged == 2 * c.n_layers);
  CHECK_FALSE(merge_lora(*ad, 1.0f, "output.weight", 300, 64, got.wcls.data()));
  double worst = 0;
  for (size_t i = 0; i < got.wq.size(); ++i) worst = std::max(worst, double(std::fabs(got.wq[i] - want.wq[i])));
  for (size_t i = 0; i < got.w2.size(); ++i) worst = std::max(worst, double(std::fabs(got.w2[i] - want.w2[i])));
  CHECK(worst < 1e-6);
  CHECK(got.wk == base.wk);
  CHECK_THROWS_WITH(merge_lora(*ad, 1.0f, "blk.0.attn_q.weight", 64, 32, got.wq.data()),
                    Catch::Contains("expects [64, 64]"));
}

TEST_CASE("sessions with different adapters interleaved give the tokens they give alone",
          "[lib][lora][session]") {
  const ModelConfig c = lora_test_config();
  auto model = build_model(random_llama2c_weights(c, 25), false);
  TempDir da, db;
  write_peft(da.path(), make_adapter(c, 8, 16.0f, false, 1));
  write_peft(db.path(), make_adapter(c, 16, 16.0f, false, 2));
  auto A = load(*model, da.path());
  auto B = load(*model, db.path());
  const std::vector<TokenId> prompt = {1, 20, 30, 40};
  auto greedy = [](const float* l) {
    return static_cast<TokenId>(std::max_element(l, l + 300) - l);
  };
  auto alone = [&](const std::vector<AdapterChoice>& set) {
    Session s(model, SessionOptions{64, 1});
    s.set_adapters(set);
    std::vector<TokenId> out;
    const float* l = s.eval(prompt);
    for (int i = 0; i < 10; ++i) {
      out.push_back(greedy(l));
      l = s.eval({out.back()});
    }
    return out;
  };
  const auto ta = alone({{A, 1.0f}}), tb = alone({{B, 1.0f}}), t0 = alone({});
  CHECK(ta != tb);
  CHECK(ta != t0);
  Session sa(model, SessionOptions{64, 1}), sb(model, SessionOptions{64, 2});
  sa.set_adapters({{A, 1.0f}});
  sb.set_adapters({{B, 1.0f}});
  std::vector<TokenId> ga, gb;
  const float* la = sa.eval(prompt);
  ga.push_back(greedy(la));
  const float* lb = sb.eval(prompt);
  gb.push_back(greedy(lb));
  for (int i = 1; i < 10; ++i) {
    ga.push_back(greedy(sa.eval({ga.back()})));
    gb.push_back(greedy(sb.eval({gb.back()})));
  }
  CHECK(ga == ta);
  CHECK(gb == tb);
  // Switching between requests: reset and choose another adapter, no reload.
  sa.reset();
  sa.set_adapters({{B, 1.0f}});
  std::vector<TokenId> g2;
  const float* l2 = sa.eval(prompt);
  for (int i = 0; i < 10; ++i) {
    g2.push_back(greedy(l2));
    l2 = sa.eval({g2.back()});
  }
  CHECK(g2 == tb);
  // No adapters: bit-identical to a session that never had one; scale 0 the same.
  Session plain(model, SessionOptions{64, 1}), off(model, SessionOptions{64, 1});
  off.set_adapters({{A, 0.0f}});
  const float* p = plain.eval(prompt);
  const float* o = off.eval(prompt);
  CHECK(std::memcmp(p, o, 300 * sizeof(float)) == 0);
  // Two adapters at once = the merged sum.
  const auto both = run_logits(model, {{A, 0.5f}, {B, 0.5f}}, prompt, 4);
  const auto only_a = run_logits(model, {{A, 0.5f}}, prompt, 4);
  CHECK(diff(both, only_a).rel_rms > 1e-3);
}

TEST_CASE("decode_batch over sessions with different adapters equals separate runs",
          "[lib][lora][session]") {
  const ModelConfig c = lora_test_config();
  const Llama2cWeights w = random_llama2c_weights(c, 26);
  TempDir da, db;
  write_peft(da.path(), make_adapter(c, 8, 16.0f, false, 3));
  write_peft(db.path(), make_adapter(c, 16, 8.0f, true, 4, {LoraTarget::kV, LoraTarget::kUp}));
  auto f32 = build_model(w, false);
  for (const auto& model : {f32, quantized_model(*f32, DType::kQ4)}) {
    CAPTURE(model->describe());
    auto A = load(*model, da.path());
    auto B = load(*model, db.path());
    const std::vector<std::vector<AdapterChoice>> sets = {{{A, 1.0f}}, {{B, 1.0f}}, {}, {{A, 0.5f}, {B, 1.0f}}};
    const std::vector<std::vector<TokenId>> prompts = {{1, 5, 6}, {1, 99}, {1, 7, 8, 9, 10}, {1, 5, 6}};
    auto greedy = [](const float* l) {
      return static_cast<TokenId>(std::max_element(l, l + 300) - l);
    };
    const int steps = 8;
    std::vector<std::vector<TokenId>> sep(sets.size());
    std::vector<std::vector<float>> sep_logits(sets.size());
    for (size_t i = 0; i < sets.size(); ++i) {
      Session s(model, SessionOptions{64, 2});
      s.set_adapters(sets[i]);
      const float* l = s.eval(prompts[i]);
      for (int k = 0; k < steps; ++k) {
        sep[i].push_back(greedy(l));
        l = s.eval({sep[i].back()});
        sep_logits[i].insert(sep_logits[i].end(), l, l + 300);
      }
    }
    std::vector<std::unique_ptr<Session>> ss;
    std::vector<Session*> ptrs;
    std::vector<TokenId> next;
    for (size_t i = 0; i < sets.size(); ++i) {
      ss.push_back(std::make_unique<Session>(model, SessionOptions{64, 2}));
      ss.back()->set_adapters(sets[i]);
      ptrs.push_back(ss.back().get());
      next.push_back(greedy(ss.back()->eval(prompts[i])));
    }
    std::vector<std::vector<TokenId>> bat(sets.size());
    std::vector<std::vector<float>> bat_logits(sets.size());
    for (int k = 0; k < steps; ++k) {
      for (size_t i = 0; i < sets.size(); ++i) bat[i].push_back(next[i]);
      const auto logits = decode_batch(ptrs, next);
      for (size_t i = 0; i < sets.size(); ++i) {
        bat_logits[i].insert(bat_logits[i].end(), logits[i], logits[i] + 300);
        next[i] = greedy(logits[i]);
      }
    }
    for (size_t i = 0; i < sets.size(); ++i) {
      CAPTURE(i);
      CHECK(bat[i] == sep[i]);
      CHECK(diff(bat_logits[i], sep_logits[i]).max_abs < 2e-3);
      CHECK(ss[i]->position() == int(prompts[i].size()) + steps);
    }
    CHECK(sep[0] != sep[1]);
  }
}

TEST_CASE("decode_batch refuses mismatched input without changing any session",
          "[lib][lora][session][bad-input]") {
  const ModelConfig c = lora_test_config();
  auto m1 = build_model(random_llama2c_weights(c, 27), false);
  auto m2 = build_model(random_llama2c_weights(c, 28), false);
  Session a(m1, SessionOptions{8, 1}), b(m1, SessionOptions{8, 1}), other(m2, SessionOptions{8, 1});
  CHECK_THROWS_WITH(decode_batch({&a, &b}, {1}), Catch::Contains("2 sessions but 1 tokens"));
  CHECK_THROWS_WITH(decode_batch({&a, &a}, {1, 2}), Catch::Contains("repeats"));
  CHECK_THROWS_WITH(decode_batch({&a, &other}, {1, 2}), Catch::Contains("another Model"));
  CHECK_THROWS_WITH(decode_batch({&a, &b}, {1, 300}), Catch::Contains("outside the vocabulary"));
  CHECK_THROWS_WITH(decode_batch({&a, nullptr}, {1, 2}), Catch::Contains("null"));
  CHECK(a.position() == 0);
  a.eval({1, 2, 3, 4, 5, 6, 7, 8});
  CHECK_THROWS_WITH(decode_batch({&b, &a}, {1, 2}), Catch::Contains("full context"));
  CHECK(b.position() == 0);
}

TEST_CASE("bad LoRA adapters give clear errors", "[lib][lora][bad-input]") {
  const ModelConfig c = lora_test_config();
  auto model = build_model(random_llama2c_weights(c, 29), false);
  const TestAdapter ta = make_adapter(c, 8, 16.0f, false, 5);
  auto config_with = [&](const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = nlohmann::json::parse(read_file(dir + "/adapter_config.json"));
    edit(j);
    write_file(dir + "/adapter_config.json", j.dump());
  };
  auto fails = [&](const std::string& path, const std::string& what) {
    CAPTURE(path, what);
    try {
      LoraAdapter::load(*model, path);
      FAIL("no error");
    } catch (const Error& e) {
      INFO(e.what());
      CHECK_THAT(e.what(), Catch::Contains(what));
    }
  };
  SECTION("shapes of another model") {
    ModelConfig big = c;
    big.dim = 96;
    big.head_dim = 24;
    TempDir d;
    write_peft(d.path(), make_adapter(big, 8, 16.0f, false, 5));
    fails(d.path(), "but the model's is [");
  }
  SECTION("unknown module names in the config") {
    TempDir d;
    write_peft(d.path(), ta);
    config_with(d.path(), [](nlohmann::json& j) { j["target_modules"].push_back("qkv_fused"); });
    fails(d.path(), "unknown module 'qkv_fused'");
  }
  SECTION("embeddings and classifier are refused") {
    TempDir d;
    write_peft(d.path(), ta);
    config_with(d.path(), [](nlohmann::json& j) { j["target_modules"].push_back("lm_head"); });
    fails(d.path(), "token embedding or the classifier");
    TempDir d2;
    write_peft(d2.path(), ta);
    SafetensorsWriter w;
    const std::vector<float> z(8 * 64, 0.01f);
    w.add_f32("base_model.model.lm_head.lora_A.weight", {8, 64}, z.data());
    w.write(d2.file("adapter_model.safetensors"));
    fails(d2.path(), "token embedding or the classifier");
  }
  SECTION("an unknown module tensor") {
    TempDir d;
    write_peft(d.path(), ta);
    SafetensorsWriter w;
    const std::vector<float> z(8 * 64, 0.01f);
    w.add_f32("base_model.model.model.layers.0.self_attn.rotary.lora_A.weight", {8, 64}, z.data());
    w.write(d.file("adapter_model.safetensors"));
    fails(d.path(), "module 'rotary'");
  }
  SECTION("lora_A without lora_B, and ranks that disagree with the config") {
    TempDir d;
    write_peft(d.path(), ta);
    SafetensorsWriter w;
    const std::vector<float> z(8 * 64, 0.01f);
    w.add_f32("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", {8, 64}, z.data());
    w.write(d.file("adapter_model.safetensors"));
    fails(d.path(), "has lora_A but no lora_B");
    TempDir d2;
    write_peft(d2.path(), ta);
    config_with(d2.path(), [](nlohmann::json& j) { j["r"] = 4; });
    fails(d2.path(), "adapter_config.json says r = 4");
  }
  SECTION("bad JSON and bad fields") {
    TempDir d;
    write_peft(d.path(), ta);
    write_file(d.file("adapter_config.json"), "{\"r\": 8, \"lora_alpha\": ");
    fails(d.path(), "not valid JSON");
    write_file(d.file("adapter_config.json"), "{\"r\": \"eight\"}");
    fails(d.path(), "\"r\" must be a positive integer");
    write_file(d.file("adapter_config.json"), "{\"r\": 8, \"use_dora\": true}");
    fails(d.path(), "DoRA");
  }
  SECTION("corrupt and truncated files") {
    TempDir d;
    write_peft(d.path(), ta);
    const std::string bytes = read_file(d.file("adapter_model.safetensors"));
    write_file(d.file("adapter_model.safetensors"), bytes.substr(0, bytes.size() - 100));
    fails(d.path(), d.file("adapter_model.safetensors"));
    write_file(d.file("adapter_model.safetensors"), "garbage!garbage!");
    fails(d.path(), d.file("adapter_model.safetensors"));
    fails(d.file("nothing-here"), "no such adapter");
    // .piq adapter with a flipped byte in its tensor data.
    TempDir d2;
    write_peft(d2.path(), ta);
    write_lora_piq(*LoraAdapter::load(*model, d2.path()), d2.file("a.piq"), LoraFileType::kF16);
    std::string piq = read_file(d2.file("a.piq"));
    piq[200] = static_cast<char>(piq[200] ^ 0x40);
    write_file(d2.file("a.piq"), piq);
    fails(d2.file("a.piq"), "checksum");
    write_file(d2.file("b.piq"), piq.substr(0, piq.size() / 2));
    fails(d2.file("b.piq"), "b.piq");
  }
  SECTION("GGUF files that are not adapters, and bad GGUF adapters") {
    TempDir d;
    GgufWriter g;
    g.add("general.architecture", GgufWriteValue::string("llama"));
    g.add("general.type", GgufWriteValue::string("model"));
    g.write(d.file("m.gguf"));
    fails(d.file("m.gguf"), "not \"adapter\"");
    GgufWriter g2;
    g2.add("general.type", GgufWriteValue::string("adapter"));
    const std::vector<float> z(8 * 64, 0.01f);
    g2.add_tensor("token_embd.weight.lora_a", 0, {64, 8},
                  std::string(reinterpret_cast<const char*>(z.data()), z.size() * 4));
    g2.write(d.file("e.gguf"));
    fails(d.file("e.gguf"), "token embedding");
  }
  SECTION("an adapter loaded for another model is refused by set_adapters") {
    ModelConfig big = c;
    big.n_layers = 3;
    auto other = build_model(random_llama2c_weights(big, 1), false);
    TempDir d;
    write_peft(d.path(), ta);
    auto ad = LoraAdapter::load(*model, d.path());
    Session s(other, SessionOptions{8, 1});
    CHECK_THROWS_WITH(s.set_adapters({{ad, 1.0f}}), Catch::Contains("another shape"));
    CHECK_THROWS_WITH(s.set_adapters({{nullptr, 1.0f}}), Catch::Contains("null"));
  }
}
