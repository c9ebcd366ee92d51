// Attention decode over the KV cache and the float ops, every variant this CPU has plus the refs
// in one binary, single-threaded, so ratios come from one run.
//
// BM_attn_f32_<kv>_<isa>/ctx:N — one decode step of one layer with TinyLlama-1.1B heads
// (32 query heads, 4 kv heads, head_dim 64): 4 kernel calls of 8 query heads each over N
// positions. bytes = K + V bytes read (+ q8 scales). BM_stream_read/ctx:N reads as many bytes:
// the memory-bound floor. Vector ops use TinyLlama sizes (dim 2048, ffn 5632, vocab 32000).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "attention/attention.hpp"
#include "vector/vector.hpp"

namespace {

using piquant::kernels::AttnArgs;
using piquant::kernels::AttnKernel;
using piquant::kernels::KvType;

constexpr size_t kHeads = 32, kKvHeads = 4, kHd = 64, kGroup = kHeads / kKvHeads;

bool on_cpu(piquant::kernels::CpuFeature f) {
  return f == piquant::kernels::CpuFeature::kNone ||
         (piquant::kernels::cpu_info().detected & uint32_t(f)) != 0;
}

struct KvData {
  std::vector<uint8_t> k, v;  // [kv head][ctx][row bytes]
  std::vector<float> ks, vs;  // q8 scales
  size_t bytes = 0;
};

KvData make_kv(KvType type, size_t ctx) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  KvData d;
  const size_t row = piquant::kernels::kv_row_bytes(type, kHd), nb = kHd / 32;
  d.k.resize(kKvHeads * ctx * row);
  d.v.resize(kKvHeads * ctx * row);
  d.ks.resize(kKvHeads * ctx * nb);
  d.vs.resize(kKvHeads * ctx * nb);
  std::vector<float> x(kHd);
  for (int which = 0; which < 2; ++which) {
    uint8_t* base = which ? d.v.data() : d.k.data();
    float* sc = which ? d.vs.data() : d.ks.data();
    for (size_t r = 0; r < kKvHeads * ctx; ++r) {
      for (float& e : x) e = nd(rng);
      if (type == KvType::kF32) std::memcpy(base + r * row, x.data(), row);
      if (type == KvType::kF16) {
        auto* h = reinterpret_cast<uint16_t*>(base + r * row);
        for (size_t j = 0; j < kHd; ++j) h[j] = piquant::kernels::f32_to_f16_scalar(x[j]);
      }
      if (type == KvType::kQ8) {
        piquant::kernels::kv_quantize_q8_row(reinterpret_cast<int8_t*>(base + r * row), sc + r * nb,
                                             x.data(), kHd);
      }
    }
  }
  d.bytes = 2 * kKvHeads * ctx * (row + (type == KvType::kQ8 ? nb * 4 : 0));
  return d;
}

void bm_attention(benchmark::State& st, const AttnKernel* kern, size_t ctx) {
  const KvData kv = make_kv(kern->kv, ctx);
  std::vector<float> q(kHeads * kHd, 0.1f), out(kHeads * kHd);
  const size_t row = piquant::kernels::kv_row_bytes(kern->kv, kHd), nb = kHd / 32;
  for (auto _ : st) {
    for (size_t h = 0; h < kKvHeads; ++h) {
      AttnArgs a{};
      a.q = q.data() + h * kGroup * kHd;
      a.q_stride = kHd;
      a.out = out.data() + h * kGroup * kHd;
      a.out_stride = kHd;
      a.n_q = kGroup;
      a.head_dim = kHd;
      a.n_kv = ctx;
      a.k = kv.k.data() + h * ctx * row;
      a.v = kv.v.data() + h * ctx * row;
      a.k_scale = kv.ks.data() + h * ctx * nb;
      a.v_scale = kv.vs.data() + h * ctx * nb;
      a.scale = 0.125f;
      kern->run(a);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * kv.bytes));
  st.counters["GFLOPS"] = benchmark::Counter(4.0 * kHeads * kHd * double(ctx),
                                             benchmark::Counter::kIsIterationInvariantRate);
}

void bm_stream(benchmark::State& st, size_t bytes) {
  std::vector<float> buf(bytes / 4, 1.0f);
  for (auto _ : st) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= buf.size(); i += 4) {
      s0 += buf[i], s1 += buf[i + 1], s2 += buf[i + 2], s3 += buf[i + 3];
    }
    benchmark::DoNotOptimize(s0 + s1 + s2 + s3);
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * bytes));
}

