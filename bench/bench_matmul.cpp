// Quantized matmul kernels (kernels/matmul) on the weight shapes of real models, every ISA path
// this CPU has, 1 and 2 threads through the library's thread pool, with a streaming-read
// baseline of an equally large buffer measured in the same binary (see bench/README.md).
//
//   BM_stream_read/<bytes>/threads:T               read <bytes> once (64-byte aligned buffer)
//   BM_gemv_<type>/<M>x<K>/isa:<isa>/threads:T       y = W x, W: M rows x K, one token
//   BM_gemm_<type>/<M>x<K>/<N>/isa:<isa>/threads:T   N tokens at once
//
//   .../cold/...                                     the same with the buffer taken in turn from
//                                                    copies totalling 256 MB: read from DRAM
//
// Counters (from process CPU time / threads, see CpuTimer): weight_GBps (packed weight bytes / s),
// GOPS (2 M N K / s), efficiency (GEMV weight_GBps / the median BM_stream_read GB/s of the same
// byte count, thread count and temperature), vs_gemv (GEMM only: N x the median GEMV time of the
// same shape, ISA and threads / the GEMM time = how much faster per token than calling GEMV N
// times), vs_cold_gemv (the same against the cold GEMV, when it ran), step_vs_1 (cold GEMM of
// N <= 16 tokens only: its time over the cold GEMV's = what a decode step of N sequences costs
// against a step of one).
//
// Options (before the Google Benchmark flags): --isa=avx2,avx512vnni,... (default: every path
// the CPU has except ref; PIQUANT_BENCH_ISA does the same), --threads=1,2 (default 1,2),
// --types=q4,q8,q4m,q4_k,q5_k,q6_k,q5_0,q5_1 (default q4,q8), --n=128,512 (GEMM token counts),
// --shapes=5632x2048,... (default: all). The K-quant efficiency against q4_0 (issue 18):
//   bench_matmul --types=q4,q4_k,q5_k,q6_k,q5_0 --shapes=5632x2048 --threads=1 --benchmark_filter=cold
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "common/aligned.hpp"
#include "common/pack.hpp"
#include "matmul/matmul.hpp"
#include "threads/thread_pool.hpp"

namespace {

namespace k = piquant::kernels;
using k::AlignedBytes;
using k::WeightType;

struct Shape {
  size_t m, k;
};
// TinyLlama-1.1B (dim 2048, kv 256, ffn 5632, vocab 32000) and Llama-3.2-1B (kv 512, ffn
// 8192, vocab 128256): rows (outputs) x K (inputs).
const Shape kShapes[] = {{2048, 2048}, {256, 2048},  {5632, 2048}, {2048, 5632},  {32000, 2048},
                         {512, 2048},  {8192, 2048}, {2048, 8192}, {128256, 2048}};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Seconds per call from the process CPU time divided by the thread count: on a machine shared
// with other jobs, wall time mostly measures preemption; CPU time of the working threads (the
// pool's workers spin, not sleep, between back-to-back calls) is what the kernel costs.
struct CpuTimer {
  static double now() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  }
  double t0 = now();
  double per_call(size_t calls, int threads) const {
    return (now() - t0) / double(threads) / double(calls);
  }
};

piquant::ThreadPool& pool(int threads) {
  static std::map<int, std::unique_ptr<piquant::ThreadPool>> pools;
  auto& p = pools[threads];
  if (!p) p = std::make_unique<piquant::ThreadPool>(threads);
  return *p;
}

// "cold" variants: the buffer (weights, or the streaming read's bytes) is one of several copies
// that together take kColdBytes, used in turn, so every call reads it from DRAM as decode does
// (a model's weights pass once per token and do not stay in any cache). Without it a matrix that
// fits the last-level cache (5632x2048 q4 is 6.5 MB; this box has a 32 MB L3) is read from there.
constexpr size_t kColdBytes = size_t(256) << 20;
size_t cold_copies(size_t bytes) { return std::max<size_t>(1, (kColdBytes + bytes - 1) / bytes); }

