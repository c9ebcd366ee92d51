// The first hour with piquant's programs, as a user coming from llama.cpp / llama2.c meets it
// (issue 17): the demo model, the default seed, llama.cpp's flags, nonsense values, plain errors,
// a prompt longer than the context, the converter's tokenizer notes, chat commands, wording.
// Each case runs the programs as a user does; all run in seconds natively.
#include <catch2/catch.hpp>
#include <piquant/piquant.hpp>

#include <set>
#include <sstream>
#include <thread>

#include "format/gguf_writer.hpp"
#include "load/llama2c_model.hpp"
#include "lib/lora_test_util.hpp"
#include "test_util.hpp"
#include "tokenizer/tokenizer_fixtures.hpp"

#if defined(PIQUANT_RUN_PATH) && defined(PIQUANT_CONVERT_PATH) && defined(PIQUANT_INSPECT_PATH) && \
    defined(PIQUANT_TOKENIZE_PATH)

namespace {

using piquant::test::run_program;
using piquant::test::RunResult;

RunResult run(std::vector<std::string> args, const std::string& stdin_path = "") {
  return run_program(PIQUANT_RUN_PATH, args, 120, stdin_path);
}

// Under qemu each demo-model run costs seconds (its weights are generated at start): the cases
// below check argument parsing, messages and tools, the same on every platform, so under
// emulation they run only what touches the kernels (the demo model's text, the sampler's seed).
bool emulated() { return std::string(PIQUANT_TEST_EMULATOR).size() > 0; }

#define SKIP_UNDER_EMULATION()                                                          \
  if (emulated()) {                                                                     \
    WARN("skipped under emulation: platform-independent CLI behaviour (runs natively)"); \
    return;                                                                             \
  }

bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

std::vector<int> ids_of(const std::string& out) {
  std::istringstream in(out);
  std::vector<int> ids;
  for (int id; in >> id;) ids.push_back(id);
  return ids;
}

// A small llama2.c checkpoint whose vocabulary is tiny_llama2c_tokenizer()'s (265 tokens).
void write_tiny_llama2c(const piquant::test::TempDir& dir) {
  piquant::ModelConfig c;
  c.dim = 64;
  c.hidden_dim = 128;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 2;
  c.head_dim = 32;
  c.vocab_size = 265;
  c.max_seq_len = 64;
  piquant::write_llama2c(dir.file("m.bin"), piquant::random_llama2c_weights(c, 3));
  piquant::test::write_file(dir.file("tokenizer.bin"), piquant::test::tiny_llama2c_tokenizer());
}

}  // namespace

TEST_CASE("first hour 1: the demo model prints varied readable text and says what it is",
          "[e2e][first_hour]") {
  const auto greedy = run({"--temp", "0", "-n", "64", "--ids", "-t", "1"});
  INFO(greedy.err);
  REQUIRE(greedy.exit_code == 0);
  const std::vector<int> ids = ids_of(greedy.out);
  REQUIRE(ids.size() > 64);
  const std::set<int> distinct(ids.end() - 64, ids.end());
  CHECK(distinct.size() >= 10);
  CHECK(has(greedy.err, "demo model"));
  CHECK(has(greedy.err, "-m FILE"));
  // Text: readable pieces only (no byte tokens, no <unusedN> pieces).
  SKIP_UNDER_EMULATION();
  const auto text = run({"--temp", "0", "-n", "48", "-t", "1"});
  REQUIRE(text.exit_code == 0);
  CHECK(!has(text.out, "<unused"));
  for (char ch : text.out) CHECK((ch == '\n' || (ch >= ' ' && ch <= '~')));
}

