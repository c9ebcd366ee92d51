// KvStore: sizes, append/readback per KV type, errors, and attend() (prefill with causal masking
// inside the chunk, decode) against the double oracle; identical output for any thread count.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "kernels/test_attention_oracle.hpp"
#include "model/kv_cache.hpp"
#include "piquant/error.hpp"
#include "threads/thread_pool.hpp"

using piquant::Error;
using piquant::ErrorCode;
using piquant::KvShape;
using piquant::KvStore;
using piquant::KvType;

namespace {

ErrorCode code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode::kInternal;  // "did not throw"
}

std::vector<float> randn(size_t n, std::mt19937& rng, float amp = 1.0f) {
  std::normal_distribution<float> nd(0.0f, amp);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

/// The stored rows [0, n) of one kv head as oracle input.
piquant::test::KvRows rows_of(const KvStore& kv, int layer, int h, int n, bool is_v) {
  piquant::test::KvRows r;
  r.hd = static_cast<size_t>(kv.shape().head_dim);
  r.n = static_cast<size_t>(n);
  r.deq.resize(r.n * r.hd);
  for (int t = 0; t < n; ++t) {
    for (int j = 0; j < kv.shape().head_dim; ++j) {
      r.deq[size_t(t) * r.hd + size_t(j)] =
          static_cast<double>(is_v ? kv.v_at(layer, h, t, j) : kv.k_at(layer, h, t, j));
    }
  }
  return r;
}

}  // namespace

TEST_CASE("kv cache reports its memory and rejects bad shapes", "[lib][kv_cache]") {
  const KvShape s{3, 100, 4, 64};
  CHECK(KvStore(s, KvType::kF32).memory_bytes() == 2u * 3 * 4 * 100 * 64 * 4);
  CHECK(KvStore(s, KvType::kF16).memory_bytes() == 2u * 3 * 4 * 100 * 64 * 2);
  CHECK(KvStore(s, KvType::kQ8).memory_bytes() == 2u * 3 * 4 * 100 * (64 + 2 * 4));
  CHECK(KvStore(s).type() == KvType::kF16);
  CHECK(KvStore(s, KvType::kF16).bytes_per_token() == 2u * 3 * 4 * 64 * 2);
  WARN("kv cache kernel for f16, head_dim 64: " << KvStore(s).kernel_name());

  CHECK(code_of([] { KvStore({0, 10, 1, 64}); }) == ErrorCode::kInvalidArgument);
  CHECK(code_of([] { KvStore({1, -1, 1, 64}); }) == ErrorCode::kInvalidArgument);
  CHECK(code_of([] { KvStore({1, 10, 1, 300}); }) == ErrorCode::kUnsupported);
  CHECK(code_of([] { KvStore({1 << 30, 1 << 30, 1 << 30, 256}); }) == ErrorCode::kInvalidArgument);
  CHECK(piquant::parse_kv_type("q8") == KvType::kQ8);
  CHECK(piquant::parse_kv_type("int8") == KvType::kQ8);
  CHECK(piquant::parse_kv_type("f16") == KvType::kF16);
  CHECK(code_of([] { piquant::parse_kv_type("bf16"); }) == ErrorCode::kInvalidArgument);
}