// Seconds per iteration of earlier benchmarks of this run, for the ratio counters.
std::map<std::tuple<size_t, int, bool>, std::vector<double>> g_stream_gbps;  // bytes, threads, cold
std::map<std::string, std::vector<double>> g_gemv_secs;               // "q4/MxK/isa/T"
std::map<std::string, std::vector<double>> g_cold_gemv_secs;          // the same, cold

// --- the streaming-read baseline -----------------------------------------------------------
#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t read_avx2(const uint8_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    a0 = _mm256_xor_si256(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_xor_si256(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_xor_si256(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_xor_si256(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i a = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  uint64_t r = uint64_t(_mm256_extract_epi64(a, 0)) ^ uint64_t(_mm256_extract_epi64(a, 1)) ^
               uint64_t(_mm256_extract_epi64(a, 2)) ^ uint64_t(_mm256_extract_epi64(a, 3));
  for (; i < n; ++i) r ^= p[i];
  return r;
}
#endif

uint64_t read_plain(const uint8_t* p, size_t n) {  // vectorized by the compiler (SSE2 / NEON)
  uint64_t a[8] = {};
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (int j = 0; j < 8; ++j) {
      uint64_t v;
      std::memcpy(&v, p + i + 8 * j, 8);
      a[j] ^= v;
    }
  }
  uint64_t r = 0;
  for (int j = 0; j < 8; ++j) r ^= a[j];
  for (; i < n; ++i) r ^= p[i];
  return r;
}

uint64_t read_bytes(const uint8_t* p, size_t n) {
#if defined(__x86_64__)
  if (k::cpu_info().detected & uint32_t(k::CpuFeature::kAvx2)) return read_avx2(p, n);
#endif
  return read_plain(p, n);
}

// Reads the whole buffer once, split across the pool like the GEMV splits rows (64-byte units).
void stream_pass(const AlignedBytes& buf, piquant::ThreadPool& tp) {
  const size_t lines = buf.size() / 64;
  std::atomic<uint64_t> sink{0};
  tp.parallel_for(lines, 1, [&](size_t l0, size_t l1) {
    sink.fetch_xor(read_bytes(buf.data() + l0 * 64, (l1 - l0) * 64));  // keep the reads
  });
  benchmark::DoNotOptimize(sink.load());
}

// `copies` buffers of `bytes` (rounded down to 64), pages touched.
std::vector<AlignedBytes> stream_buffers(size_t bytes, size_t copies) {
  std::vector<AlignedBytes> bufs(copies);
  for (AlignedBytes& b : bufs) {
    b.resize(bytes / 64 * 64);
    std::memset(b.data(), 1, b.size());
  }
  return bufs;
}

void bm_stream(benchmark::State& st, size_t bytes, int threads, bool cold) {
  const std::vector<AlignedBytes> bufs = stream_buffers(bytes, cold ? cold_copies(bytes) : 1);
  piquant::ThreadPool& tp = pool(threads);
  stream_pass(bufs[0], tp);
  size_t next = 0;
  const CpuTimer timer;
  for (auto _ : st) {
    stream_pass(bufs[next], tp);
    next = next + 1 == bufs.size() ? 0 : next + 1;
  }
  const double secs = timer.per_call(st.iterations(), threads);
  const size_t size = bufs[0].size();
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * static_cast<int64_t>(size));
  const double gbps = static_cast<double>(size) / secs * 1e-9;
  st.counters["GBps"] = gbps;
  g_stream_gbps[{bytes, threads, cold}].push_back(gbps);
}

// Baseline GB/s for `bytes`, `threads` and `cold`: the median of this run's BM_stream_read
// results, or (when the filter skipped them) a quick median of 7 passes (over the copies).
double stream_baseline(size_t bytes, int threads, bool cold) {
  auto it = g_stream_gbps.find({bytes, threads, cold});
  if (it != g_stream_gbps.end() && !it->second.empty()) return median(it->second);
  const size_t copies = cold ? cold_copies(bytes) : 1;
  const std::vector<AlignedBytes> bufs = stream_buffers(bytes, copies);
  piquant::ThreadPool& tp = pool(threads);
  std::vector<double> v;
  for (size_t r = 0; r < 8 * copies; ++r) {
    const CpuTimer timer;
    stream_pass(bufs[r % copies], tp);
    const double s = timer.per_call(1, threads);
    if (r > 0) v.push_back(static_cast<double>(bufs[0].size()) / s * 1e-9);
  }
  return median(v);
}

