#pragma once
// Helpers for the quantization tests (test_quant_quality.cpp, test_kquant_quality.cpp,
// test_convert_kquant.cpp): seeded small models, with or without outlier activation channels;
// seeded token streams; the rows of the quality tables (KL divergence and top-1 agreement against
// the f32 model) and the Markdown table docs/quantization.md holds; calibration text a model
// writes itself.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "convert/source.hpp"
#include "convert_test_util.hpp"
#include "load/llama2c_model.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace piquant::test {

/// A seeded llama2.c-style random model: dim / head_dim heads, half as many KV heads, a
/// vocabulary of 512, an untied classifier and the demo tokenizer. `outliers`: the RMSNorm gains
/// of channels 5, 33, 70 and 101 are x 12 in every layer, the few outlier activation channels
/// trained LLMs have (where importance-weighted quantization is meant to pay off).
struct SmallModel {
  int dim = 256, hidden = 256, layers = 1;
  int head_dim = 64, max_seq_len = 128;
  uint64_t seed = 9;
  bool outliers = false;
};

inline ModelConfig small_model_config(const SmallModel& m) {
  ModelConfig c;
  c.dim = m.dim;
  c.hidden_dim = m.hidden;
  c.n_layers = m.layers;
  c.n_heads = m.dim / m.head_dim;
  c.n_kv_heads = c.n_heads / 2;
  c.head_dim = m.head_dim;
  c.vocab_size = 512;
  c.max_seq_len = m.max_seq_len;
  c.tied_classifier = false;
  return c;
}

inline std::unique_ptr<ModelSource> small_model_source(const SmallModel& m) {
  const ModelConfig c = small_model_config(m);
  Llama2cWeights w = random_llama2c_weights(c, m.seed);
  if (m.outliers) {
    for (size_t l = 0; l < size_t(c.n_layers); ++l) {
      for (size_t ch : {5, 33, 70, 101}) {
        w.rms_att[l * size_t(c.dim) + ch] *= 12.0f;
        w.rms_ffn[l * size_t(c.dim) + ch] *= 12.0f;
      }
    }
  }
  auto impl = model_from_llama2c_weights(std::move(w), "random");
  impl->tokenizer = Tokenizer(make_demo_tokenizer(c.vocab_size));
  return model_impl_source(std::move(impl), {{"format", "test"}});
}

/// Two seeded token streams over ids 0..511: an evaluation text and a different calibration
/// text (calibrating on the evaluation text would flatter the numbers).
inline std::pair<std::vector<TokenId>, std::vector<TokenId>> random_tokens(uint64_t seed,
                                                                           int n_eval,
                                                                           int n_calib) {
  std::vector<TokenId> eval, calib;
  Rng64 rng{seed * 77};
  for (int i = 0; i < n_eval; ++i)
    eval.push_back(static_cast<TokenId>((rng.s = rng.s * 6364136223846793005ULL + 1) >> 55));
  for (int i = 0; i < n_calib; ++i)
    calib.push_back(static_cast<TokenId>((rng.s = rng.s * 6364136223846793005ULL + 1) >> 55));
  return {eval, calib};
}

/// A way to quantize, one column of the tables: its name, the scale search, calibration.
struct QuantMode {
  const char* name;
  bool search, calibrate;
};

struct QualityRow {
  std::string type, mode;
  Agreement a;
  double bpw = 0;  ///< bits per weight of the matrices
};

/// The rows as docs/quantization.md's Markdown table; `note` follows the position count.
inline void print_quality(const std::string& title, const std::vector<QualityRow>& rows,
                          size_t positions, const char* note = "") {
  std::printf(
      "\n%s (%zu positions%s)\n"
      "| type | quantizer | bits/weight (matrices) | KL vs f32 (nats) | top-1 agreement |\n"
      "| --- | --- | --- | --- | --- |\n",
      title.c_str(), positions, note);
  for (const QualityRow& r : rows) {
    std::printf("| %s | %s | %.2f | %.6f | %.1f%% |\n", r.type.c_str(), r.mode.c_str(), r.bpw,
                r.a.kl, 100.0 * r.a.top1);
  }
}

inline const QualityRow& find_row(const std::vector<QualityRow>& rows, const std::string& type,
                                  const std::string& mode) {
  for (const QualityRow& r : rows) {
    if (r.type == type && r.mode == mode) return r;
  }
  FAIL("no row " << type << " " << mode);
  return rows.front();
}

/// The evaluation text of the tables on the trained aidreams260K model.
inline const char* const kQualityEvalText =
    "Echoes of vectors unfold, a gentle hum of precision. The small robot watched the river "
    "carry leaves past the old mill, counting each one and wondering where the water went "
    "after the bend. Its sister, a tin kettle with a crooked spout, sang softly about rain.";

/// Calibration tokens for a model trained on a narrow corpus: `text` encoded, then 6 x 120
/// tokens the f32 model samples itself (temperature 1, seeds 1 to 6): in-distribution, and never
/// the evaluation text.
inline std::vector<TokenId> self_calibration(const std::string& model, const std::string& tok,
                                             const std::string& text) {
  auto f32 = Model::load(model, LoadOptions{tok});
  std::vector<TokenId> calib = f32->tokenizer().encode(text);
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
  return calib;
}

}  // namespace piquant::test