TEST_CASE("first hour 2: sampling is random by default, -s N repeats a run, -v prints the seed",
          "[e2e][first_hour]") {
  const std::vector<std::string> sample = {"--temp", "1", "--top-k", "0", "--top-p", "1",
                                           "--min-p", "0", "-p", "Hello", "-n", "24", "-t", "1"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = sample;
    a.insert(a.end(), extra.begin(), extra.end());
    return run(a);
  };
  const auto a = with({});
  const auto b = with({});
  REQUIRE(a.exit_code == 0);
  REQUIRE(b.exit_code == 0);
  CHECK(a.out != b.out);
  CHECK(!has(a.err, "piquant-run: seed"));  // printed with -v only
  SKIP_UNDER_EMULATION();
  const auto s1 = with({"-s", "7"});
  const auto s2 = with({"-s", "7"});
  CHECK(s1.out == s2.out);
  const auto v = with({"-v"});
  CHECK(has(v.err, "piquant-run: seed "));
}

TEST_CASE("first hour 3: llama.cpp's flags and --type spellings are accepted",
          "[e2e][first_hour]") {
  SKIP_UNDER_EMULATION();
  const std::vector<std::string> base = {"--prompt-ids", "1,40,50", "--ids", "--temp", "0",
                                         "-n", "4", "-t", "1"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return run(a);
  };
  const auto ref = with({});
  REQUIRE(ref.exit_code == 0);
  // --flag=value
  const auto eq = with({"--ctx-size=64", "--n-predict=4"});
  INFO(eq.err);
  CHECK(eq.exit_code == 0);
  CHECK(has(eq.err, "(64 tokens)"));
  CHECK(eq.out == ref.out);
  CHECK(with({"--ignore-eos=1"}).exit_code == 1);  // a switch takes no value
  // -ngl: accepted, with a note; --color, -b: accepted
  const auto ngl = with({"-ngl", "99", "--color", "-b", "512", "-ctk", "F32"});
  CHECK(ngl.exit_code == 0);
  CHECK(has(ngl.err, "-ngl ignored"));
  CHECK(ngl.out == ref.out);
  // -i: the chat (here at end of input at once)
  const auto chat = run({"-i", "-n", "4", "-t", "1"});
  CHECK(chat.exit_code == 0);
  CHECK(has(chat.err, "chat (template"));
  const auto ins = run({"-ins"});
  CHECK(ins.exit_code == 1);
  CHECK(has(ins.err, "--chat"));
  // --lora-scaled FILE SCALE = --lora FILE --lora-scale SCALE
  piquant::test::TempDir dir;
  piquant::ModelConfig c;
  c.dim = 288, c.hidden_dim = 768, c.n_layers = 6, c.n_heads = 6, c.n_kv_heads = 6;
  c.head_dim = 48, c.vocab_size = 512, c.max_seq_len = 1024;
  piquant::test::write_peft(dir.path(), piquant::test::make_adapter(c, 4, 8.0f, false, 5));
  const auto scaled = with({"--lora-scaled", dir.path(), "0.5"});
  const auto two = with({"--lora", dir.path(), "--lora-scale", "0.5"});
  INFO(scaled.err);
  CHECK(scaled.exit_code == 0);
  CHECK(scaled.out == two.out);
  CHECK(has(scaled.err, "scale 0.5"));
  CHECK(has(scaled.err, " KiB ("));  // not "0.0341797 MiB"

  // --type: case-insensitive, GGUF's spellings, one name per type (q4m) everywhere.
  write_tiny_llama2c(dir);
  auto r = run_program(PIQUANT_CONVERT_PATH, {dir.file("m.bin"), "-z", dir.file("tokenizer.bin"),
                                              "-o", dir.file("a.piq"), "--type", "Q4_1",
                                              "--report", "-q"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(has(r.out, " q4m "));
  CHECK(!has(r.out + r.err, "q4a"));
  r = run_program(PIQUANT_INSPECT_PATH, {dir.file("a.piq")});
  CHECK(has(r.out, "q4m"));
  CHECK(!has(r.out, "q4a"));
  r = run_program(PIQUANT_CONVERT_PATH, {dir.file("m.bin"), "-z", dir.file("tokenizer.bin"),
                                         "-o", dir.file("b.piq"), "--type=Q8_0", "-q"});
  CHECK(r.exit_code == 0);
  r = run_program(PIQUANT_INSPECT_PATH, {dir.file("b.piq")});
  CHECK(has(r.out, "\"type\": \"q8\""));
  r = run_program(PIQUANT_CONVERT_PATH, {dir.file("m.bin"), "-o", dir.file("c.piq"), "--type",
                                         "Q3_K_M"});  // a K-quant piquant does not write
  CHECK(r.exit_code == 1);
  CHECK(has(r.err, "K-quants"));
}

TEST_CASE("first hour 4: nonsense values get an error or a warning", "[e2e][first_hour]") {
  SKIP_UNDER_EMULATION();
  for (const auto& bad : std::vector<std::vector<std::string>>{
           {"--top-k", "-3"}, {"--top-p", "2"}, {"--min-p", "-0.5"}, {"-t", "100000"},
           {"-c", "-5"}, {"--repeat-penalty", "0"}}) {
    const auto r = run(bad);
    INFO(bad[0] << " " << bad[1] << ": " << r.err);
    CHECK(r.exit_code == 1);
    CHECK(has(r.err, "piquant-run: error: " + bad[0] + " must be"));
  }
  const auto tmpl = run({"--chat-template", "chatml", "--prompt-ids", "1", "--ids", "-n", "1",
                         "-t", "1"});
  CHECK(tmpl.exit_code == 0);
  CHECK(has(tmpl.err, "apply to --chat only"));
  const unsigned cores = std::thread::hardware_concurrency();
  if (cores > 0 && cores < 64) {
    const auto many = run({"--prompt-ids", "1", "--ids", "-n", "1", "-t",
                           std::to_string(cores + 1)});
    CHECK(many.exit_code == 0);
    CHECK(has(many.err, "warning: " + std::to_string(cores + 1) + " threads on "));
    const auto fine = run({"--prompt-ids", "1", "--ids", "-n", "1", "-t", "1"});
    CHECK(!has(fine.err, "warning"));
  }
}

TEST_CASE("first hour 5: a truncated GGUF, a model folder and a safetensors file say what to do",
          "[e2e][first_hour]") {
  piquant::test::TempDir dir;
  piquant::GgufWriter g;
  g.add("general.architecture", piquant::GgufWriteValue::string("llama"));
  g.add_tensor("token_embd.weight", 0, {64, 32}, std::string(64 * 32 * 4, '\0'));
  const std::string whole = g.to_bytes();
  piquant::test::write_file(dir.file("cut.gguf"), whole.substr(0, whole.size() - 1000));
  auto r = run({"-m", dir.file("cut.gguf")});
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(has(r.err, "incomplete or corrupt"));
  CHECK(has(r.err, std::to_string(whole.size()) + " bytes but the file has " +
                       std::to_string(whole.size() - 1000)));

  piquant::test::write_file(dir.file("config.json"), "{}");
  r = run({"-m", dir.path()});
  CHECK(r.exit_code == 1);
  CHECK(has(r.err, "piquant-convert " + dir.path() + " -o model.piq"));

  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::string st(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(st.data(), &n, 8);
  st += header + std::string(8, '\0');
  piquant::test::write_file(dir.file("model.safetensors"), st);
  r = run({"-m", dir.file("model.safetensors")});
  CHECK(r.exit_code == 1);
  CHECK(has(r.err, "safetensors file"));
  CHECK(has(r.err, "piquant-convert"));
  CHECK(!has(r.err, "hidden_dim"));
}

TEST_CASE("first hour 6: a prompt longer than the context is refused before anything is printed",
          "[e2e][first_hour]") {
  SKIP_UNDER_EMULATION();
  const auto r = run({"-c", "8", "-p", "one two three four five six seven eight nine ten", "-t",
                      "1"});
  CHECK(r.exit_code == 1);
  CHECK(r.out.empty());
  CHECK(has(r.err, "piquant-run: error: the prompt has "));
  CHECK(has(r.err, " tokens but the context holds 8 (-c)"));
}

TEST_CASE("first hour 7: the converter says which tokenizer the file carries, warns on none",
          "[e2e][first_hour]") {
  piquant::test::TempDir dir;
  write_tiny_llama2c(dir);
  auto r = run_program(PIQUANT_CONVERT_PATH, {dir.file("m.bin"), "-o", dir.file("none.piq"), "-q"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(has(r.err, "warning: "));
  CHECK(has(r.err, "will carry no tokenizer"));
  r = run_program(PIQUANT_CONVERT_PATH, {dir.file("m.bin"), "-z", dir.file("tokenizer.bin"), "-o",
                                         dir.file("tok.piq"), "-q"});
  CHECK(r.exit_code == 0);
  CHECK(has(r.err, "tokenizer: llama2c, 265 tokens, from " + dir.file("tokenizer.bin")));
  CHECK(!has(r.err, "no tokenizer"));
}

TEST_CASE("first hour 9: chat commands, a full context, the end of input", "[e2e][first_hour]") {
  SKIP_UNDER_EMULATION();
  piquant::test::TempDir dir;
  piquant::test::write_file(dir.file("help.txt"), "/help\n/exit\n");
  auto r = run({"--chat", "-n", "4", "-t", "1"}, dir.file("help.txt"));
  CHECK(r.exit_code == 0);
  CHECK(has(r.out, "chat commands"));
  CHECK(has(r.out, "/reset"));
  // Ctrl-D (end of input) at the prompt ends its line.
  piquant::test::write_file(dir.file("hi.txt"), "hi\n");
  r = run({"--chat", "-n", "4", "-t", "1"}, dir.file("hi.txt"));
  CHECK(r.exit_code == 0);
  REQUIRE(!r.out.empty());
  CHECK(r.out.back() == '\n');
  // A conversation that fills the context: the error names /reset.
  std::string turns;
  for (int i = 0; i < 8; ++i) turns += "one two three four five\n";
  piquant::test::write_file(dir.file("full.txt"), turns);
  r = run({"--chat", "-c", "64", "-n", "4", "-t", "1"}, dir.file("full.txt"));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(has(r.err, "has reached the context length"));
  CHECK(has(r.err, "/reset starts the conversation over"));
  // A reply cut by the context with --drop-old-turns on does not suggest --drop-old-turns.
  piquant::test::write_file(dir.file("two.txt"), "hello there\n");
  r = run({"--chat", "-c", "40", "-n", "200", "--ignore-eos", "--drop-old-turns", "-t", "1"},
          dir.file("two.txt"));
  CHECK(r.exit_code == 0);
  CHECK(has(r.err, "the reply was cut"));
  CHECK(!has(r.err, "run with --drop-old-turns"));
}

TEST_CASE("first hour 10: wording, piquant-tokenize's stdin and pieces, inspect on llama2.c",
          "[e2e][first_hour]") {
  SKIP_UNDER_EMULATION();
  const auto one = run({"--prompt-ids", "1", "--ids", "-n", "1", "-t", "1"});
  REQUIRE(one.exit_code == 0);
  CHECK(has(one.err, "prompt 1 token,"));
  CHECK(has(one.err, "generated 1 token,"));
  CHECK(has(one.err, "| 1 thread\n"));

  piquant::test::TempDir dir;
  write_tiny_llama2c(dir);
  piquant::test::write_file(dir.file("in.txt"), "hi hi\n");
  const auto piped =
      run_program(PIQUANT_TOKENIZE_PATH, {dir.file("tokenizer.bin"), "-"}, 60, dir.file("in.txt"));
  const auto arg = run_program(PIQUANT_TOKENIZE_PATH, {dir.file("tokenizer.bin"), "hi hi"});
  REQUIRE(arg.exit_code == 0);
  CHECK(piped.out == arg.out);
  const auto pieces =
      run_program(PIQUANT_TOKENIZE_PATH, {dir.file("tokenizer.bin"), "--show-pieces", "hi hi"});
  CHECK(pieces.exit_code == 0);
  CHECK(pieces.out.rfind("1 -> '", 0) == 0);
  CHECK(has(pieces.out, "264 -> ' hi'"));

  const auto insp = run_program(PIQUANT_INSPECT_PATH, {dir.file("m.bin")});
  INFO(insp.err);
  CHECK(insp.exit_code == 0);
  CHECK(has(insp.out, "llama2.c checkpoint"));
  CHECK(has(insp.out, "vocab 265"));
}

#endif
