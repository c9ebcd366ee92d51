// Continuing a text over several Session::generate calls (issue 17, item 8): BOS only at the
// start, so three calls match one call with the concatenated text.
#include <catch2/catch.hpp>
#include <piquant/piquant.hpp>

#include <algorithm>
#include <string>

TEST_CASE("Session::generate continues a text without a second BOS", "[lib][session]") {
  piquant::SyntheticModelOptions demo;
  demo.demo_text = true;  // text that depends on the context (the default model repeats a token)
  demo.config.dim = 64;   // small: seconds under qemu too
  demo.config.hidden_dim = 128;
  demo.config.n_layers = 2;
  demo.config.n_heads = 2;
  demo.config.max_seq_len = 128;
  const auto model = piquant::Model::synthetic(demo);
  const piquant::TokenId bos = model->tokenizer().bos_id();
  REQUIRE(bos >= 0);
  piquant::GenerateOptions feed;  // prompt only
  feed.max_tokens = 0;
  piquant::GenerateOptions gen;
  gen.max_tokens = 8;
  gen.sampler.temperature = 0;
  gen.stop_at_end_of_generation = false;

  piquant::Session pieces(model);
  std::vector<piquant::TokenId> fed;
  // SentencePiece puts its dummy-prefix space before each part, as between the words.
  for (const char* part : {"Once upon a time", "there was", "a little girl"}) {
    const bool last = std::string(part) == "a little girl";
    const auto r = pieces.generate(part, nullptr, last ? gen : feed);
    if (!fed.empty()) {
      CHECK(std::count(r.prompt_ids.begin(), r.prompt_ids.end(), bos) == 0);
    }
    fed.insert(fed.end(), r.prompt_ids.begin(), r.prompt_ids.end());
    if (last) {
      piquant::Session whole(model);
      const auto one = whole.generate("Once upon a time there was a little girl", nullptr, gen);
      CHECK(one.prompt_ids == fed);
      CHECK(one.generated_ids == r.generated_ids);
      CHECK(one.text == r.text);
    }
  }
  CHECK(std::count(fed.begin(), fed.end(), bos) == 1);
  // Asking for a BOS explicitly still gets one.
  piquant::GenerateOptions with_bos = feed;
  with_bos.encode.add_bos = true;
  const auto r = pieces.generate("again", nullptr, with_bos);
  REQUIRE(!r.prompt_ids.empty());
  CHECK(r.prompt_ids.front() == bos);
}
