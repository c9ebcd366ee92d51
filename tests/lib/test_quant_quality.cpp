// Quantization quality, measured: KL divergence of the next-token distributions and top-1
// agreement against the f32 model over a fixed text, for every type and preset, with plain
// absmax, with the scale search, and with calibration. On the trained aidreams260K model the
// calibrated q4 must beat plain absmax q4. The printed tables are docs/quantization.md's.
#include <catch2/catch.hpp>
#include <cstdio>

#include "convert/convert.hpp"
#include "convert_test_util.hpp"
#include "load/llama2c_model.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace {

using namespace piquant;

// The evaluation text and a different calibration text (calibrating on the evaluation text
// would flatter the numbers).
const char* kEvalText =
    "Echoes of vectors unfold, a gentle hum of precision. The small robot watched the river "
    "carry leaves past the old mill, counting each one and wondering where the water went "
    "after the bend. Its sister, a tin kettle with a crooked spout, sang softly about rain.";
const char* kCalibText =
    "Once upon a time there was a quiet lighthouse at the edge of a grey sea. Every night it "
    "turned its lamp toward ships it could not see, and every morning the gulls told it which "
    "boats had come home. The keeper wrote numbers in a book: wind, tide, the colour of the "
    "sky. In winter the numbers grew strange, and the lighthouse learned to listen to the "
    "storms, to the patient machines of weather that hummed beneath the clouds, to the soft "
    "logic of waves that rose and fell and rose again. A child visited with a paper map and "
    "asked where the edge of the world was. The keeper smiled and pointed at the horizon.";

struct Row {
  std::string type, mode;
  test::Agreement a;
  double bpw;
};

struct Mode {
  const char* name;
  bool search, calibrate;
};
constexpr Mode kModes[] = {
    {"absmax", false, false}, {"search", true, false}, {"calibrated", true, true}};

std::vector<Row> measure(const std::function<std::unique_ptr<ModelSource>()>& open,
                         const std::vector<TokenId>& eval, const std::vector<TokenId>& calib,
                         const std::vector<std::string>& types) {
  test::TempDir dir;
  auto src = open();
  const size_t vocab = static_cast<size_t>(src->config().vocab_size);
  convert_model(*src, dir.file("f32.piq"), [] {
    ConvertOptions o;
    o.type = "f32";
    o.progress = false;
    return o;
  }());
  const auto ref = test::session_logits(Model::load(dir.file("f32.piq")), eval);
  std::vector<Row> rows;
  for (const std::string& type : types) {
    for (const Mode& m : kModes) {
      if ((type == "f16") && m.calibrate) continue;  // nothing to calibrate
      ConvertOptions o;
      o.type = type;
      o.progress = false;
      o.threads = 2;
      o.search = m.search;
      if (m.calibrate) o.calibration_tokens = calib;
      o.calibration_window = src->config().max_seq_len;
      const ConvertReport rep = convert_model(*src, dir.file("q.piq"), o);
      const auto got = test::session_logits(Model::load(dir.file("q.piq")), eval);
      rows.push_back(
          {type, m.name, test::compare_logits(ref, got, vocab), rep.matrix_bits_per_weight});
      if (type == "f16") break;
    }
  }
  return rows;
}

void print(const char* title, const std::vector<Row>& rows, size_t positions) {
  std::printf(
      "\n%s (%zu positions)\n| type | mode | bits/weight (matrices) | KL vs f32 (nats) | top-1 "
      "agreement |\n"
      "| --- | --- | --- | --- | --- |\n",
      title, positions);
  for (const Row& r : rows) {
    std::printf("| %s | %s | %.2f | %.6f | %.1f%% |\n", r.type.c_str(), r.mode.c_str(), r.bpw,
                r.a.kl, 100.0 * r.a.top1);
  }
}

// Under qemu (cross-build tests) the full tables take minutes: measure a representative subset.
bool emulated() { return std::string(PIQUANT_TEST_EMULATOR).size() > 0; }

