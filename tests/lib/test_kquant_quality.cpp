// K-quant quality, measured: KL divergence of the next-token distributions and top-1 agreement
// against the f32 model, for Q4_K / Q5_K / Q6_K / Q5_0 / Q5_1 and the q4_k_m / q5_k_m mixes,
// each with plain round-to-nearest, the scale search and the calibrated (importance-weighted)
// search. Path: the weights are quantized by piquant's quantizers, dequantized back to f32 and
// run by the f32 runtime, so only the weight error differs between rows (no activation
// quantization). The fast test checks the orderings issue 18 asks for; the hidden one
// ("[.kquant_table]") prints docs/quantization.md's K-quant tables.
#include <catch2/catch.hpp>
#include <cstdio>
#include <functional>

#include "convert/calibrate.hpp"
#include "convert/convert.hpp"
#include "convert/kquant_plan.hpp"
#include "convert/quantize.hpp"
#include "convert_test_util.hpp"
#include "load/llama2c_model.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace {

using namespace piquant;
namespace k = piquant::kernels;

struct Mode {
  const char* name;
  bool search, calibrate;
};
constexpr Mode kRtn{"rtn", false, false}, kSearch{"search", true, false},
    kCalib{"calibrated", true, true};

struct Row {
  std::string type, mode;
  test::Agreement a;
  double bpw = 0;
};

using Opener = std::function<std::unique_ptr<ModelSource>()>;

// Quantizes one matrix in place (quantize -> dequantize) as `t`; returns its stored bytes.
// `flatten`: rows whose length is not a whole number of the type's blocks are quantized as the
// flat row-major sequence (K-quant super-blocks spanning rows; sub-blocks of 32 stay inside a
// row when cols % 32 == 0): an emulation for models too narrow for 256-value rows.
size_t fake_quantize(const std::string& t, float* w, size_t rows, size_t cols, const float* imp,
                     bool search) {
  QuantizeOptions qo;
  qo.search = search;
  const size_t n = rows * cols;
  std::vector<float> tiled;
  std::vector<uint8_t> q;
  if (t == "q4" || t == "q4m" || t == "q8") {
    const k::WeightType wt = t == "q4" ? k::WeightType::kQ4 : t == "q4m" ? k::WeightType::kQ4M
                                                                        : k::WeightType::kQ8;
    qo.importance = imp;
    q.resize(rows * k::row_bytes(wt, cols));
    quantize_matrix(wt, w, rows, cols, qo, q.data(), nullptr);
    k::dequantize_rows(wt, q.data(), rows, cols, w);
    return q.size();
  }
  const k::KQuant kt = kquant_from_name(t);
  const size_t nv = k::kquant_block_values(kt);
  size_t r = rows, c = cols;
  if (cols % nv != 0) {  // flatten (the caller checked n % nv == 0)
    r = n / nv, c = nv;
    if (imp) {
      tiled.resize(n);
      for (size_t i = 0; i < n; ++i) tiled[i] = imp[i % cols];
    }
  }
  if (imp) {
    // Per-row importance: a flattened matrix needs one vector per flat row.
    q.resize(k::kquant_row_bytes(kt, c) * r);
    for (size_t i = 0; i < r; ++i) {
      QuantizeOptions one = qo;
      one.importance = tiled.empty() ? imp : tiled.data() + i * c;
      quantize_matrix_kquant(kt, w + i * c, 1, c, one,
                             q.data() + i * k::kquant_row_bytes(kt, c), nullptr);
    }
  } else {
    q.resize(k::kquant_row_bytes(kt, c) * r);
    quantize_matrix_kquant(kt, w, r, c, qo, q.data(), nullptr);
  }
  for (size_t i = 0; i < r; ++i)
    k::dequantize_row_kquant(kt, q.data() + i * k::kquant_row_bytes(kt, c), w + i * c, c);
  return q.size();
}

