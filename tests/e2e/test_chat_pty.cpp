// piquant-run --chat driven through a pseudo-terminal, as a person would use it.
#include <catch2/catch.hpp>

#include <csignal>

#include "test_util.hpp"

TEST_CASE("piquant-run --chat holds a several-turn conversation on a terminal", "[e2e][chat]") {
#ifndef PIQUANT_RUN_PATH
  WARN("skipped: piquant-run is not built (PIQUANT_BUILD_EXAMPLES=OFF)");
#else
  // The seeded demo model (no -m): its replies are noise, the mechanics are real.
  piquant::test::PtyProgram p(PIQUANT_RUN_PATH, {"--chat", "-n", "12", "--temp", "0", "-t", "1",
                                                 "-c", "160", "--system", "Be brief.", "-v"});
  REQUIRE(p.wait_for("\n> ", 1));
  p.type("hello there\n");
  REQUIRE(p.wait_for("\n> ", 2));
  p.type("tell me more\n");
  REQUIRE(p.wait_for("\n> ", 3));
  CAPTURE(p.output());
  // Turn 2 evaluated only its own tokens: the KV cache kept turn 1.
  CHECK(p.output().find("in context]") != std::string::npos);
  p.type("/reset\n");
  REQUIRE(p.wait_for("[conversation reset]"));
  // A message longer than the whole context is refused with a message; the chat goes on.
  p.type(std::string(300, 'x') + "\n");
  REQUIRE(p.wait_for("does not fit the context"));
  p.type("short again\n");
  REQUIRE(p.wait_for("\n> ", 6));
  p.type("\x04");  // Ctrl-D: end of input
  CHECK(p.wait_exit() == 0);
#endif
}

TEST_CASE("piquant-run refuses a prompt longer than the context with a clear error",
          "[e2e][bad-input]") {
#ifndef PIQUANT_RUN_PATH
  WARN("skipped: piquant-run is not built (PIQUANT_BUILD_EXAMPLES=OFF)");
#else
  const auto r = piquant::test::run_program(
      PIQUANT_RUN_PATH, {"-p", std::string(400, 'y'), "-c", "64", "-n", "4", "-t", "1"});
  CAPTURE(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("context") != std::string::npos);
#endif
}

TEST_CASE("Ctrl-C stops a chat reply, the chat goes on, and at the prompt Ctrl-C quits",
          "[e2e][chat]") {
#ifndef PIQUANT_RUN_PATH
  WARN("skipped: piquant-run is not built (PIQUANT_BUILD_EXAMPLES=OFF)");
#else
  // A reply of up to ~1000 tokens (the demo's whole context): seconds even natively.
  piquant::test::PtyProgram p(PIQUANT_RUN_PATH,
                              {"--chat", "-n", "2000", "--ignore-eos", "--temp", "0", "-t", "1"});
  REQUIRE(p.wait_for("\n> ", 1));
  p.type("hello\n");
  REQUIRE(p.wait_for("hello"));  // the terminal's echo
  // Some of the reply has been shown: the program is generating.
  REQUIRE(p.wait_for_output(p.output().size() + 16));
  p.type("\x03");
  REQUIRE(p.wait_for("[interrupted]"));
  REQUIRE(p.wait_for("\n> ", 2));
  CAPTURE(p.output());
  CHECK(p.output().find("context (") == std::string::npos);  // cut by Ctrl-C, not a full context
  p.type("\x03");
  CHECK(p.wait_exit() == 128 + SIGINT);
#endif
}

TEST_CASE("Ctrl-C stops piquant-run's generation, which still prints its timing line",
          "[e2e][cli]") {
#ifndef PIQUANT_RUN_PATH
  WARN("skipped: piquant-run is not built (PIQUANT_BUILD_EXAMPLES=OFF)");
#else
  piquant::test::PtyProgram p(PIQUANT_RUN_PATH,
                              {"-p", "hi", "-n", "1000", "--ignore-eos", "--temp", "0", "-t", "1"});
  REQUIRE(p.wait_for("\nhi"));  // the prompt's echo (after the load lines)
  REQUIRE(p.wait_for_output(p.output().size() + 16));
  p.type("\x03");
  CHECK(p.wait_exit() == 130);
  CAPTURE(p.output());
  CHECK(p.output().find("interrupted (Ctrl-C)") != std::string::npos);
  const size_t at = p.output().find("generated ");
  REQUIRE(at != std::string::npos);
  CHECK(std::stoi(p.output().substr(at + 10)) < 999);
#endif
}

TEST_CASE("piquant-run -n -1 runs to a full context, -s -1 picks a seed it prints",
          "[e2e][cli]") {
#ifndef PIQUANT_RUN_PATH
  WARN("skipped: piquant-run is not built (PIQUANT_BUILD_EXAMPLES=OFF)");
#else
  using piquant::test::run_program;
  const auto full = run_program(PIQUANT_RUN_PATH, {"-n", "-1", "-c", "48", "--ignore-eos", "-t", "1",
                                                   "--prompt-ids", "1,2,3", "--ids"});
  REQUIRE(full.exit_code == 0);
  CHECK(full.err.find("the context (48 tokens) is full") != std::string::npos);
  // 3 prompt ids, 45 generated ones evaluated and the last one sampled.
  size_t words = 0;
  for (size_t i = 0; i < full.out.size(); ++i) {
    if (full.out[i] != ' ' && full.out[i] != '\n' && (i == 0 || full.out[i - 1] == ' ')) ++words;
  }
  CHECK(words == 3 + 46);
  CHECK(run_program(PIQUANT_RUN_PATH, {"-n", "-2"}).exit_code == 1);

  // Sampling that depends on the seed: temperature 1 over many tokens (the presence penalty
  // rules out repeats, which the demo model would otherwise pick whatever the seed).
  const std::vector<std::string> sample = {"-n", "12", "--temp", "1", "--top-k", "0",
                                           "--presence-penalty", "1000", "-t", "1",
                                           "--prompt-ids", "1,2,3", "--ids"};
  auto run = [&](const std::string& seed) {
    std::vector<std::string> args = sample;
    args.push_back("-s");
    args.push_back(seed);
    return run_program(PIQUANT_RUN_PATH, args);
  };
  auto seed_of = [](const std::string& err) {
    const std::string key = "piquant-run: seed ";
    const size_t at = err.find(key);
    if (at == std::string::npos) return std::string();
    const size_t from = at + key.size();
    return err.substr(from, err.find(' ', from) - from);
  };
  const auto a = run("-1");
  const auto b = run("-1");
  REQUIRE(a.exit_code == 0);
  const std::string seed = seed_of(a.err);
  CAPTURE(a.err, b.err);
  REQUIRE(!seed.empty());
  CHECK(seed != seed_of(b.err));
  CHECK(run(seed).out == a.out);  // the printed seed reproduces the run
#endif
}
