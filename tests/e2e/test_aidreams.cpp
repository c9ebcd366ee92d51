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