// The f32 model with every matrix replaced by its quantized-dequantized values under `scheme`
// (a type or a mix); a tied classifier is untied so embedding and classifier get their own types
// (as the converter stores them). Returns the model and the matrices' bits per weight.
std::pair<std::shared_ptr<const Model>, double> fake_model(const ModelSource& src,
                                                           const std::string& scheme,
                                                           const Mode& mode,
                                                           const Calibration* calib,
                                                           const test::TempDir& dir) {
  auto impl = load_f32_model(src, nullptr);
  if (impl->config.tied_classifier) {
    auto copy = std::make_shared<std::vector<float>>(impl->tok_embd.f32(),
                                                     impl->tok_embd.f32() + impl->tok_embd.numel());
    impl->storage.push_back(copy);
    impl->output = impl->tok_embd;
    impl->output.name = "output.weight";
    impl->output.data = copy->data();
    impl->config.tied_classifier = false;
  }
  std::vector<Tensor*> mats = {&impl->tok_embd, &impl->output};
  for (LayerWeights& l : impl->layers) {
    for (Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) mats.push_back(t);
  }
  double bits = 0, params = 0;
  for (Tensor* t : mats) {
    const size_t rows = size_t(t->rows), cols = size_t(t->cols);
    params += double(rows * cols);
    const std::string type = kquant_plan_type(scheme, t->name, impl->config.n_layers);
    if (type == "f32") {
      bits += 32.0 * double(rows * cols);
      continue;
    }
    const size_t nv = type == "q4" || type == "q4m" || type == "q8" ? 32
                      : k::kquant_block_values(kquant_from_name(type));
    if (cols % 32 != 0 || (rows * cols) % nv != 0) {  // stays f32 (aidreams' w_down)
      bits += 32.0 * double(rows * cols);
      continue;
    }
    const float* imp = nullptr;
    if (mode.calibrate && t->name != "token_embd.weight") {
      const auto it = calib->importance.find(t->name);
      REQUIRE(it != calib->importance.end());
      imp = it->second.data();
    }
    bits += 8.0 * double(fake_quantize(type, const_cast<float*>(t->f32()), rows, cols, imp,
                                       mode.search));
  }
  auto fsrc = model_impl_source(std::move(impl), {{"format", "test"}});
  ConvertOptions o;
  o.type = "f32";
  o.progress = false;
  const std::string path = dir.file("fq.piq");
  convert_model(*fsrc, path, o);
  return {Model::load(path), bits / params};
}

std::vector<Row> measure(const Opener& open, const std::vector<TokenId>& eval,
                         const std::vector<TokenId>& calib_tokens,
                         const std::vector<std::string>& schemes,
                         const std::vector<Mode>& modes) {
  test::TempDir dir;
  auto src = open();
  const size_t vocab = size_t(src->config().vocab_size);
  auto ref_model = fake_model(*src, "f32", kRtn, nullptr, dir).first;
  const auto ref = test::session_logits(ref_model, eval);
  const Calibration calib =
      calibrate(*src, calib_tokens, src->config().max_seq_len, 2, nullptr);
  std::vector<Row> rows;
  for (const std::string& s : schemes) {
    for (const Mode& m : modes) {
      auto [model, bpw] = fake_model(*src, s, m, &calib, dir);
      rows.push_back({s, m.name, test::compare_logits(ref, test::session_logits(model, eval), vocab),
                      bpw});
    }
  }
  return rows;
}

void print(const std::string& title, const std::vector<Row>& rows, size_t positions) {
  std::printf("\n%s (%zu positions; dequantized weights, f32 runtime)\n"
              "| type | quantizer | bits/weight (matrices) | KL vs f32 (nats) | top-1 |\n"
              "| --- | --- | --- | --- | --- |\n",
              title.c_str(), positions);
  for (const Row& r : rows) {
    std::printf("| %s | %s | %.2f | %.6f | %.1f%% |\n", r.type.c_str(), r.mode.c_str(), r.bpw,
                r.a.kl, 100.0 * r.a.top1);
  }
}

const Row& find(const std::vector<Row>& rows, const std::string& type, const std::string& mode) {
  for (const Row& r : rows) {
    if (r.type == type && r.mode == mode) return r;
  }
  FAIL("no row " << type << " " << mode);
  return rows.front();
}

// The outlier-channel synthetic model: llama2.c-style random weights, dims multiples of 256 so
// every matrix holds whole K-quant super-blocks, the RMSNorm gains of 4 channels x 12.
Opener outlier_model(int dim, int hidden, int layers, uint64_t seed) {
  return [=] {
    ModelConfig c;
    c.dim = dim;
    c.hidden_dim = hidden;
    c.n_layers = layers;
    c.n_heads = dim / 64;
    c.n_kv_heads = dim / 128;
    c.head_dim = 64;
    c.vocab_size = 512;
    c.max_seq_len = 128;
    c.tied_classifier = false;
    Llama2cWeights w = random_llama2c_weights(c, seed);
    for (size_t l = 0; l < size_t(c.n_layers); ++l) {
      for (size_t ch : {5, 33, 70, 101}) {
        w.rms_att[l * size_t(c.dim) + ch] *= 12.0f;
        w.rms_ffn[l * size_t(c.dim) + ch] *= 12.0f;
      }
    }
    auto impl = model_from_llama2c_weights(std::move(w), "random");
    impl->tokenizer = Tokenizer(make_demo_tokenizer(c.vocab_size));
    return model_impl_source(std::move(impl), {{"format", "test"}});
  };
}

