// Context (piquant/batch.hpp): passes of rows from many sequences against each sequence decoded
// alone by a Session (one row per pass after its prompt): 1, 2, 3, 8 and 16 sequences started at
// different steps (so a pass mixes prompt rows of new sequences with decode rows of others),
// f16 and q8 KV, f32 weights within 1e-5 relative, q8/q4 weights with the same greedy ids;
// different LoRA sets per sequence; fork of a shared prompt; sequence bookkeeping and bad input.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <random>

#include "lora_test_util.hpp"
#include "test_util.hpp"

using namespace piquant;
using namespace piquant::test;

namespace {

constexpr int kVocab = 300;  // lora_test_config()

TokenId argmax(const float* l) {
  return static_cast<TokenId>(std::max_element(l, l + kVocab) - l);
}

/// max |a - b| / max |b| over one row of logits.
double rel_err(const float* a, const float* b) {
  double d = 0, m = 0;
  for (int i = 0; i < kVocab; ++i) {
    d = std::max(d, std::fabs(double(a[i]) - double(b[i])));
    m = std::max(m, std::fabs(double(b[i])));
  }
  return d / m;
}

struct Seq {
  std::vector<TokenId> prompt;
  int start_step;  // the pass its prompt joins
  std::vector<AdapterChoice> adapters;
};

/// Logits of every step of each sequence: its prompt's last row, then one row per generated
/// token (teacher-forced with `forced` ids so both sides see the same tokens).
struct Run {
  std::vector<std::vector<std::vector<float>>> logits;  // [seq][step] vocab
};

Run run_alone(const std::shared_ptr<const Model>& m, const std::vector<Seq>& seqs, int steps,
              KvCacheType kv, const std::vector<std::vector<TokenId>>& forced) {
  Run r;
  for (size_t i = 0; i < seqs.size(); ++i) {
    Session s(m, SessionOptions{64, 1, kv});
    s.set_adapters(seqs[i].adapters);
    const float* l = s.eval(seqs[i].prompt);
    r.logits.emplace_back();
    r.logits.back().emplace_back(l, l + kVocab);
    for (int k = 0; k < steps; ++k) {
      l = s.eval({forced[i][size_t(k)]});
      r.logits.back().emplace_back(l, l + kVocab);
    }
  }
  return r;
}

Run run_batched(const std::shared_ptr<const Model>& m, const std::vector<Seq>& seqs, int steps,
                KvCacheType kv, const std::vector<std::vector<TokenId>>& forced, int threads) {
  ContextOptions o;
  o.n_ctx = 64;
  o.n_seq = static_cast<int>(seqs.size());
  o.n_threads = threads;
  o.kv_type = kv;
  Context ctx(m, o);
  Run r;
  r.logits.resize(seqs.size());
  std::vector<int> id(seqs.size(), -1);
  int last_start = 0;
  for (const auto& s : seqs) last_start = std::max(last_start, s.start_step);
  for (int pass = 0; pass <= last_start + steps; ++pass) {
    std::vector<DecodeRow> rows;
    std::vector<size_t> owner;  // sequence of each row with logits
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int k = pass - seqs[i].start_step;  // 0: prompt pass; 1..steps: decode
      if (k < 0 || k > steps) continue;
      if (k == 0) {
        id[i] = ctx.add_sequence();
        ctx.set_adapters(id[i], seqs[i].adapters);
        for (size_t t = 0; t < seqs[i].prompt.size(); ++t) {
          rows.push_back(DecodeRow{seqs[i].prompt[t], id[i], t + 1 == seqs[i].prompt.size()});
        }
      } else {
        rows.push_back(DecodeRow{forced[i][size_t(k - 1)], id[i], true});
      }
      owner.push_back(i);
    }
    const auto out = ctx.decode(rows);
    REQUIRE(out.size() == owner.size());
    for (size_t j = 0; j < out.size(); ++j) r.logits[owner[j]].emplace_back(out[j], out[j] + kVocab);
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    CHECK(ctx.position(id[i]) == static_cast<int>(seqs[i].prompt.size()) + steps);
  }
  return r;
}

std::vector<Seq> make_seqs(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Seq> s(n);
  for (size_t i = 0; i < n; ++i) {
    s[i].prompt.resize(1 + i % 5 + (i == 1 ? 9 : 0));  // lengths 1..5, one longer
    for (auto& t : s[i].prompt) t = static_cast<TokenId>(rng() % kVocab);
    s[i].start_step = static_cast<int>(i % 3);
  }
  return s;
}

std::vector<std::vector<TokenId>> forced_ids(size_t n, int steps, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<TokenId>> f(n, std::vector<TokenId>(size_t(steps)));
  for (auto& v : f) for (auto& t : v) t = static_cast<TokenId>(rng() % kVocab);
  return f;
}

std::shared_ptr<const Model> f32_model(uint64_t seed) {
  return build_model(random_llama2c_weights(lora_test_config(), seed), false);
}

}  // namespace

