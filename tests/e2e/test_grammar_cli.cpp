// piquant-run's structured-output flags: --json-schema (text and file), --grammar, -j, errors.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "test_util.hpp"

#ifdef PIQUANT_RUN_PATH

namespace {
piquant::test::RunResult run(const std::vector<std::string>& args) {
  return piquant::test::run_program(PIQUANT_RUN_PATH, args, 120);
}
}  // namespace

TEST_CASE("piquant-run constrains the demo model's output with --json-schema and --grammar", "[e2e][grammar]") {
  const std::string schema =
      R"({"type": "object", "properties": {"action": {"enum": ["go", "stop"]}, "speed": {"type": "number"}},
          "required": ["action", "speed"], "additionalProperties": false})";
  piquant::test::TempDir dir;
  piquant::test::write_file(dir.file("robot.json"), schema);
  for (const std::string& arg : {schema, dir.file("robot.json")}) {
    const auto r = run({"-p", "Robot:", "--temp", "1", "-n", "200", "--json-schema", arg});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    REQUIRE(r.out.rfind("Robot:", 0) == 0);
    const auto j = nlohmann::json::parse(r.out.substr(6));
    CHECK((j.at("action") == "go" || j.at("action") == "stop"));
    CHECK(j.at("speed").is_number());
    CHECK(j.size() == 2);
  }
  const auto yes_no = run({"-p", "Answer:", "--temp", "1", "--grammar", R"(root ::= "yes" | "no")"});
  CHECK((yes_no.out == "Answer:yes\n" || yes_no.out == "Answer:no\n"));
  const auto any = run({"-p", "J:", "-n", "8", "-j"});
  CHECK(any.out.rfind("J:{", 0) == 0);
}

TEST_CASE("piquant-run reports bad grammars and schemas with their place", "[e2e][grammar]") {
  auto bad = run({"-p", "x", "--grammar", "root ::= \"a\" b"});
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Contains("--grammar: grammar 1:14: undefined rule 'b'"));
  bad = run({"-p", "x", "--json-schema", R"({"type": "integer", "minimum": 3})"});
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Contains("#/minimum") && Catch::Contains("not supported"));
  bad = run({"-p", "x", "-j", "--grammar", "root ::= \"a\""});
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Contains("only one of"));
  bad = run({"-p", "x", "--grammar-file", "/nonexistent/g.gbnf"});
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Contains("/nonexistent/g.gbnf: cannot open"));
}

#endif
