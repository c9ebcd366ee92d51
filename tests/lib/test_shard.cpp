// Tensor parallelism without MPI (lib/dist/shard.*): a model split across N "ranks" that are
// threads of this process, joined by an in-process Collective (sums in rank order, as the MPI
// one). Checks the split itself in every build (the mpirun tests in tests/mpi need
// -DPIQUANT_MPI=ON): N = 2, 3, 4 against the whole model (f32: logits within 1e-4 relative;
// q4: the same greedy ids), with a LoRA adapter; the refusal naming the Ns that work; row and
// column slices of packed tensors against the unpacked rows; a GGUF file loaded slice by slice
// (load_shard: the loader's slicing hook) holds the same bytes as the whole model's slices.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <piquant/piquant.hpp>

#include "common/pack.hpp"
#include "dist/collective.hpp"
#include "dist/shard.hpp"
#include "lora/adapter.hpp"
#include "model/linear.hpp"
#include "model/quantize_model.hpp"
#include "test_util.hpp"
#include "../mpi/gguf_from_model.hpp"

using namespace piquant;

namespace {

// N threads in lockstep: every call is a barrier; the data of the others is read between two.
struct Group {
  explicit Group(int ranks) : n(ranks), ptrs(size_t(ranks)) {}
  void barrier() {
    std::unique_lock<std::mutex> lock(m);
    const uint64_t g = gen;
    if (++arrived == n) {
      arrived = 0;
      ++gen;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return gen != g; });
    }
  }
  int n;
  std::mutex m;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t gen = 0;
  std::vector<const float*> ptrs;
};

class LocalCollective final : public Collective {
 public:
  LocalCollective(Group& g, int rank) : g_(g), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return g_.n; }
  void sum(float* x, size_t n) override {
    g_.ptrs[size_t(rank_)] = x;
    g_.barrier();
    tmp_.assign(g_.ptrs[0], g_.ptrs[0] + n);
    for (int r = 1; r < g_.n; ++r) {
      for (size_t i = 0; i < n; ++i) tmp_[i] += g_.ptrs[size_t(r)][i];
    }
    g_.barrier();
    std::copy(tmp_.begin(), tmp_.end(), x);
    ++stats_.calls;
  }
  void gather(const float* mine, size_t, float* out, const size_t* counts) override {
    g_.ptrs[size_t(rank_)] = mine;
    g_.barrier();
    size_t off = 0;
    for (int r = 0; r < g_.n; ++r) {
      std::copy(g_.ptrs[size_t(r)], g_.ptrs[size_t(r)] + counts[r], out + off);
      off += counts[r];
    }
    g_.barrier();
  }
  const CollectiveStats& stats() const override { return stats_; }
  void reset_stats() override { stats_ = {}; }

 private:
  Group& g_;
  int rank_;
  std::vector<float> tmp_;
  CollectiveStats stats_;
};

std::shared_ptr<const Model> gqa_model(const std::string& type) {
  SyntheticModelOptions so;
  so.seed = 5;
  so.demo_text = true;  // clear greedy choices (see tests/mpi/mpi_forward_check.cpp)
  ModelConfig& c = so.config;
  c.dim = 384;
  c.hidden_dim = 768;
  c.n_layers = 2;
  c.n_heads = 24;
  c.n_kv_heads = 12;
  c.head_dim = 16;
  c.vocab_size = 512;
  c.max_seq_len = 128;
  auto m = Model::synthetic(so);
  if (type == "f32") return m;
  QuantizeModelOptions q;
  q.type = parse_dtype(type);
  return std::make_shared<const Model>(quantize_model(m->impl(), q));
}

std::shared_ptr<const LoraAdapter> test_lora(const Model& m) {
  const ModelConfig& c = m.config();
  LoraSource src;
  src.source = "shard test adapter";
  src.alpha = 8.0f;
  src.b_layout = RopeLayout::kPairs;
  uint64_t s = 99;
  auto rnd = [&]() {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (static_cast<float>(s >> 40) / 16777216.0f - 0.5f) * 0.2f;
  };
  for (int l = 0; l < c.n_layers; ++l) {
    for (int t = 0; t < kLoraTargets; ++t) {
      LoraSourceMatrix x;
      x.layer = l;
      x.target = static_cast<LoraTarget>(t);
      x.name = "blk." + std::to_string(l) + "." + gguf_stem(x.target);
      x.r = 4;
      x.in = lora_in_dim(c, x.target);
      x.out = lora_out_dim(c, x.target);
      x.a.resize(size_t(x.r * x.in));
      x.b.resize(size_t(x.out * x.r));
      for (float& v : x.a) v = rnd();
      for (float& v : x.b) v = rnd();
      src.matrices.push_back(std::move(x));
    }
  }
  return finish_adapter(std::move(src), c, m.impl().rope_layout, LoraStorage::kAuto);
}

struct Run {
  std::vector<TokenId> ids;
  std::vector<float> logits;
};

