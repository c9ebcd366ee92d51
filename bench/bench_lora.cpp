// bench_lora: what a LoRA adapter costs at decode time, and what switching adapters costs.
//
// Part 1 (end to end, printed as a table): a TinyLlama-1.1B-shaped model (dim 2048, ffn 5632,
// 32/4 heads, vocab 32000, 22 layers unless --layers) with seeded random q4 layer weights
// (q8 embeddings/classifier), a rank-16 PEFT adapter (F16) on all seven projections of every
// layer. One Session decodes --tokens tokens after an 8-token prompt, alternately without and
// with the adapter (set_adapters between runs: same session, same KV cache memory), --reps
// times per thread count; we report the median ms/token of each and their ratio. Then the cost
// of set_adapters (median of 1000 switches) against building the model and loading the adapter.
//
// Part 2 (Google Benchmark): the LoRA kernels alone at TinyLlama shapes, every variant the CPU
// has plus the refs: BM_lora_down_f32_f16_<isa>/M:2048/N:1/K:2048/R:16 etc.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <piquant/piquant.hpp>
#include <string>
#include <vector>

#include "common/fp16.hpp"
#include "common/pack.hpp"
#include "format/safetensors.hpp"
#include "lora/lora.hpp"
#include "model/linear.hpp"
#include "model/model_impl.hpp"
#include "bench_model.hpp"