TEST_CASE("passes of rows from many sequences match each sequence decoded alone",
          "[lib][batch]") {
  const auto f32 = f32_model(41);
  const int steps = 3;
  const size_t n = GENERATE(1, 2, 3, 8, 16);
  const KvCacheType kv = GENERATE(KvCacheType::kF16, KvCacheType::kQ8);
  CAPTURE(n, int(kv));
  const auto seqs = make_seqs(n, 7 + uint32_t(n));
  const auto forced = forced_ids(n, steps, 11);
  {  // f32 weights: the same logits within 1e-5 relative
    const Run alone = run_alone(f32, seqs, steps, kv, forced);
    const Run batched = run_batched(f32, seqs, steps, kv, forced, 2);
    double worst = 0;
    for (size_t i = 0; i < n; ++i) {
      REQUIRE(batched.logits[i].size() == alone.logits[i].size());
      for (size_t k = 0; k < alone.logits[i].size(); ++k) {
        worst = std::max(worst, rel_err(batched.logits[i][k].data(), alone.logits[i][k].data()));
      }
    }
    CAPTURE(worst);
    CHECK(worst <= 1e-5);
  }
  for (DType q : {DType::kQ8, DType::kQ4}) {  // quantized weights: the same greedy ids
    CAPTURE(int(q));
    const auto m = quantized_model(*f32, q);
    const Run alone = run_alone(m, seqs, steps, kv, forced);
    const Run batched = run_batched(m, seqs, steps, kv, forced, 2);
    for (size_t i = 0; i < n; ++i) {
      for (size_t k = 0; k < alone.logits[i].size(); ++k) {
        CAPTURE(i, k);
        CHECK(argmax(batched.logits[i][k].data()) == argmax(alone.logits[i][k].data()));
      }
    }
  }
}

TEST_CASE("rows of one pass apply each sequence's own LoRA adapters", "[lib][batch][lora]") {
  const ModelConfig c = lora_test_config();
  const auto model = f32_model(42);
  TempDir da, db;
  write_peft(da.path(), make_adapter(c, 8, 16.0f, false, 3));
  write_peft(db.path(), make_adapter(c, 16, 8.0f, true, 4, {LoraTarget::kV, LoraTarget::kUp}));
  auto A = LoraAdapter::load(*model, da.path());
  auto B = LoraAdapter::load(*model, db.path());
  auto seqs = make_seqs(6, 5);
  const std::vector<std::vector<AdapterChoice>> sets = {
      {{A, 1.0f}}, {{B, 1.0f}}, {}, {{A, 0.5f}, {B, 1.0f}}, {{A, 1.0f}}, {}};
  for (size_t i = 0; i < seqs.size(); ++i) seqs[i].adapters = sets[i];
  const auto forced = forced_ids(seqs.size(), 3, 12);
  const Run alone = run_alone(model, seqs, 3, KvCacheType::kF32, forced);
  const Run batched = run_batched(model, seqs, 3, KvCacheType::kF32, forced, 2);
  for (size_t i = 0; i < seqs.size(); ++i) {
    for (size_t k = 0; k < alone.logits[i].size(); ++k) {
      CAPTURE(i, k);
      CHECK(rel_err(batched.logits[i][k].data(), alone.logits[i][k].data()) <= 1e-5);
    }
  }
  // The adapters matter: sequence 0 (A) and sequence 4 (A) differ from the base model's run.
  auto base = seqs;
  for (auto& s : base) s.adapters.clear();
  const Run plain = run_alone(model, base, 3, KvCacheType::kF32, forced);
  CHECK(rel_err(plain.logits[0][1].data(), alone.logits[0][1].data()) > 1e-3);
}

TEST_CASE("a prompt evaluated once and forked to 4 sequences equals evaluating it 4 times",
          "[lib][batch]") {
  const auto model = f32_model(43);
  const KvCacheType kv = GENERATE(KvCacheType::kF32, KvCacheType::kF16, KvCacheType::kQ8);
  CAPTURE(int(kv));
  const std::vector<TokenId> system = {1, 17, 33, 250, 4, 9, 120, 64, 2, 77, 5};
  const std::vector<TokenId> next = {10, 20, 30, 40};
  ContextOptions o;
  o.n_ctx = 32;
  o.n_seq = 5;
  o.n_threads = 2;
  o.kv_type = kv;
  Context ctx(model, o);
  const int sys = ctx.add_sequence();
  std::vector<DecodeRow> rows;
  for (TokenId t : system) rows.push_back(DecodeRow{t, sys, false});
  CHECK(ctx.decode(rows).empty());
  std::vector<int> agents;
  for (int i = 0; i < 4; ++i) agents.push_back(ctx.fork(sys));
  CHECK(ctx.position(agents[3]) == static_cast<int>(system.size()));
  std::vector<DecodeRow> step;
  for (int i = 0; i < 4; ++i) step.push_back(DecodeRow{next[size_t(i)], agents[size_t(i)]});
  const auto got = ctx.decode(step);
  REQUIRE(got.size() == 4);
  for (int i = 0; i < 4; ++i) {
    CAPTURE(i);
    Session s(model, SessionOptions{32, 1, kv});
    std::vector<TokenId> all = system;
    all.push_back(next[size_t(i)]);
    const float* ref = s.eval(all);
    CHECK(rel_err(got[size_t(i)], ref) <= 1e-5);
    CHECK(ctx.position(agents[size_t(i)]) == static_cast<int>(system.size()) + 1);
  }
  // The prompt's own sequence is untouched by its forks' tokens.
  CHECK(ctx.position(sys) == static_cast<int>(system.size()));
  // Not vacuous: the four continuations differ.
  CHECK(rel_err(got[0], got[1]) > 1e-3);
}