TEST_CASE("kv cache append stores rows in each type and checks positions", "[lib][kv_cache]") {
  const KvType type = GENERATE(KvType::kF32, KvType::kF16, KvType::kQ8);
  const KvShape s{2, 16, 2, 40};  // head_dim 40: a short last q8 block
  KvStore kv(s, type);
  std::mt19937 rng(7);
  const size_t kv_dim = 2 * 40;
  const auto k = randn(3 * kv_dim, rng, 3.0f), v = randn(3 * kv_dim, rng, 0.01f);
  kv.append(1, 0, 3, k.data(), v.data());
  CHECK(kv.filled(1) == 3);
  CHECK(kv.filled(0) == 0);
  for (int t = 0; t < 3; ++t) {
    for (int h = 0; h < 2; ++h) {
      for (int b = 0; b < 2; ++b) {  // q8 blocks [0, 32) and [32, 40)
        const int j0 = b * 32, j1 = b ? 40 : 32;
        for (const bool is_v : {false, true}) {
          const float* src = (is_v ? v.data() : k.data()) + size_t(t) * kv_dim + size_t(h) * 40;
          float amax = 0.0f;
          for (int j = j0; j < j1; ++j) amax = std::max(amax, std::fabs(src[j]));
          for (int j = j0; j < j1; ++j) {
            const float got = is_v ? kv.v_at(1, h, t, j) : kv.k_at(1, h, t, j);
            // f16: half an ulp of 11 bits; q8: half a step d = amax / 127 (+ float rounding)
            const float bound = type == KvType::kF32   ? 0.0f
                                : type == KvType::kF16 ? std::fabs(src[j]) * 0x1p-11f
                                                       : amax / 127.0f * 0.5f * 1.0001f;
            CAPTURE(t, h, j, is_v, src[j], got);
            REQUIRE(std::fabs(got - src[j]) <= bound);
          }
        }
      }
    }
  }
  CHECK(code_of([&] { kv.append(1, 4, 1, k.data(), v.data()); }) == ErrorCode::kInvalidArgument);
  CHECK(code_of([&] { kv.append(1, 10, 1, k.data(), v.data()); }) == ErrorCode::kInvalidArgument);
  kv.append(1, 3, 1, k.data(), v.data());
  CHECK(code_of([&] { kv.append(2, 0, 1, k.data(), v.data()); }) == ErrorCode::kOutOfRange);
  CHECK(code_of([&] { kv.append(0, 15, 2, k.data(), v.data()); }) == ErrorCode::kContextFull);
  CHECK(code_of([&] { kv.append(0, 0, 0, k.data(), v.data()); }) == ErrorCode::kInvalidArgument);
  kv.append(1, 1, 1, k.data(), v.data());  // rewriting an earlier position is fine
  CHECK(kv.filled(1) == 4);
  kv.truncate(2);
  CHECK(kv.filled(1) == 2);
  std::vector<float> q(8 * 40), out(8 * 40);
  CHECK(code_of([&] { kv.attend(1, q.data(), 8, 2, 1, out.data(), nullptr); }) ==
        ErrorCode::kOutOfRange);
  CHECK(code_of([&] { kv.attend(1, q.data(), 3, 0, 1, out.data(), nullptr); }) ==
        ErrorCode::kInvalidArgument);
  CHECK(code_of([&] { kv.attend(1, q.data(), 1, 0, 1, out.data(), nullptr); }) ==
        ErrorCode::kInvalidArgument);
}

TEST_CASE("kv cache attend matches the oracle for prefill chunks and decode, any thread count",
          "[lib][kv_cache]") {
  const KvType type = GENERATE(KvType::kF32, KvType::kF16, KvType::kQ8);
  const int hd = GENERATE(64, 128);
  const int group = GENERATE(1, 4, 8);
  const int n_kv_heads = 2, n_heads = n_kv_heads * group, n_layers = 2, n_ctx = 80;
  KvStore kv({n_layers, n_ctx, n_kv_heads, hd}, type);
  std::mt19937 rng(static_cast<uint32_t>(hd * 10 + group) + static_cast<uint32_t>(type));
  const size_t kv_dim = size_t(n_kv_heads) * size_t(hd), q_dim = size_t(n_heads) * size_t(hd);
  const int layer = 1;

  // Chunks: a prompt of 37, a prefill chunk of 6 at pos0 = 37, then 3 decode steps.
  struct Step {
    int pos0, n;
  };
  const Step steps[] = {{0, 37}, {37, 6}, {43, 1}, {44, 1}, {45, 1}};
  piquant::ThreadPool pool2(2), pool3(3);
  for (const Step& st : steps) {
    const auto k = randn(size_t(st.n) * kv_dim, rng), v = randn(size_t(st.n) * kv_dim, rng);
    kv.append(layer, st.pos0, st.n, k.data(), v.data());
    const auto q = randn(size_t(st.n) * q_dim, rng, 1.5f);
    std::vector<float> out1(q.size()), out2(q.size()), out3(q.size()), outn(q.size());
    kv.attend(layer, q.data(), n_heads, st.pos0, st.n, out1.data(), nullptr);
    kv.attend(layer, q.data(), n_heads, st.pos0, st.n, out2.data(), &pool2);
    kv.attend(layer, q.data(), n_heads, st.pos0, st.n, out3.data(), &pool3);
    // bitwise identical regardless of the split
    REQUIRE(std::memcmp(out1.data(), out2.data(), out1.size() * 4) == 0);
    REQUIRE(std::memcmp(out1.data(), out3.data(), out1.size() * 4) == 0);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    std::vector<piquant::test::KvRows> kr, vr;  // all filled rows per kv head
    for (int kvh = 0; kvh < n_kv_heads; ++kvh) {
      kr.push_back(rows_of(kv, layer, kvh, st.pos0 + st.n, false));
      vr.push_back(rows_of(kv, layer, kvh, st.pos0 + st.n, true));
    }
    for (int i = 0; i < st.n; ++i) {
      const int n_seen = st.pos0 + i + 1;  // causal: positions [0, pos0 + i]
      for (int h = 0; h < n_heads; ++h) {
        const auto& kh = kr[size_t(h / group)];
        const auto& vh = vr[size_t(h / group)];
        std::vector<double> ref, tol;
        const size_t off = size_t(i) * q_dim + size_t(h) * size_t(hd);
        piquant::test::attention_oracle(q.data() + off, kh, vh, size_t(n_seen), scale, ref, tol);
        for (int j = 0; j < hd; ++j) {
          const double err = std::fabs(static_cast<double>(out1[off + size_t(j)]) - ref[size_t(j)]);
          if (!(err <= tol[size_t(j)])) {
            CAPTURE(kv.kernel_name(), st.pos0, st.n, i, h, j, hd, group, err, tol[size_t(j)]);
            FAIL("attend output outside the derived tolerance");
          }
        }
      }
    }
  }
}