namespace {

using clk = std::chrono::steady_clock;
namespace k = piquant::kernels;

double secs(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }

using bench_util::Rng;
using bench_util::tinyllama_q4;

void write_adapter(const std::string& dir, const piquant::ModelConfig& c, int r) {
  using piquant::SafetensorsWriter;
  nlohmann::json j = {{"peft_type", "LORA"}, {"r", r}, {"lora_alpha", 2 * r},
                      {"target_modules", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                          "up_proj", "down_proj"}}};
  std::filesystem::create_directories(dir);
  {
    std::FILE* fp = std::fopen((dir + "/adapter_config.json").c_str(), "w");
    const std::string s = j.dump();
    std::fwrite(s.data(), 1, s.size(), fp);
    std::fclose(fp);
  }
  SafetensorsWriter w;
  Rng rng{77};
  struct P {
    const char* name;
    int64_t out, in;
  };
  const P ps[] = {{"self_attn.q_proj", 2048, 2048}, {"self_attn.k_proj", 256, 2048},
                  {"self_attn.v_proj", 256, 2048},  {"self_attn.o_proj", 2048, 2048},
                  {"mlp.gate_proj", 5632, 2048},    {"mlp.up_proj", 5632, 2048},
                  {"mlp.down_proj", 2048, 5632}};
  for (int l = 0; l < c.n_layers; ++l) {
    for (const P& p : ps) {
      const std::string base = "base_model.model.model.layers." + std::to_string(l) + "." + p.name;
      std::vector<float> a(size_t(r) * size_t(p.in)), b(size_t(p.out) * size_t(r));
      for (float& x : a) x = rng.next(1.0f / std::sqrt(float(p.in)));
      for (float& x : b) x = rng.next(0.01f);
      w.add_f32(base + ".lora_A.weight", {r, p.in}, a.data(), piquant::FileDType::kF16);
      w.add_f32(base + ".lora_B.weight", {p.out, r}, b.data(), piquant::FileDType::kF16);
    }
  }
  w.write(dir + "/adapter_model.safetensors");
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void end_to_end(int layers, int tokens, int reps, const std::vector<int>& thread_counts) {
  auto t0 = clk::now();
  auto model = tinyllama_q4(layers, 1);
  const double build_s = secs(t0);
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("bench_lora_" + std::to_string(::getpid()))).string();
  write_adapter(dir, model->config(), 16);
  t0 = clk::now();
  auto adapter = piquant::LoraAdapter::load(*model, dir);
  const double load_s = secs(t0);
  std::filesystem::remove_all(dir);
  std::printf("model: %s, %.0f MiB weights, built in %.2f s\n", model->describe().c_str(),
              double(model->weight_bytes()) / 1048576.0, build_s);
  std::printf("adapter: %s, loaded in %.3f s\n", adapter->describe().c_str(), load_s);
  const std::vector<piquant::TokenId> prompt = {1, 450, 2635, 338, 263, 1243, 310, 278};
  for (int threads : thread_counts) {
    piquant::SessionOptions so;
    so.n_ctx = 256;
    so.n_threads = threads;
    piquant::Session s(model, so);
    if (threads == thread_counts.front()) std::printf("kernels: %s\n", s.kernel_names().c_str());
    auto run = [&](bool with) {
      s.reset();
      s.set_adapters(with ? std::vector<piquant::AdapterChoice>{{adapter, 1.0f}}
                          : std::vector<piquant::AdapterChoice>{});
      const float* l = s.eval(prompt);
      piquant::TokenId next = static_cast<piquant::TokenId>(std::max_element(l, l + 32000) - l);
      const auto t = clk::now();
      for (int i = 0; i < tokens; ++i) {
        l = s.eval({next});
        next = static_cast<piquant::TokenId>(std::max_element(l, l + 32000) - l);
      }
      return secs(t) * 1000.0 / tokens;
    };
    run(false);  // warm up
    run(true);
    std::vector<double> base, lora, ratios;
    for (int r = 0; r < reps; ++r) {
      // Alternate the order so drift (other load, clocks) hits both alike.
      const bool first_with = (r % 2) == 1;
      const double a = run(first_with), b = run(!first_with);
      const double without = first_with ? b : a, with = first_with ? a : b;
      base.push_back(without);
      lora.push_back(with);
      ratios.push_back(with / without);
    }
    const double mb = median(base), ml = median(lora);
    std::printf("decode %2d thread(s): base %.2f ms/token (%.2f tok/s) | + rank-16 adapter on 7 "
                "projections %.2f ms/token (%.2f tok/s) | overhead %+.1f%% (ratio of medians), "
                "median of per-pair ratios %+.1f%%, %d reps x %d tokens\n",
                threads, mb, 1000.0 / mb, ml, 1000.0 / ml, 100.0 * (ml / mb - 1.0),
                100.0 * (median(ratios) - 1.0), reps, tokens);
    std::fflush(stdout);
  }
  // Switching adapters: what set_adapters costs, against loading.
  piquant::Session s(model, piquant::SessionOptions{256, 1});
  std::vector<double> sw;
  for (int i = 0; i < 1000; ++i) {
    const auto t = clk::now();
    s.set_adapters(i % 2 ? std::vector<piquant::AdapterChoice>{}
                         : std::vector<piquant::AdapterChoice>{{adapter, 1.0f}});
    sw.push_back(secs(t));
  }
  std::printf("switch: set_adapters median %.2f us (1000 switches) vs building the model %.2f s "
              "and loading the adapter %.3f s\n",
              median(sw) * 1e6, build_s, load_s);
  // Several sessions (adapter scales differ) decoding together: decode_batch vs one by one.
  const int n_sessions = 4, threads = thread_counts.back();
  std::vector<std::unique_ptr<piquant::Session>> ss;
  std::vector<piquant::Session*> ptrs;
  for (int i = 0; i < n_sessions; ++i) {
    ss.push_back(std::make_unique<piquant::Session>(model, piquant::SessionOptions{256, threads}));
    ss.back()->set_adapters({{adapter, 0.5f + 0.25f * float(i)}});
    ptrs.push_back(ss.back().get());
  }
  std::vector<double> sep, bat;
  for (int r = 0; r < reps; ++r) {
    for (auto& x : ss) x->reset();
    std::vector<piquant::TokenId> toks(size_t(n_sessions), 1);
    auto t = clk::now();
    for (int i = 0; i < tokens / 2 + 1; ++i) {
      for (auto& x : ss) x->eval({toks[0]});
    }
    sep.push_back(secs(t));
    for (auto& x : ss) x->reset();
    t = clk::now();
    for (int i = 0; i < tokens / 2 + 1; ++i) piquant::decode_batch(ptrs, toks);
    bat.push_back(secs(t));
  }
  std::printf("batch: %d sessions x %d steps with adapters, %d thread(s): one by one %.1f ms/step, "
              "decode_batch %.1f ms/step (%.2fx)\n",
              n_sessions, tokens / 2 + 1, threads, 1000.0 * median(sep) / (tokens / 2 + 1),
              1000.0 * median(bat) / (tokens / 2 + 1), median(sep) / median(bat));
}

// ---- kernels --------------------------------------------------------------------------

