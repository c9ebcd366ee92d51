// piquant-bench speaks llama-bench's JSON: the fields existing tooling reads are there and sane.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "test_util.hpp"

TEST_CASE("piquant-bench --json reports llama-bench's fields for pp and tg tests", "[e2e][bench]") {
#ifndef PIQUANT_BENCH_PATH
  WARN("skipped: piquant-bench is not built (PIQUANT_BUILD_BENCH=OFF)");
#else
  const auto r = piquant::test::run_program(
      PIQUANT_BENCH_PATH, {"-p", "8", "-n", "4", "-t", "1", "-r", "2", "--json"});
  CAPTURE(r.out, r.err);
  REQUIRE(r.exit_code == 0);
  const auto j = nlohmann::json::parse(r.out);
  REQUIRE(j.is_array());
  REQUIRE(j.size() == 2);
  CHECK(j[0]["n_prompt"] == 8);
  CHECK(j[0]["n_gen"] == 0);
  CHECK(j[1]["n_prompt"] == 0);
  CHECK(j[1]["n_gen"] == 4);
  for (const auto& row : j) {
    CHECK(row["n_threads"] == 1);
    CHECK(row["avg_ts"].get<double>() > 0);
    CHECK(row["stddev_ts"].get<double>() >= 0);
    CHECK(row["samples_ts"].size() == 2);
    CHECK(row["samples_ns"].size() == 2);
    CHECK(row["model_size"].get<double>() > 0);
  }
  const auto bad = piquant::test::run_program(PIQUANT_BENCH_PATH, {"-o", "xml"});
  CHECK(bad.exit_code == 1);
  CHECK(bad.err.find("-o expects") != std::string::npos);
#endif
}

TEST_CASE("piquant-bench --batched reports llama-batched-bench's fields per parallel count",
          "[e2e][bench]") {
#ifndef PIQUANT_BENCH_PATH
  WARN("skipped: piquant-bench is not built (PIQUANT_BUILD_BENCH=OFF)");
#else
  const auto r = piquant::test::run_program(
      PIQUANT_BENCH_PATH,
      {"--batched", "-p", "8", "-n", "3", "--npl", "1,3", "-t", "1", "-r", "2", "--json"});
  CAPTURE(r.out, r.err);
  REQUIRE(r.exit_code == 0);
  const auto j = nlohmann::json::parse(r.out);
  REQUIRE(j.is_array());
  REQUIRE(j.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    const auto& row = j[i];
    const int b = i == 0 ? 1 : 3;
    CHECK(row["pp"] == 8);
    CHECK(row["tg"] == 3);
    CHECK(row["pl"] == b);
    CHECK(row["n_kv"] == b * 11);
    CHECK(row["n_threads"] == 1);
    CHECK(row["samples_t_pp"].size() == 2);
    const double t_pp = row["t_pp"], t_tg = row["t_tg"];
    REQUIRE(t_pp > 0);
    REQUIRE(t_tg > 0);
    // The times are printed to the microsecond (%f): allow that rounding in the rate.
    CHECK(row["speed_pp"].get<double>() == Approx(b * 8 / t_pp).epsilon(1e-5 + 1e-6 / t_pp));
    CHECK(row["speed_tg"].get<double>() == Approx(b * 3 / t_tg).epsilon(1e-5 + 1e-6 / t_tg));
  }
#endif
}