TEST_CASE("kv store sequences are independent, forked by copy_prefix and truncated alone",
          "[lib][kv_cache]") {
  const KvType type = GENERATE(KvType::kF32, KvType::kF16, KvType::kQ8);
  const int n_layers = 2, n_ctx = 12, n_kv = 2, hd = 40, n_heads = 4;
  KvStore multi({n_layers, n_ctx, n_kv, hd, 3}, type);
  KvStore single({n_layers, n_ctx, n_kv, hd}, type);
  CHECK(multi.memory_bytes() == 3 * single.memory_bytes());
  CHECK(multi.bytes_per_token() == single.bytes_per_token());
  std::mt19937 rng(9);
  const size_t kvd = size_t(n_kv) * hd;
  const auto k0 = randn(5 * kvd, rng), v0 = randn(5 * kvd, rng);
  const auto k1 = randn(7 * kvd, rng), v1 = randn(7 * kvd, rng);
  for (int l = 0; l < n_layers; ++l) {
    multi.append(l, 0, 5, k0.data(), v0.data(), 0);
    multi.append(l, 0, 7, k1.data(), v1.data(), 2);
    single.append(l, 0, 7, k1.data(), v1.data());
  }
  CHECK(multi.length(0) == 5);
  CHECK(multi.length(1) == 0);
  CHECK(multi.length(2) == 7);
  // Sequence 2 attends exactly as a store holding only its rows.
  const auto q = randn(size_t(n_heads) * hd * 2, rng);
  std::vector<float> a(q.size()), b(q.size());
  multi.attend(1, q.data(), n_heads, 5, 2, a.data(), nullptr, 0.0f, 2);
  single.attend(1, q.data(), n_heads, 5, 2, b.data(), nullptr);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  // attend_rows over rows of two sequences = each alone.
  const piquant::AttnRow rows[2] = {{&multi, 0, 4}, {&multi, 2, 6}};
  std::vector<float> both(q.size()), r0(q.size() / 2), r2(q.size() / 2);
  piquant::attend_rows(0, rows, 2, q.data(), n_heads, both.data(), nullptr);
  multi.attend(0, q.data(), n_heads, 4, 1, r0.data(), nullptr, 0.0f, 0);
  multi.attend(0, q.data() + q.size() / 2, n_heads, 6, 1, r2.data(), nullptr, 0.0f, 2);
  CHECK(std::memcmp(both.data(), r0.data(), r0.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(both.data() + r0.size(), r2.data(), r2.size() * sizeof(float)) == 0);
  // Fork: sequence 1 gets the first 4 positions of sequence 2, element for element.
  multi.copy_prefix(2, 1, 4);
  CHECK(multi.length(1) == 4);
  for (int l = 0; l < n_layers; ++l) {
    for (int h = 0; h < n_kv; ++h) {
      for (int t = 0; t < 4; ++t) {
        for (int j = 0; j < hd; j += 7) {
          REQUIRE(multi.k_at(l, h, t, j, 1) == multi.k_at(l, h, t, j, 2));
          REQUIRE(multi.v_at(l, h, t, j, 1) == multi.v_at(l, h, t, j, 2));
        }
      }
    }
  }
  // Truncating one sequence leaves the others.
  multi.truncate(2, 2);
  CHECK(multi.length(2) == 2);
  CHECK(multi.length(0) == 5);
  CHECK(multi.length(1) == 4);
  CHECK(code_of([&] { multi.copy_prefix(2, 1, 3); }) == ErrorCode::kOutOfRange);
  CHECK(code_of([&] { multi.length(3); }) == ErrorCode::kOutOfRange);
  CHECK(code_of([&] { multi.append(0, 0, 1, k0.data(), v0.data(), -1); }) == ErrorCode::kOutOfRange);
  CHECK(code_of([&] { KvStore({1, 4, 1, 32, 0}); }) == ErrorCode::kInvalidArgument);
}
