// piquant-convert --merge-lora (adapter baked into the weights) and --lora (adapter packed as a
// .piq file): the merged file gives the logits of a float reference of the merged weights, and
// the packed adapter applied at run time gives the logits of the PEFT original.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

#include "lib/lora_test_util.hpp"
#include "test_util.hpp"

#if defined(PIQUANT_RUN_PATH) && defined(PIQUANT_CONVERT_PATH)

namespace {

std::vector<float> floats(const std::string& path) {
  const std::string b = piquant::test::read_file(path);
  std::vector<float> f(b.size() / sizeof(float));
  std::memcpy(f.data(), b.data(), f.size() * sizeof(float));
  return f;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  REQUIRE(!a.empty());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::fabs(double(a[i]) - double(b[i])));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return num / den;
}

piquant::test::RunResult logits(const std::string& model, const std::string& out,
                                std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"-m", model, "--prompt-ids", "1,40,50,7,99", "--ids", "--temp",
                                   "0", "-n", "3", "-t", "1", "--logits-out", out};
  args.insert(args.end(), extra.begin(), extra.end());
  return piquant::test::run_program(PIQUANT_RUN_PATH, args, 120);
}

}  // namespace

TEST_CASE("piquant-convert --merge-lora and --lora on a llama2.c base", "[e2e][lora][convert]") {
  using namespace piquant::test;
  const piquant::ModelConfig c = lora_test_config();
  const piquant::Llama2cWeights base = piquant::random_llama2c_weights(c, 21);
  const TestAdapter adapter = make_adapter(c, 8, 24.0f, false, 22);
  TempDir dir;
  piquant::write_llama2c(dir.file("base.bin"), base);
  piquant::write_llama2c(dir.file("reference.bin"), merged_weights(base, adapter, 0.5f));
  TempDir adapter_dir;
  write_peft(adapter_dir.path(), adapter);

  // Merged at conversion (f32, so the only difference is float rounding).
  const auto conv = run_program(PIQUANT_CONVERT_PATH,
                                {dir.file("base.bin"), "-o", dir.file("merged.piq"), "--type",
                                 "f32", "--merge-lora", adapter_dir.path(), "--lora-scale",
                                 "0.5", "-q"},
                                120);
  INFO(conv.err);
  REQUIRE(conv.exit_code == 0);
  REQUIRE(logits(dir.file("reference.bin"), dir.file("ref.f32")).exit_code == 0);
  const auto merged = logits(dir.file("merged.piq"), dir.file("merged.f32"));
  INFO(merged.err);
  REQUIRE(merged.exit_code == 0);
  const double merged_diff = max_rel_diff(floats(dir.file("merged.f32")), floats(dir.file("ref.f32")));
  CAPTURE(merged_diff);
  CHECK(merged_diff < 1e-4);
  // Without the adapter the logits are clearly different (the check above can fail).
  REQUIRE(logits(dir.file("base.bin"), dir.file("base.f32")).exit_code == 0);
  CHECK(max_rel_diff(floats(dir.file("base.f32")), floats(dir.file("ref.f32"))) > 1e-2);

  // Packed into a .piq adapter (f16 A/B) and applied at run time, vs the PEFT original.
  const auto pack = run_program(PIQUANT_CONVERT_PATH,
                                {dir.file("base.bin"), "-o", dir.file("adapter.piq"), "--lora",
                                 adapter_dir.path()},
                                120);
  INFO(pack.err);
  REQUIRE(pack.exit_code == 0);
  REQUIRE(logits(dir.file("base.bin"), dir.file("peft.f32"),
                 {"--lora", adapter_dir.path(), "--lora-scale", "0.5"})
              .exit_code == 0);
  const auto packed = logits(dir.file("base.bin"), dir.file("packed.f32"),
                             {"--lora", dir.file("adapter.piq"), "--lora-scale", "0.5"});
  INFO(packed.err);
  REQUIRE(packed.exit_code == 0);
  const double packed_diff = max_rel_diff(floats(dir.file("packed.f32")), floats(dir.file("peft.f32")));
  CAPTURE(packed_diff);
  CHECK(packed_diff < 1e-2);  // f16 A and B
  CHECK(max_rel_diff(floats(dir.file("peft.f32")), floats(dir.file("ref.f32"))) < 1e-4);

  // A bad adapter is a clear error.
  const auto bad = run_program(PIQUANT_CONVERT_PATH,
                               {dir.file("base.bin"), "-o", dir.file("x.piq"), "--merge-lora",
                                dir.file("missing")},
                               60);
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Contains("piquant-convert: error:") && Catch::Contains("missing"));
}

#endif
