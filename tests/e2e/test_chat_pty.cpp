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