// --- weights and activations ---------------------------------------------------------------
// Random packed weights with sane fp16 scales (values do not change the speed; NaN/denormal
// scales could). One matrix is cached at a time (the registration order groups by shape).
struct Weights {
  WeightType type;
  size_t m = 0, k = 0;
  AlignedBytes packed;
};

const Weights& weights(WeightType t, size_t m, size_t kk) {
  static std::unique_ptr<Weights> w;
  if (w && w->type == t && w->m == m && w->k == kk) return *w;
  w.reset();
  w = std::make_unique<Weights>();
  w->type = t;
  w->m = m;
  w->k = kk;
  w->packed.resize(k::packed_size(t, m, kk));
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= w->packed.size(); i += 8) {
    const uint64_t r = rng();
    std::memcpy(w->packed.data() + i, &r, 8);
  }
  auto scale = [&](uint8_t* p) {
    const uint16_t h = static_cast<uint16_t>(0x2000 + (rng() & 0x3FF));  // ~2^-7
    std::memcpy(p, &h, 2);
  };
  const size_t bb = k::block_bytes(t);
  switch (t) {
    case WeightType::kQ8:
    case WeightType::kQ4:
    case WeightType::kQ4M: {  // group block: 4 (q4m: 8) fp16 scales first
      const size_t gb = k::kRowInterleave * bb, scales = t == WeightType::kQ4M ? 8 : 4;
      for (size_t g = 0; g + gb <= w->packed.size(); g += gb) {
        for (size_t s = 0; s < scales; ++s) scale(w->packed.data() + g + 2 * s);
      }
      break;
    }
    default:  // GGUF blocks one after the other: d (+ dmin / m) at the block's start, Q6_K's last
      for (size_t b = 0; b + bb <= w->packed.size(); b += bb) {
        uint8_t* p = w->packed.data() + b;
        if (t == WeightType::kQ6K) {
          scale(p + offsetof(k::BlockQ6K, d));
        } else {
          scale(p);
          if (t != WeightType::kQ5_0) scale(p + 2);
        }
      }
  }
  return *w;
}

AlignedBytes activations(size_t n, size_t kk) {
  const size_t nb = kk / k::kBlock;
  AlignedBytes buf(n * nb * sizeof(k::BlockQ8A));
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(kk);
  auto* act = reinterpret_cast<k::BlockQ8A*>(buf.data());
  for (size_t t = 0; t < n; ++t) {
    for (float& v : x) v = nd(rng);
    k::quant_q8a_f32_ref(x.data(), act + t * nb, kk);
  }
  return buf;
}

void run_matmul(const k::GemmKernel& kr, const k::GemmArgs& args, size_t m,
                piquant::ThreadPool& tp) {
  tp.parallel_for(m, k::kRowInterleave, [&](size_t m0, size_t m1) {
    k::GemmArgs a = args;
    a.m0 = m0;
    a.m1 = m1;
    kr.run(a);
  });
}

struct Case {
  const k::GemmKernel* kernel;
  std::string isa;
  WeightType type;
  Shape shape;
  size_t n;
  int threads;
  bool cold = false;
  std::string key() const {
    return std::string(k::to_string(type)) + "/" + std::to_string(shape.m) + "x" +
           std::to_string(shape.k) + "/" + isa + "/" + std::to_string(threads);
  }
};

// Times `iters` calls (after one warm-up call) and returns seconds per call.
template <class F>
double time_calls(F&& f, int iters, int threads) {
  f();
  const CpuTimer timer;
  for (int i = 0; i < iters; ++i) f();
  return timer.per_call(static_cast<size_t>(iters), threads);
}