void register_vector(const piquant::kernels::VectorKernels* t) {
  const std::string isa = t->isa;
  auto vec = [](size_t n, float amp) {
    std::mt19937 rng(2);
    std::normal_distribution<float> nd(0.0f, amp);
    std::vector<float> v(n);
    for (float& x : v) x = nd(rng);
    return v;
  };
  benchmark::RegisterBenchmark(("BM_rmsnorm_f32_" + isa + "/n:2048").c_str(),
                               [t, vec](benchmark::State& st) {
                                 auto x = vec(2048, 1), w = vec(2048, 1);
                                 std::vector<float> y(2048);
                                 for (auto _ : st) {
                                   t->rmsnorm(y.data(), x.data(), w.data(), 2048, 1e-5f);
                                   benchmark::DoNotOptimize(y.data());
                                 }
                               });
  benchmark::RegisterBenchmark(("BM_swiglu_f32_" + isa + "/n:5632").c_str(),
                               [t, vec](benchmark::State& st) {
                                 auto g = vec(5632, 2), u = vec(5632, 1);
                                 std::vector<float> y(5632);
                                 for (auto _ : st) {
                                   t->swiglu(y.data(), g.data(), u.data(), 5632);
                                   benchmark::DoNotOptimize(y.data());
                                 }
                               });
  benchmark::RegisterBenchmark(("BM_softmax_f32_" + isa + "/n:32000").c_str(),
                               [t, vec](benchmark::State& st) {
                                 const auto x0 = vec(32000, 3);
                                 auto x = x0;
                                 for (auto _ : st) {
                                   t->softmax(x.data(), 32000);
                                   benchmark::DoNotOptimize(x.data());
                                 }
                               });
  for (const bool pairs : {true, false}) {
    benchmark::RegisterBenchmark(
        ("BM_rope_f32_" + std::string(pairs ? "pairs_" : "halves_") + isa + "/heads:36,hd:64")
            .c_str(),
        [t, vec, pairs](benchmark::State& st) {
          auto x = vec(36 * 64, 1);  // 32 q + 4 k heads
          // a real rotation, so repeated application keeps x finite and normal
          std::vector<float> f(32), c(32), s(32);
          piquant::kernels::rope_freqs(f.data(), 64, 10000.0f);
          piquant::kernels::rope_cos_sin(c.data(), s.data(), f.data(), 32, 1000);
          for (auto _ : st) {
            (pairs ? t->rope_pairs : t->rope_halves)(x.data(), 36, 64, c.data(), s.data());
            benchmark::DoNotOptimize(x.data());
          }
        });
  }
  benchmark::RegisterBenchmark(("BM_add_f32_" + isa + "/n:2048").c_str(),
                               [t, vec](benchmark::State& st) {
                                 auto x = vec(2048, 1), y = vec(2048, 1);
                                 for (auto _ : st) {
                                   t->add(x.data(), y.data(), 2048);
                                   benchmark::DoNotOptimize(x.data());
                                 }
                               });
  benchmark::RegisterBenchmark(("BM_cvt_f16_f32_" + isa + "/n:256").c_str(),
                               [t, vec](benchmark::State& st) {
                                 auto x = vec(256, 1);
                                 std::vector<uint16_t> h(256);
                                 for (auto _ : st) {
                                   t->f32_to_f16(h.data(), x.data(), 256);
                                   benchmark::DoNotOptimize(h.data());
                                 }
                               });
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  size_t n = 0;
  const AttnKernel* all = piquant::kernels::attn_kernels(&n);
  for (const size_t ctx : {512u, 2048u, 4096u}) {
    for (const KvType kv : {KvType::kF16, KvType::kQ8, KvType::kF32}) {
      for (size_t i = 0; i < n; ++i) {
        if (all[i].kv != kv || !on_cpu(all[i].needs)) continue;
        const AttnKernel* k = &all[i];
        benchmark::RegisterBenchmark(
            ("BM_" + std::string(k->name) + "/ctx:" + std::to_string(ctx)).c_str(),
            [k, ctx](benchmark::State& st) { bm_attention(st, k, ctx); });
      }
    }
    const size_t f16_bytes = 2 * kKvHeads * ctx * kHd * 2;
    benchmark::RegisterBenchmark(("BM_stream_read/ctx:" + std::to_string(ctx)).c_str(),
                                 [f16_bytes](benchmark::State& st) { bm_stream(st, f16_bytes); });
  }
  size_t nt = 0;
  const piquant::kernels::VectorKernels* const* tables =
      piquant::kernels::vector_kernel_tables(&nt);
  for (size_t i = 0; i < nt; ++i) {
    if (on_cpu(tables[i]->needs)) register_vector(tables[i]);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
