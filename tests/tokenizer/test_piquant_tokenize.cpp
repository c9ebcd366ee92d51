// The piquant-tokenize tool: ids as a JSON array, --decode, BOS flags, --special, errors.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "test_util.hpp"
#include "tokenizer_fixtures.hpp"

#ifdef PIQUANT_TOKENIZE_PATH
namespace {

piquant::test::RunResult tokenize(const std::vector<std::string>& args) {
  return piquant::test::run_program(PIQUANT_TOKENIZE_PATH, args);
}

}  // namespace

TEST_CASE("piquant-tokenize encodes to a JSON array and decodes ids back", "[tokenizer][tools]") {
  piquant::test::TempDir dir;
  const std::string model = dir.file("tokenizer.model");
  piquant::test::write_file(model, piquant::test::tiny_spm_model());
  auto r = tokenize({model, "hello hi"});
  CAPTURE(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "[1, 269, 265, 108]\n");
  CHECK(tokenize({model, "--no-bos", "hello hi"}).out == "[269, 265, 108]\n");
  CHECK(tokenize({model, "--special", "<s>hello"}).out == "[1, 1, 269]\n");
  CHECK(tokenize({model, "--decode", "[1, 269, 265, 108]"}).out == "hello hi\n");
  CHECK(tokenize({model, "--decode", "1", "269", "2"}).out == "hello\n");
  CHECK(tokenize({model, "--decode", "--special", "1,269,2"}).out == "<s>hello</s>\n");

  // vocab.json with merges.txt beside it: no BOS by default, --bos has none to add.
  piquant::test::write_file(dir.file("vocab.json"), piquant::test::tiny_vocab_json());
  piquant::test::write_file(dir.file("merges.txt"), piquant::test::tiny_merges_txt());
  CHECK(tokenize({dir.file("vocab.json"), " the the"}).out == "[258, 258]\n");
  CHECK(tokenize({dir.file("vocab.json"), "--special", "the<|endoftext|>"}).out ==
        "[116, 257, 261]\n");
  // llama2.c tokenizer.bin and tiktoken ranks.
  piquant::test::write_file(dir.file("tokenizer.bin"), piquant::test::tiny_llama2c_tokenizer());
  CHECK(tokenize({dir.file("tokenizer.bin"), "hi hi"}).out == "[1, 264, 264]\n");
  piquant::test::write_file(dir.file("ranks.tiktoken"), piquant::test::tiny_tiktoken());
  CHECK(tokenize({dir.file("ranks.tiktoken"), "hello hello"}).out == "[259, 260]\n");
  CHECK(tokenize({dir.file("ranks.tiktoken"), "--bos", "hello hello"}).out == "[259, 260]\n");
}

TEST_CASE("piquant-tokenize reproduces the reference ids of every shared case",
          "[tokenizer][tools][shared]") {
  for (const char* fam : {"llama2-spm/tokenizer.model", "gpt2/vocab.json",
                          "cl100k/cl100k_base.tiktoken"}) {
    const std::string path = piquant::test::shared_file(std::string("tokenizers/") + fam);
    if (path.empty()) return;
    const std::string dir = path.substr(0, path.rfind('/'));
    const auto cases = nlohmann::json::parse(piquant::test::read_file(dir + "/cases.json"));
    // Three cases per family (one under an emulator) keep this quick; the library test covers
    // them all.
    const int every = std::string(PIQUANT_TEST_EMULATOR).empty() ? 14 : 1000;
    int k = 0;
    for (const auto& c : cases.at("cases")) {
      if (k++ % every != 0) continue;
      const std::string text = c.at("text").get<std::string>();
      auto r = tokenize({path, "--", text});
      CAPTURE(fam, text, r.err);
      REQUIRE(r.exit_code == 0);
      CHECK(nlohmann::json::parse(r.out) == c.at("ids"));
      auto d = tokenize({path, "--decode", r.out});
      REQUIRE(d.exit_code == 0);
      if (c.value("roundtrip", true)) CHECK(d.out == text + "\n");
    }
  }
}

TEST_CASE("piquant-tokenize reports bad input on stderr with a non-zero exit",
          "[tokenizer][tools]") {
  piquant::test::TempDir dir;
  const std::string model = dir.file("tokenizer.model");
  piquant::test::write_file(model, piquant::test::tiny_spm_model());
  auto expect_error = [&](const std::vector<std::string>& args, const char* what) {
    auto r = tokenize(args);
    CAPTURE(args, r.out, r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.out.empty());
    CHECK(r.err.find(what) != std::string::npos);
  };
  expect_error({dir.file("missing.model"), "x"}, "missing.model");
  expect_error({model, "--decode", "1 99999"}, "token id 99999 is outside the vocabulary");
  expect_error({model, "--decode", "1 x"}, "bad token id");
  expect_error({model, "--frobnicate", "x"}, "unknown option '--frobnicate'");
  expect_error({model}, "no TEXT given");
  expect_error({}, "no tokenizer file given");
  const std::string spm = piquant::test::tiny_spm_model();
  piquant::test::write_file(dir.file("cut.model"), spm.substr(0, spm.size() - 10));
  expect_error({dir.file("cut.model"), "x"}, "cut.model");
}
#endif
