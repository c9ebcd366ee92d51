// One Model shared by many Sessions, used from several threads at once: every session gets
// exactly the tokens it gets alone.
#include <catch2/catch.hpp>
#include <piquant/piquant.hpp>
#include <thread>

namespace {

std::vector<piquant::TokenId> greedy(const std::shared_ptr<const piquant::Model>& m,
                                     const std::vector<piquant::TokenId>& prompt, int threads) {
  piquant::Session s(m, piquant::SessionOptions{128, threads});
  piquant::GenerateOptions go;
  go.max_tokens = 16;
  go.sampler.temperature = 0;
  go.stop_at_end_of_generation = false;
  return s.generate_ids(prompt, nullptr, go).generated_ids;
}

}  // namespace

TEST_CASE("sessions on one model in several threads give the tokens they give alone",
          "[lib][session]") {
  piquant::SyntheticModelOptions so;
  so.config.dim = 128;
  so.config.hidden_dim = 256;
  so.config.n_layers = 2;
  so.config.n_heads = 4;
  auto model = piquant::Model::synthetic(so);
  const std::vector<std::vector<piquant::TokenId>> prompts = {
      {1, 10, 20}, {1, 300, 301, 302}, {1, 7}, {1, 400, 5, 5, 5}};
  std::vector<std::vector<piquant::TokenId>> alone;
  for (const auto& p : prompts) alone.push_back(greedy(model, p, 1));
  std::vector<std::vector<piquant::TokenId>> together(prompts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i) {
    threads.emplace_back([&, i] { together[i] = greedy(model, prompts[i], 2); });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    CAPTURE(i);
    CHECK(together[i] == alone[i]);
  }
  // Sessions differ from each other (the check above is not vacuous).
  CHECK(alone[0] != alone[1]);
}

TEST_CASE("eval refuses out-of-range ids and a full context without changing state",
          "[lib][session][bad-input]") {
  auto model = piquant::Model::synthetic();
  piquant::Session s(model, piquant::SessionOptions{8, 1});
  CHECK_THROWS_WITH(s.eval({1, 512}), Catch::Contains("outside the vocabulary"));
  CHECK_THROWS_WITH(s.eval({-1}), Catch::Contains("outside the vocabulary"));
  CHECK(s.position() == 0);
  s.eval({1, 2, 3, 4, 5, 6});
  CHECK_THROWS_WITH(s.eval({1, 2, 3}), Catch::Contains("do not fit in the context"));
  CHECK(s.position() == 6);
  CHECK_THROWS_AS(piquant::Session(model, piquant::SessionOptions{100000, 1}), piquant::Error);
}