void bm_matmul(benchmark::State& st, Case c) {
  const Weights& w = weights(c.type, c.shape.m, c.shape.k);
  const AlignedBytes act = activations(c.n, c.shape.k);
  std::vector<float> y(c.n * c.shape.m);
  k::GemmArgs args{};
  args.m1 = c.shape.m;
  args.n1 = c.n;
  args.k = c.shape.k;
  args.act = act.data();
  args.act_stride = c.shape.k / k::kBlock * sizeof(k::BlockQ8A);
  args.wt = w.packed.data();
  args.dst = y.data();
  args.dst_stride = c.shape.m;
  piquant::ThreadPool& tp = pool(c.threads);
  std::vector<AlignedBytes> copies;  // cold: the weights again, used in turn after w.packed
  for (size_t i = 1; c.cold && i < cold_copies(w.packed.size()); ++i) {
    copies.emplace_back(w.packed.size());
    std::memcpy(copies.back().data(), w.packed.data(), w.packed.size());
  }
  run_matmul(*c.kernel, args, c.shape.m, tp);  // warm-up
  size_t next = 0;
  const CpuTimer timer;
  for (auto _ : st) {
    args.wt = next == 0 ? w.packed.data() : copies[next - 1].data();
    next = next == copies.size() ? 0 : next + 1;
    run_matmul(*c.kernel, args, c.shape.m, tp);
    benchmark::ClobberMemory();
  }
  const double secs = timer.per_call(st.iterations(), c.threads);
  const double bytes = static_cast<double>(w.packed.size());
  const double ops = 2.0 * double(c.shape.m) * double(c.n) * double(c.shape.k);
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * static_cast<int64_t>(bytes));
  st.counters["weight_GBps"] = bytes / secs * 1e-9;
  st.counters["GOPS"] = ops / secs * 1e-9;
  st.SetLabel(c.kernel->name);
  if (c.n == 1) {
    (c.cold ? g_cold_gemv_secs : g_gemv_secs)[c.key()].push_back(secs);
    st.counters["efficiency"] =
        bytes / secs * 1e-9 / stream_baseline(w.packed.size(), c.threads, c.cold);
  } else {
    double gemv = median(g_gemv_secs[c.key()]);
    if (gemv == 0) {  // GEMV not run in this process (filtered): time it here
      const k::GemmKernel& v = k::matmul_kernel(k::MatmulOp::kGemv, c.type);
      k::GemmArgs a1 = args;
      a1.n1 = 1;
      gemv = time_calls([&] { run_matmul(v, a1, c.shape.m, tp); }, 20, c.threads);
    }
    st.counters["vs_gemv"] = gemv * static_cast<double>(c.n) / secs;
    const double cold = median(g_cold_gemv_secs[c.key()]);
    if (cold > 0) st.counters["vs_cold_gemv"] = cold * static_cast<double>(c.n) / secs;
    // cold GEMM against one cold GEMV: what a decode step of n sequences costs over one of 1
    if (cold > 0 && c.cold) st.counters["step_vs_1"] = secs / cold;
  }
}

// GEMM calls of up to this many tokens (a decode step of a few sequences) are timed cold too:
// their weights come from DRAM in a real step as a GEMV's do.
constexpr size_t kColdMaxN = 16;

bool parse_type(const std::string& s, WeightType* t) {
  for (WeightType x : {WeightType::kQ4, WeightType::kQ8, WeightType::kQ4M, WeightType::kQ4K, WeightType::kQ5K,
                       WeightType::kQ6K, WeightType::kQ5_0, WeightType::kQ5_1}) {
    if (s == k::to_string(x)) {
      *t = x;
      return true;
    }
  }
  return false;
}