Run greedy(const std::shared_ptr<const Model>& m, bool lora, int n_tokens) {
  Context ctx(m, ContextOptions{64, 1, 1});
  const int seq = ctx.add_sequence();
  if (lora) ctx.set_adapters(seq, {{test_lora(*m), 1.0f}});
  std::vector<DecodeRow> rows;
  for (TokenId t : {1, 40, 300, 7, 99}) rows.push_back({t, seq, false});
  rows.back().logits = true;
  Run r;
  const int v = m->config().vocab_size;
  for (int i = 0; i < n_tokens; ++i) {
    const float* l = ctx.decode(rows)[0];
    r.logits.insert(r.logits.end(), l, l + v);
    r.ids.push_back(static_cast<TokenId>(std::max_element(l, l + v) - l));
    rows.assign(1, DecodeRow{r.ids.back(), seq, true});
  }
  return r;
}

// Runs the split on n threads; returns rank 0's run (every rank's ids are checked equal).
Run split_run(const std::shared_ptr<const Model>& full, int n, bool lora, int n_tokens) {
  Group g(n);
  std::vector<Run> runs(static_cast<size_t>(n));
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::thread> th;
  for (int r = 0; r < n; ++r) {
    th.emplace_back([&, r] {
      try {
        auto mine = shard_model(full, r, n, std::make_shared<LocalCollective>(g, r));
        runs[size_t(r)] = greedy(mine, lora, n_tokens);
      } catch (const std::exception& e) {
        errors[size_t(r)] = e.what();
      }
    });
  }
  for (auto& t : th) t.join();
  for (int r = 0; r < n; ++r) {
    INFO("rank " << r);
    REQUIRE(errors[size_t(r)].empty());
    CHECK(runs[size_t(r)].ids == runs[0].ids);
    CHECK(runs[size_t(r)].logits == runs[0].logits);  // bit-identical on every rank
  }
  return runs[0];
}

}  // namespace

TEST_CASE("a model split across 2, 3, 4 ranks computes what the whole model does", "[shard]") {
  for (const char* type : {"f32", "q4"}) {
    const auto full = gqa_model(type);
    for (bool lora : {false, true}) {
      const Run ref = greedy(full, lora, 12);
      for (int n : {2, 3, 4}) {
        INFO(type << " N=" << n << (lora ? " +LoRA" : ""));
        const Run got = split_run(full, n, lora, 12);
        CHECK(got.ids == ref.ids);
        double worst = 0;
        for (size_t s = 0; s < ref.ids.size(); ++s) {
          double d = 0, a = 0;
          for (size_t i = 0; i < 512; ++i) {
            d = std::max(d, std::fabs(double(got.logits[s * 512 + i]) - double(ref.logits[s * 512 + i])));
            a = std::max(a, std::fabs(double(ref.logits[s * 512 + i])));
          }
          worst = std::max(worst, d / a);
        }
        CHECK(worst < (std::string(type) == "f32" ? 1e-4 : 2e-2));
      }
    }
  }
}

TEST_CASE("a split that cannot work is refused naming the numbers of ranks that can", "[shard]") {
  const auto full = gqa_model("q4");
  CHECK(valid_splits(full->impl(), 12) == std::vector<int>{1, 2, 3, 4, 6, 12});
  try {
    check_split(full->impl(), 5);
    FAIL("5 ranks accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("12 KV heads are not divisible by 5") != std::string::npos);
    CHECK(std::string(e.what()).find("can: 1, 2, 3, 4, 6, 12") != std::string::npos);
  }
  // 12 ranks: one KV head each (16 rows of q4 = 4 row groups, 32 Wo columns = one block).
  CHECK_NOTHROW(check_split(full->impl(), 12));
  CHECK_THROWS_WITH(shard_model(full, 0, 2, nullptr), Catch::Contains("needs a Collective"));
}

TEST_CASE("row and column slices of packed weights hold the right blocks", "[shard]") {
  using kernels::WeightType;
  for (WeightType t : {WeightType::kQ8, WeightType::kQ4, WeightType::kQ4M}) {
    const int64_t rows = 24, cols = 160;  // 6 row groups, 5 blocks
    std::vector<float> w(size_t(rows * cols));
    for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * float(i));
    OwnedQuantWeight q = quantize_weight(t, w.data(), rows, cols);
    Tensor full;
    full.name = "w";
    full.type = static_cast<DType>(t);
    full.layout = TensorLayout::kPacked;
    full.rows = rows;
    full.cols = cols;
    full.data = q.weight.packed;
    std::vector<uint8_t> all_rows(size_t(rows) * kernels::row_bytes(t, size_t(cols)));
    kernels::unpack(t, full.data, size_t(rows), size_t(cols), all_rows.data());
    const size_t rb = kernels::row_bytes(t, size_t(cols)), bb = kernels::row_bytes(t, 32);

    const Tensor r = slice_rows(full, 8, 20);  // row groups 2..4
    std::vector<uint8_t> got(size_t(12) * rb);
    kernels::unpack(t, r.data, 12, size_t(cols), got.data());
    CHECK(std::equal(got.begin(), got.end(), all_rows.begin() + 8 * rb));

    std::vector<std::shared_ptr<const void>> storage;
    const Tensor c = copy_cols(full, 64, 160, storage);  // blocks 2..4
    std::vector<uint8_t> gotc(size_t(rows) * 3 * bb);
    kernels::unpack(t, c.data, size_t(rows), 96, gotc.data());
    for (int64_t i = 0; i < rows; ++i) {
      INFO(kernels::to_string(t) << " row " << i);
      CHECK(std::equal(gotc.begin() + i * 3 * bb, gotc.begin() + (i + 1) * 3 * bb,
                       all_rows.begin() + i * rb + 2 * bb));
    }
    CHECK_THROWS(copy_cols(full, 16, 160, storage));  // not a block boundary
    CHECK_THROWS(slice_rows(full, 2, 20));            // not a row-group boundary
  }
}

