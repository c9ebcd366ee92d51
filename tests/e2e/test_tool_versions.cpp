// Every program answers --version with its name and the library's version, exit status 0.
#include <catch2/catch.hpp>
#include <piquant/version.hpp>

#include <string>

#include "test_util.hpp"

// A program not built (its PIQUANT_BUILD_* option off) has no path: "" here, skipped below.
#ifndef PIQUANT_RUN_PATH
#define PIQUANT_RUN_PATH ""
#endif
#ifndef PIQUANT_BENCH_PATH
#define PIQUANT_BENCH_PATH ""
#endif
#ifndef PIQUANT_TOKENIZE_PATH
#define PIQUANT_TOKENIZE_PATH ""
#endif
#ifndef PIQUANT_CONVERT_PATH
#define PIQUANT_CONVERT_PATH ""
#endif
#ifndef PIQUANT_INSPECT_PATH
#define PIQUANT_INSPECT_PATH ""
#endif

TEST_CASE("every program prints its version with --version", "[e2e][cli]") {
  const struct {
    const char* name;
    const char* path;
  } tools[] = {{"piquant-run", PIQUANT_RUN_PATH},
               {"piquant-bench", PIQUANT_BENCH_PATH},
               {"piquant-tokenize", PIQUANT_TOKENIZE_PATH},
               {"piquant-convert", PIQUANT_CONVERT_PATH},
               {"piquant-inspect", PIQUANT_INSPECT_PATH}};
  for (const auto& t : tools) {
    CAPTURE(t.name);
    if (std::string(t.path).empty()) {
      WARN(std::string("skipped: ") + t.name + " is not built");
      continue;
    }
    const auto r = piquant::test::run_program(t.path, {"--version"}, 60);
    CHECK(r.exit_code == 0);
    CHECK(r.out == std::string(t.name) + " (piquant " + piquant::version() + ")\n");
  }
}
