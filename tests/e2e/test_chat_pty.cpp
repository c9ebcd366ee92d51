// piquant-run --chat driven through a pseudo-terminal, as a person would use it.
#include <catch2/catch.hpp>

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