// Short ISA label of a kernel: the suffix after the last '_' (avx2, avx512vnni, neondot, ref).
std::string isa_of(const k::GemmKernel& kr) {
  const std::string n = kr.name;
  return n.substr(n.rfind('_') + 1);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> isas, types = {"q4", "q8"};
  std::vector<int> threads = {1, 2};
  std::vector<size_t> gemm_n = {128, 512};
  std::vector<std::string> shapes;  // "MxK" to keep; empty: all
  if (const char* e = std::getenv("PIQUANT_BENCH_ISA")) isas = split(e);
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&](const char* flag) {
      return a.rfind(flag, 0) == 0 ? a.substr(std::strlen(flag)) : std::string();
    };
    if (!val("--isa=").empty())
      isas = split(val("--isa="));
    else if (!val("--types=").empty())
      types = split(val("--types="));
    else if (!val("--shapes=").empty())
      shapes = split(val("--shapes="));
    else if (!val("--threads=").empty()) {
      threads.clear();
      for (const auto& t : split(val("--threads="))) threads.push_back(std::stoi(t));
    } else if (!val("--n=").empty()) {
      gemm_n.clear();
      for (const auto& t : split(val("--n="))) gemm_n.push_back(std::stoul(t));
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (!k::cpu_isa_error().empty()) {
    std::fprintf(stderr, "bench_matmul: %s\n", k::cpu_isa_error().c_str());
    return 2;
  }
  size_t count = 0;
  const k::GemmKernel* table = k::matmul_kernels(&count);
  auto wanted = [&](const k::GemmKernel& kr) {
    if (!k::cpu_info().has(kr.needs)) return false;
    const std::string isa = isa_of(kr);
    if (isas.empty()) return isa != "ref";
    return std::find(isas.begin(), isas.end(), isa) != isas.end();
  };
  for (const std::string& isa : isas) {
    bool known = false;
    for (size_t i = 0; i < count; ++i) known |= isa_of(table[i]) == isa && wanted(table[i]);
    if (!known) {
      std::fprintf(stderr, "bench_matmul: no matmul path '%s' on this CPU (%s)\n", isa.c_str(),
                   k::features_to_string(k::cpu_info().enabled).c_str());
      return 2;
    }
  }
  for (const std::string& ts : types) {
    WeightType t;
    if (!parse_type(ts, &t)) {
      std::fprintf(stderr, "bench_matmul: unknown type '%s' (q4, q8, q4m, q4_k, q5_k, q6_k, q5_0, q5_1)\n",
                   ts.c_str());
      return 2;
    }
    for (const Shape& s : kShapes) {
      const std::string shape = std::to_string(s.m) + "x" + std::to_string(s.k);
      if (!shapes.empty() && std::find(shapes.begin(), shapes.end(), shape) == shapes.end()) continue;
      if (s.k % k::block_values(t) != 0) continue;
      const size_t bytes = k::packed_size(t, s.m, s.k);
      // Cold variants only where the copies make a difference (smaller than kColdBytes).
      std::vector<bool> stream_temps = {false};
      if (cold_copies(bytes) > 1) stream_temps.push_back(true);
      for (bool cold : stream_temps) {
        for (int th : threads) {
          benchmark::RegisterBenchmark(("BM_stream_read/" + std::to_string(bytes) +
                                        (cold ? "/cold" : "") + "/threads:" + std::to_string(th))
                                           .c_str(),
                                       bm_stream, bytes, th, cold)
              ->MeasureProcessCPUTime()
              ->Unit(benchmark::kMicrosecond);
        }
      }
      for (k::MatmulOp op : {k::MatmulOp::kGemv, k::MatmulOp::kGemm}) {
        for (size_t i = 0; i < count; ++i) {
          const k::GemmKernel& kr = table[i];
          if (kr.op != op || kr.weights != t || !wanted(kr)) continue;
          const bool gemv = op == k::MatmulOp::kGemv;
          const std::vector<size_t> ns = gemv ? std::vector<size_t>{1} : gemm_n;
          std::vector<bool> temps = {false};
          if (cold_copies(bytes) > 1) temps.push_back(true);
          for (size_t n : ns) {
            for (bool cold : temps) {
              if (cold && n > kColdMaxN) continue;
              for (int th : threads) {
                Case c{&kr, isa_of(kr), t, s, n, th, cold};
                std::string name = "BM_" + std::string(gemv ? "gemv_" : "gemm_") + ts + "/" + shape;
                if (n > 1) name += "/" + std::to_string(n);
                if (cold) name += "/cold";
                name += "/isa:" + c.isa + "/threads:" + std::to_string(th);
                benchmark::RegisterBenchmark(name.c_str(), bm_matmul, c)
                    ->MeasureProcessCPUTime()
                    ->Unit(benchmark::kMicrosecond);
              }
            }
          }
        }
      }
    }
  }
  int rargc = static_cast<int>(rest.size());
  benchmark::Initialize(&rargc, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
