// piquant-convert and piquant-inspect as a user runs them: convert, report, inspect, verify,
// run the result with piquant-run; bad invocations fail with one clear line.
#include <catch2/catch.hpp>
#include <piquant/piquant.hpp>

#include "load/llama2c_model.hpp"
#include "format/piq.hpp"
#include "test_util.hpp"

#if defined(PIQUANT_CONVERT_PATH) && defined(PIQUANT_INSPECT_PATH) && defined(PIQUANT_RUN_PATH)

using piquant::test::run_program;

TEST_CASE("piquant-convert, piquant-inspect and piquant-run on a converted llama2.c model",
          "[e2e][convert]") {
  piquant::ModelConfig c;
  c.dim = 128;
  c.hidden_dim = 256;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 32;
  c.vocab_size = 320;
  c.max_seq_len = 64;
  piquant::test::TempDir dir;
  piquant::write_llama2c(dir.file("m.bin"), piquant::random_llama2c_weights(c, 4));
  auto r = run_program(PIQUANT_CONVERT_PATH, {dir.file("m.bin"), "-o", dir.file("m.piq"), "--type",
                                              "q4_mix", "--report"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("blk.1.ffn_down.weight") != std::string::npos);
  CHECK(r.out.find("bits per weight") != std::string::npos);
  CHECK(r.err.find("[9/") != std::string::npos);  // plain progress lines (not a terminal)
  CHECK(r.err.find("wrote") != std::string::npos);

  r = run_program(PIQUANT_INSPECT_PATH, {dir.file("m.piq")});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("piquant file, format version 1") != std::string::npos);
  CHECK(r.out.find("\"type\": \"q4_mix\"") != std::string::npos);
  CHECK(r.out.find("blk.0.attn_v.weight") != std::string::npos);
  CHECK(r.out.find("bits per weight") != std::string::npos);

  r = run_program(PIQUANT_CONVERT_PATH, {"--verify", dir.file("m.piq")});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("OK") != std::string::npos);

  r = run_program(PIQUANT_RUN_PATH, {"-m", dir.file("m.piq"), "--prompt-ids", "1,2,3", "--ids",
                                     "-n", "4", "--temp", "0"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.err.find("mmapped") != std::string::npos);
  CHECK(r.err.find("loaded in") != std::string::npos);

  // A flipped byte inside a tensor: --verify names it.
  {
    const piquant::PiqFile f(dir.file("m.piq"));
    const auto& t = f.get("blk.1.ffn_up.weight");
    std::string bytes = piquant::test::read_file(dir.file("m.piq"));
    bytes[t.offset + 7] ^= 0x10;
    piquant::test::write_file(dir.file("bad.piq"), bytes);
  }
  r = run_program(PIQUANT_CONVERT_PATH, {"--verify", dir.file("bad.piq")});
  CHECK(r.exit_code == 2);
  CHECK(r.out.find("blk.1.ffn_up.weight") != std::string::npos);

  // inspect reads llama2.c checkpoints too; clear one-line errors.
  r = run_program(PIQUANT_INSPECT_PATH, {dir.file("m.bin")});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("llama2.c checkpoint") != std::string::npos);
  piquant::test::write_file(dir.file("short.bin"), "xyz");
  r = run_program(PIQUANT_INSPECT_PATH, {dir.file("short.bin")});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("piquant-inspect: error: ") != std::string::npos);
  r = run_program(PIQUANT_CONVERT_PATH, {dir.file("m.bin")});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("-o OUTPUT.piq") != std::string::npos);
  r = run_program(PIQUANT_CONVERT_PATH,
                  {dir.file("m.bin"), "-o", dir.file("x.piq"), "--type", "q2"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("unknown --type 'q2'") != std::string::npos);
}

TEST_CASE("piquant-convert calibrates aidreams260K and piquant-run generates text from the file",
          "[e2e][convert]") {
  const std::string model = piquant::test::shared_file("models/aidreams260K.bin");
  if (model.empty()) return;
  const std::string tok = piquant::test::shared_dir() + "/models/aidreams260K.tok512.bin";
  piquant::test::TempDir dir;
  piquant::test::write_file(dir.file("calib.txt"),
                            "The lighthouse turned its lamp toward the sea, and the gulls told it "
                            "which boats had come home. Echoes of vectors unfold in the night.");
  auto r = run_program(PIQUANT_CONVERT_PATH, {model, "-z", tok, "-o", dir.file("a.piq"), "--type",
                                              "q4", "--calibrate", dir.file("calib.txt")});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.find("calibrating on") != std::string::npos);
  r = run_program(PIQUANT_INSPECT_PATH, {dir.file("a.piq"), "--no-tensors", "--verify"});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("calibration") != std::string::npos);
  CHECK(r.out.find("all checksums OK") != std::string::npos);
  r = run_program(PIQUANT_RUN_PATH,
                  {"-m", dir.file("a.piq"), "-p", "Echoes", "-n", "16", "--temp", "0"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.rfind("Echoes", 0) == 0);
  CHECK(r.out.size() > 20);
}

#endif