namespace {
// Every tensor of two slices: same shape, type, layout and bytes.
void check_same_slice(const Model::Impl& a, const Model::Impl& b) {
  REQUIRE(a.shard.has_value());
  REQUIRE(b.shard.has_value());
  CHECK(a.shard->n_heads == b.shard->n_heads);
  CHECK(a.shard->hidden_dim == b.shard->hidden_dim);
  CHECK(a.shard->vocab0 == b.shard->vocab0);
  CHECK(a.shard->vocab1 == b.shard->vocab1);
  auto same = [](const Tensor& x, const Tensor& y, const std::string& what) {
    INFO(what);
    REQUIRE(x.empty() == y.empty());
    if (x.empty()) return;
    CHECK(x.rows == y.rows);
    CHECK(x.cols == y.cols);
    CHECK(x.type == y.type);
    CHECK(x.layout == y.layout);
    REQUIRE(x.bytes() == y.bytes());
    CHECK(std::memcmp(x.data, y.data, x.bytes()) == 0);
  };
  same(a.tok_embd, b.tok_embd, "tok_embd");
  same(a.output_norm, b.output_norm, "output_norm");
  same(a.output, b.output, "output");
  REQUIRE(a.layers.size() == b.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const LayerWeights &x = a.layers[l], &y = b.layers[l];
    const std::string p = "layer " + std::to_string(l) + " ";
    same(x.attn_norm, y.attn_norm, p + "attn_norm");
    same(x.wq, y.wq, p + "wq");
    same(x.wk, y.wk, p + "wk");
    same(x.wv, y.wv, p + "wv");
    same(x.wo, y.wo, p + "wo");
    same(x.ffn_norm, y.ffn_norm, p + "ffn_norm");
    same(x.w_gate, y.w_gate, p + "w_gate");
    same(x.w_up, y.w_up, p + "w_up");
    same(x.w_down, y.w_down, p + "w_down");
  }
}
}  // namespace

TEST_CASE("a GGUF file loaded slice by slice holds the whole model's slices", "[shard][gguf]") {
  test::TempDir dir;
  struct Case {
    GgmlType type;
    int dim, hidden, heads, kv, hd;
    std::vector<int> ns;  // the splits that work
  };
  // Q4_0 / F32: 32-value blocks; Q4_K: 256-value super-blocks, so only N = 2 splits this shape.
  const Case cases[] = {{GgmlType::kQ4_0, 384, 768, 24, 12, 16, {2, 3, 4}},
                        {GgmlType::kF32, 384, 768, 24, 12, 16, {2, 3}},
                        {GgmlType::kQ4_K, 512, 1024, 8, 4, 64, {2}}};
  for (const Case& k : cases) {
    SyntheticModelOptions so;
    so.seed = 3;
    so.demo_text = true;
    ModelConfig& c = so.config;
    c.dim = k.dim;
    c.hidden_dim = k.hidden;
    c.n_layers = 2;
    c.n_heads = k.heads;
    c.n_kv_heads = k.kv;
    c.head_dim = k.hd;
    c.vocab_size = 512;
    c.max_seq_len = 64;
    const std::string path = dir.file("m" + std::to_string(int(k.type)) + ".gguf");
    write_gguf_model(Model::synthetic(so)->impl(), k.type, path);
    const auto full = Model::load(path);
    for (int n : k.ns) {
      Group g(n);
      for (int r = 0; r < n; ++r) {
        INFO("ggml type " << int(k.type) << " N=" << n << " rank " << r);
        auto comm = std::make_shared<LocalCollective>(g, r);
        size_t whole = 0;
        const auto a = shard_model(full, r, n, comm);
        const auto b = load_shard(path, {}, r, n, comm, &whole);
        CHECK(whole == full->weight_bytes());
        check_same_slice(a->impl(), b->impl());
        CHECK(b->impl().comm == comm);
      }
    }
    if (k.type == GgmlType::kQ4_K) {
      // Refused from the metadata, before any tensor is read, naming the Ns that work.
      Group g(4);
      CHECK_THROWS_WITH(load_shard(path, {}, 0, 4, std::make_shared<LocalCollective>(g, 0)),
                        Catch::Contains("4 ranks cannot split this model") &&
                            Catch::Contains("256-value blocks of q4_k") &&
                            Catch::Contains("numbers of ranks that can: 1, 2"));
    }
  }
}