struct KernelData {
  std::vector<float> x, t, y, a32, b32;
  std::vector<uint16_t> a16, b16;
};

void BM_lora(benchmark::State& state, const k::LoraKernels* tab, bool up, k::LoraWeight w) {
  const size_t M = size_t(state.range(0)), N = size_t(state.range(1)), K = size_t(state.range(2)),
               R = size_t(state.range(3));
  KernelData d;
  Rng rng{5};
  d.x.resize(N * K);
  d.t.resize(N * R);
  d.y.resize(N * M);
  d.a32.resize(R * K);
  d.b32.resize(R * M);
  for (float& v : d.x) v = rng.next(1.0f);
  for (float& v : d.t) v = rng.next(1.0f);
  for (float& v : d.a32) v = rng.next(0.05f);
  for (float& v : d.b32) v = rng.next(0.05f);
  for (float v : d.a32) d.a16.push_back(k::fp16_from_f32(v));
  for (float v : d.b32) d.b16.push_back(k::fp16_from_f32(v));
  const bool h = w == k::LoraWeight::kF16;
  for (auto _ : state) {
    if (up) {
      tab->up[size_t(w)](k::LoraUpArgs{N, R, M, d.t.data(), R,
                                       h ? static_cast<const void*>(d.b16.data()) : d.b32.data(),
                                       0.5f, d.y.data(), M, 0, M});
    } else {
      tab->down[size_t(w)](k::LoraDownArgs{N, K, d.x.data(), K,
                                           h ? static_cast<const void*>(d.a16.data()) : d.a32.data(),
                                           d.t.data(), R, 0, R});
    }
    benchmark::ClobberMemory();
  }
  const size_t wbytes = (up ? R * M : R * K) * (h ? 2 : 4);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(wbytes));
  state.counters["GFLOPS"] = benchmark::Counter(2.0 * double(N) * double(R) * double(up ? M : K),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void register_kernels() {
  size_t n = 0;
  const k::LoraKernels* const* tabs = k::lora_kernel_tables(&n);
  const uint32_t det = k::cpu_info().detected;
  for (size_t i = 0; i < n; ++i) {
    const k::LoraKernels* tab = tabs[i];
    if (tab->needs != k::CpuFeature::kNone && !(det & uint32_t(tab->needs))) continue;
    for (k::LoraWeight w : {k::LoraWeight::kF32, k::LoraWeight::kF16}) {
      for (bool up : {false, true}) {
        const std::string name = std::string("BM_lora_") + (up ? "up" : "down") + "_f32_" +
                                 k::to_string(w) + "_" + tab->isa;
        auto* b = benchmark::RegisterBenchmark(name.c_str(), BM_lora, tab, up, w);
        b->ArgNames({"M", "N", "K", "R"});
        // TinyLlama: q/o 2048x2048, gate/up 5632x2048, down 2048x5632; decode and a prefill chunk.
        for (int64_t tokens : {1, 64}) {
          b->Args({2048, tokens, 2048, 16})->Args({5632, tokens, 2048, 16})->Args({2048, tokens, 5632, 16});
        }
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  int layers = 22, tokens = 16, reps = 7;
  bool e2e = true, kernels = true;
  std::vector<int> threads = {1, 2};
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::atoi(argv[++i]) : 0; };
    if (a == "--layers") layers = next();
    else if (a == "--tokens") tokens = next();
    else if (a == "--reps") reps = next();
    else if (a == "--threads") threads = {next()};
    else if (a == "--e2e-only") kernels = false;
    else if (a == "--kernels-only") e2e = false;
    else if (a == "-h" || a == "--help") {
      std::printf("usage: bench_lora [--layers N (22)] [--tokens N (16)] [--reps N (7)] "
                  "[--threads N (1 and 2)] [--e2e-only | --kernels-only] [benchmark flags]\n");
      return 0;
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (layers < 1 || tokens < 1 || reps < 1 || threads.front() < 1) {
    std::fprintf(stderr, "bench_lora: bad arguments\n");
    return 1;
  }
  try {
    if (e2e) end_to_end(layers, tokens, reps, threads);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_lora: %s\n", e.what());
    return 1;
  }
  if (!kernels) return 0;
  register_kernels();
  int rc = static_cast<int>(rest.size());
  benchmark::Initialize(&rc, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