std::pair<std::vector<TokenId>, std::vector<TokenId>> random_tokens(uint64_t seed, int n_eval,
                                                                    int n_calib) {
  std::vector<TokenId> eval, calib;
  test::Rng64 rng{seed * 77};
  for (int i = 0; i < n_eval; ++i)
    eval.push_back(static_cast<TokenId>((rng.s = rng.s * 6364136223846793005ULL + 1) >> 55));
  for (int i = 0; i < n_calib; ++i)
    calib.push_back(static_cast<TokenId>((rng.s = rng.s * 6364136223846793005ULL + 1) >> 55));
  return {eval, calib};
}

}  // namespace

TEST_CASE("K-quant quality orderings on a small outlier-channel model", "[convert][kquant][quality]") {
  // Issue 18, must-show 5, as a regression guard: calibrated Q4_K beats round-to-nearest Q4_K
  // (the same 4.5 bits), and the calibrated q4_k_m mix beats the uncalibrated one.
  if (std::string(PIQUANT_TEST_EMULATOR).size() > 0) {
    WARN("skipped under emulation: the quantizers are portable scalar code (runs natively)");
    return;
  }
  const auto [eval, calib] = random_tokens(3, 64, 192);
  const auto rtn = measure(outlier_model(256, 256, 1, 3), eval, calib, {"q4_k"}, {kRtn});
  const auto rows =
      measure(outlier_model(256, 256, 1, 3), eval, calib, {"q4_k", "q4_k_m"}, {kSearch, kCalib});
  print("outlier model dim 256, 1 layer", rtn, eval.size());
  print("", rows, eval.size());
  CHECK(find(rows, "q4_k", "calibrated").a.kl < find(rtn, "q4_k", "rtn").a.kl);
  CHECK(find(rows, "q4_k", "calibrated").bpw <= find(rtn, "q4_k", "rtn").bpw);
  CHECK(find(rows, "q4_k_m", "calibrated").a.kl < find(rows, "q4_k_m", "search").a.kl);
}

TEST_CASE("K-quant quality tables (docs/quantization.md)", "[.kquant_table]") {
  const std::vector<std::string> schemes = {"q4", "q4_k", "q5_0", "q5_1", "q5_k", "q6_k",
                                            "q4_k_m", "q5_k_m"};
  const std::vector<Mode> modes = {kRtn, kSearch, kCalib};
  {
    const auto [eval, calib] = random_tokens(3, 96, 256);
    const auto rows = measure(outlier_model(256, 768, 2, 3), eval, calib, schemes, modes);
    print("outlier-channel synthetic model: dim 256, FFN 768, 2 layers, vocab 512", rows,
          eval.size());
  }
  const std::string model = test::shared_file("models/aidreams260K.bin");
  if (model.empty()) return;
  const std::string tok = test::shared_dir() + "/models/aidreams260K.tok512.bin";
  auto open = [&] { return open_model_source(model, tok); };
  const Tokenizer t = *open()->tokenizer();
  std::vector<TokenId> eval = t.encode(
      "Echoes of vectors unfold, a gentle hum of precision. The small robot watched the river "
      "carry leaves past the old mill, counting each one and wondering where the water went "
      "after the bend. Its sister, a tin kettle with a crooked spout, sang softly about rain.");
  eval.resize(std::min<size_t>(eval.size(), 128));
  std::vector<TokenId> calib = t.encode(
      "Once upon a time there was a quiet lighthouse at the edge of a grey sea. Every night it "
      "turned its lamp toward ships it could not see, and every morning the gulls told it which "
      "boats had come home.");
  {
    auto f32 = Model::load(model, LoadOptions{tok});
    for (uint64_t seed = 1; seed <= 6; ++seed) {
      Session s(f32, SessionOptions{0, 1});
      GenerateOptions go;
      go.max_tokens = 120;
      go.sampler.temperature = 1.0f;
      go.sampler.seed = seed;
      go.stop_at_end_of_generation = false;
      const auto r = s.generate_ids({1}, nullptr, go);
      calib.insert(calib.end(), r.generated_ids.begin(), r.generated_ids.end());
    }
  }
  const auto rows = measure(open, eval, calib, schemes, modes);
  print("aidreams260K (dim 64: K-quant super-blocks span 4 rows; w_down stays f32)", rows,
        eval.size());
}