TEST_CASE("context sequences are added, rewound, removed and reused", "[lib][batch]") {
  const auto model = f32_model(44);
  Context ctx(model, ContextOptions{16, 2, 1, KvCacheType::kF32});
  const int a = ctx.add_sequence(), b = ctx.add_sequence();
  CHECK(a != b);
  CHECK_THROWS_AS(ctx.add_sequence(), Error);  // both in use
  const auto first = ctx.decode({{5, a}, {6, a}, {7, a}});
  REQUIRE(first.size() == 3);
  const std::vector<float> l3(first[2], first[2] + kVocab);
  ctx.decode({{8, a}, {9, a}});
  CHECK(ctx.position(a) == 5);
  ctx.rewind(a, 2);
  CHECK(ctx.position(a) == 2);
  const auto again = ctx.decode({{7, a}});  // the same third token at position 2
  CHECK(rel_err(again[0], l3.data()) <= 1e-6);
  // Explicit positions: rewrite from position 1.
  ctx.decode({DecodeRow{6, a, true, 1}, DecodeRow{7, a, true, 2}});
  CHECK(ctx.position(a) == 3);
  ctx.remove_sequence(b);
  CHECK_THROWS_AS(ctx.position(b), Error);
  const int c = ctx.add_sequence();  // reuses b's room, empty
  CHECK(c == b);
  CHECK(ctx.position(c) == 0);
  const auto fresh = ctx.decode({{5, c}, {6, c}, {7, c}});
  CHECK(rel_err(fresh[2], l3.data()) <= 1e-6);
}

TEST_CASE("context decode refuses bad rows without changing any sequence",
          "[lib][batch][bad-input]") {
  const auto model = f32_model(45);
  Context ctx(model, ContextOptions{8, 2, 1, KvCacheType::kF32});
  const int a = ctx.add_sequence();
  ctx.decode({{1, a}, {2, a}});
  CHECK_THROWS_WITH(ctx.decode({}), Catch::Contains("no rows"));
  CHECK_THROWS_WITH(ctx.decode({{1, 1}}), Catch::Contains("not in use"));
  CHECK_THROWS_WITH(ctx.decode({{3, a}, {kVocab, a}}), Catch::Contains("outside the vocabulary"));
  CHECK_THROWS_WITH(ctx.decode({DecodeRow{3, a, true, 5}}), Catch::Contains("gap"));
  CHECK_THROWS_WITH(ctx.decode({DecodeRow{3, a, true, 2}, DecodeRow{3, a, true, 4}}),
                    Catch::Contains("does not follow"));
  std::vector<DecodeRow> many(7, DecodeRow{1, a});
  CHECK_THROWS_AS(ctx.decode(many), Error);  // 2 + 7 > 8 positions
  CHECK(ctx.position(a) == 2);
  CHECK_THROWS_AS(ctx.fork(a, 3), Error);
  CHECK_THROWS_AS(ctx.rewind(a, 3), Error);
  CHECK_THROWS_AS(Context(model, ContextOptions{8, 0}), Error);
}

TEST_CASE("a decode of more rows than one pass splits a sequence across passes correctly",
          "[lib][batch]") {
  const auto model = f32_model(46);
  Context ctx(model, ContextOptions{64, 3, 2, KvCacheType::kF16});
  std::mt19937 rng(3);
  std::vector<std::vector<TokenId>> prompts(3, std::vector<TokenId>(30));
  std::vector<DecodeRow> rows;  // 90 rows: passes of 64 + 26, sequence 2 split between them
  std::vector<int> ids;
  for (auto& p : prompts) {
    for (auto& t : p) t = static_cast<TokenId>(rng() % kVocab);
    ids.push_back(ctx.add_sequence());
    for (size_t i = 0; i < p.size(); ++i) rows.push_back(DecodeRow{p[i], ids.back(), i % 7 == 0 || i + 1 == p.size()});
  }
  const auto out = ctx.decode(rows);
  REQUIRE(out.size() == 3 * 6);  // i = 0, 7, 14, 21, 28 and 29
  for (size_t s = 0; s < 3; ++s) {
    Session alone(model, SessionOptions{64, 1, KvCacheType::kF16});
    std::vector<float> all;
    alone.eval(prompts[s], &all);
    const size_t picks[] = {0, 7, 14, 21, 28, 29};
    for (size_t k = 0; k < 6; ++k) {
      CAPTURE(s, k);
      CHECK(rel_err(out[s * 6 + k], all.data() + picks[k] * kVocab) <= 1e-5);
    }
    CHECK(ctx.position(ids[s]) == 30);
  }
}
