// The trained aidreams260K llama2.c model against its float64 reference run.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <piquant/piquant.hpp>

#include "test_util.hpp"

TEST_CASE("aidreams260K greedy ids and first logits match the float64 reference", "[e2e]") {
  const std::string model_path = piquant::test::shared_file("models/aidreams260K.bin");
  if (model_path.empty()) return;
  const std::string dir = piquant::test::shared_dir() + "/models/";
  const auto expected =
      nlohmann::json::parse(piquant::test::read_file(dir + "aidreams260K.expected.json"));
  piquant::LoadOptions lo;
  lo.tokenizer_path = dir + "aidreams260K.tok512.bin";
  auto model = piquant::Model::load(model_path, lo);
  piquant::Session session(model, piquant::SessionOptions{0, 1});
  const std::vector<int> want = expected["greedy_ids"].get<std::vector<int>>();
  std::vector<piquant::TokenId> got = {want[0]};
  for (size_t p = 0; p + 1 < want.size(); ++p) {
    const float* logits = session.eval({got.back()});
    if (p < 4) {
      const auto ref = expected["logits_first_positions"][p].get<std::vector<double>>();
      REQUIRE(ref.size() == static_cast<size_t>(model->config().vocab_size));
      for (size_t i = 0; i < ref.size(); ++i) {
        CAPTURE(p, i);
        REQUIRE(std::abs(static_cast<double>(logits[i]) - ref[i]) <= 1e-4);
      }
    }
    got.push_back(piquant::argmax(logits, static_cast<size_t>(model->config().vocab_size)));
  }
  CHECK(std::vector<int>(got.begin(), got.end()) == want);
  const std::string text = model->tokenizer().decode(got);
  CHECK(text.rfind("\"Echoes of vectors unfold", 0) == 0);
}

TEST_CASE("piquant-run --temp 0 --ids prints aidreams260K's greedy ids and text mode its text",
          "[e2e]") {
#ifndef PIQUANT_RUN_PATH
  WARN("skipped: piquant-run is not built (PIQUANT_BUILD_EXAMPLES=OFF)");
#else
  const std::string model_path = piquant::test::shared_file("models/aidreams260K.bin");
  if (model_path.empty()) return;
  const std::string dir = piquant::test::shared_dir() + "/models/";
  const auto expected =
      nlohmann::json::parse(piquant::test::read_file(dir + "aidreams260K.expected.json"));
  // greedy_ids is BOS + 100 generated ids: -n 99 must print its first 100, -n 100 all of it.
  const std::vector<int> want = expected["greedy_ids"].get<std::vector<int>>();
  REQUIRE(want.size() == 101);
  for (const int n : {99, 100}) {
    std::string want_text;
    for (int i = 0; i <= n; ++i) want_text += (i ? " " : "") + std::to_string(want[i]);
    auto r = piquant::test::run_program(
        PIQUANT_RUN_PATH, {"-m", model_path, "-z", dir + "aidreams260K.tok512.bin", "--temp", "0",
                           "-n", std::to_string(n), "--ids"});
    CAPTURE(n, r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out == want_text + "\n");
    CHECK(r.err.find("tokens/s") != std::string::npos);
  }

  auto r = piquant::test::run_program(PIQUANT_RUN_PATH, {"-m", model_path, "-z",
                                                    dir + "aidreams260K.tok512.bin", "--temp",
                                                    "0", "-n", "99"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.rfind("\"Echoes of vectors unfold", 0) == 0);
#endif
}