const Row& find(const std::vector<Row>& rows, const std::string& type, const std::string& mode) {
  for (const Row& r : rows) {
    if (r.type == type && r.mode == mode) return r;
  }
  FAIL("no row " << type << " " << mode);
  return rows.front();
}

}  // namespace

TEST_CASE("quantization quality on the trained aidreams260K model", "[convert][quality][e2e]") {
  const std::string model = test::shared_file("models/aidreams260K.bin");
  if (model.empty()) return;
  const std::string tok = test::shared_dir() + "/models/aidreams260K.tok512.bin";
  auto open = [&] { return open_model_source(model, tok); };
  const Tokenizer t = *open()->tokenizer();
  std::vector<TokenId> eval = t.encode(kEvalText);
  eval.resize(std::min<size_t>(eval.size(), 128));
  // Calibration: the calibration text, then text the f32 model writes itself (sampled, seeded):
  // in-distribution for a model trained on a narrow corpus, and never the evaluation text.
  std::vector<TokenId> calib = t.encode(kCalibText);
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
  const auto rows =
      measure(open, eval, calib,
              emulated() ? std::vector<std::string>{"f16", "q8", "q4"}
                         : std::vector<std::string>{"f16", "q8", "q4", "q4m", "q4_mix", "q4m_mix"});
  print("aidreams260K (dim 64, ffn 172: w_down stays f32)", rows, eval.size());
  const Row& absmax = find(rows, "q4", "absmax");
  const Row& calibrated = find(rows, "q4", "calibrated");
  CHECK(calibrated.a.kl < absmax.a.kl);
  CHECK(find(rows, "q8", "search").a.kl < find(rows, "q4", "search").a.kl);
  CHECK(find(rows, "f16", "absmax").a.top1 > 0.95);
}

TEST_CASE("quantization quality on seeded random models", "[convert][quality]") {
  ModelConfig c;
  c.dim = 128;
  c.hidden_dim = 352;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 32;
  c.vocab_size = 512;
  c.max_seq_len = 128;
  c.tied_classifier = false;
  // Seeds 1 and 2: plain random weights. Seed 3: the same kind of model with a few outlier
  // activation channels (RMSNorm gains of 4 channels x 12), as trained LLMs have; that is where
  // importance-weighted quantization is meant to help.
  for (uint64_t seed : emulated() ? std::vector<uint64_t>{3} : std::vector<uint64_t>{1, 2, 3}) {
    auto open = [&] {
      Llama2cWeights w = random_llama2c_weights(c, seed);
      if (seed == 3) {
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
    };
    std::vector<TokenId> eval, calib;
    test::Rng64 rng{seed * 77};
    for (int i = 0; i < 96; ++i)
      eval.push_back(static_cast<TokenId>((rng.s = rng.s * 6364136223846793005ULL + 1) >> 55));
    for (int i = 0; i < 256; ++i)
      calib.push_back(static_cast<TokenId>((rng.s = rng.s * 6364136223846793005ULL + 1) >> 55));
    const auto rows =
        measure(open, eval, calib,
                emulated() ? std::vector<std::string>{"q8", "q4", "q4m"}
                           : std::vector<std::string>{"f16", "q8", "q4", "q4m", "q4_mix"});
    print(("random model, seed " + std::to_string(seed) + (seed == 3 ? ", outlier channels" : ""))
              .c_str(),
          rows, eval.size());
    // Sanity: more bits, closer to f32.
    CHECK(find(rows, "q8", "search").a.kl < find(rows, "q4", "search").a.kl);
    if (!emulated())
      CHECK(find(rows, "q4_mix", "search").a.kl < find(rows, "q4", "search").a.kl * 1.5);
    if (seed == 3) {  // outlier channels: calibration must pay off
      CHECK(find(rows, "q4", "calibrated").a.kl < find(rows, "q4", "search").a.kl);
      CHECK(find(rows, "q4", "calibrated").a.kl < find(rows, "q4", "absmax").a.kl);
      CHECK(find(rows, "q4m", "calibrated").a.kl < find(rows, "q4m", "search").a.kl);
    }
  }
}
