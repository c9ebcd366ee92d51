// piquant-run --lora / --lora-scale on the built-in demo model: an adapter changes the greedy
// tokens, scale 0 gives the base model's, a bad adapter fails with one clear line.
#include <catch2/catch.hpp>

#include "lib/lora_test_util.hpp"
#include "test_util.hpp"

#ifdef PIQUANT_RUN_PATH

namespace {

piquant::test::RunResult run(std::vector<std::string> extra) {
  std::vector<std::string> args = {"--prompt-ids", "1,40,50", "--ids", "--temp", "0",
                                   "-n",           "8",       "-t",    "1"};
  args.insert(args.end(), extra.begin(), extra.end());
  return piquant::test::run_program(PIQUANT_RUN_PATH, args, 120);
}

}  // namespace

TEST_CASE("piquant-run applies --lora adapters with --lora-scale", "[e2e][lora]") {
  // The demo model piquant-run runs without -m: Model::synthetic() defaults, seed 1.
  piquant::ModelConfig c;
  c.dim = 288;
  c.hidden_dim = 768;
  c.n_layers = 6;
  c.n_heads = 6;
  c.n_kv_heads = 6;
  c.head_dim = 48;
  c.vocab_size = 512;
  c.max_seq_len = 1024;
  piquant::test::TempDir dir;
  piquant::test::write_peft(dir.path(), piquant::test::make_adapter(c, 8, 16.0f, false, 3));
  // Compare the logits of every position (the demo model's greedy text is often one token).
  using piquant::test::read_file;
  const auto base = run({"--logits-out", dir.file("base.f32")});
  REQUIRE(base.exit_code == 0);
  const auto with = run({"--lora", dir.path(), "--logits-out", dir.file("with.f32")});
  INFO(with.err);
  REQUIRE(with.exit_code == 0);
  CHECK(read_file(dir.file("with.f32")).size() == read_file(dir.file("base.f32")).size());
  CHECK(read_file(dir.file("with.f32")) != read_file(dir.file("base.f32")));
  CHECK_THAT(with.err, Catch::Contains("adapter LoRA r 8 alpha 16"));
  const auto zero = run({"--lora", dir.path(), "--lora-scale", "0", "--logits-out",
                         dir.file("zero.f32")});
  REQUIRE(zero.exit_code == 0);
  CHECK(zero.out == base.out);
  CHECK(read_file(dir.file("zero.f32")) == read_file(dir.file("base.f32")));
  const auto bad = run({"--lora", dir.file("missing")});
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.err, Catch::Contains("piquant-run: error:") && Catch::Contains("missing"));
  const auto order = run({"--lora-scale", "2"});
  CHECK(order.exit_code == 1);
  CHECK_THAT(order.err, Catch::Contains("must follow a --lora"));
  const auto help = piquant::test::run_program(PIQUANT_RUN_PATH, {"--help"}, 60);
  CHECK_THAT(help.out, Catch::Contains("--lora FILE") && Catch::Contains("--lora-scale S"));
}

#endif
