// Runs one matmul kernel (by registry name) `reps` times on random data: a fixed workload for
// instruction counters (qemu-user's exec log, valgrind --tool=callgrind). The instructions of one
// call are (count(reps = 3) - count(reps = 1)) / 2, which cancels start-up and data set-up.
//
//   matmul_insn_count gemv_f32_q8_q4_neondot 256 2048 1 [reps]      (name M K N [reps])
//
// docs/kernels.md has the commands and the numbers (NEON vs dotprod under qemu cortex-a76).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/aligned.hpp"
#include "common/pack.hpp"
#include "matmul/matmul.hpp"

namespace k = piquant::kernels;

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s <kernel name> <M> <K> <N> [reps]\n", argv[0]);
    return 2;
  }
  const std::string name = argv[1];
  const size_t m = std::strtoul(argv[2], nullptr, 10), kk = std::strtoul(argv[3], nullptr, 10),
               n = std::strtoul(argv[4], nullptr, 10);
  const int reps = argc > 5 ? std::atoi(argv[5]) : 1;
  size_t count = 0;
  const k::GemmKernel* table = k::matmul_kernels(&count);
  const k::GemmKernel* kr = nullptr;
  for (size_t i = 0; i < count; ++i) {
    if (name == table[i].name) kr = &table[i];
  }
  if (kr == nullptr || kr->act != k::ActType::kQ8 || m == 0 || n == 0 || kk == 0 || kk % 32) {
    std::fprintf(stderr, "unknown or non-quantized kernel '%s', or bad M/K/N\n", name.c_str());
    return 2;
  }
  if (!k::cpu_info().has(kr->needs)) {
    std::fprintf(stderr, "this CPU lacks %s\n", k::features_to_string(uint32_t(kr->needs)).c_str());
    return 2;
  }
  k::AlignedBytes w(k::packed_size(kr->weights, m, kk));
  std::mt19937 rng(1);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<uint8_t>(rng() & 0x77);  // scales ~1
  std::vector<float> x(kk);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<k::BlockQ8A> act(n * kk / 32);
  for (size_t t = 0; t < n; ++t) {
    for (float& v : x) v = nd(rng);
    k::quant_q8a_f32_ref(x.data(), act.data() + t * kk / 32, kk);
  }
  std::vector<float> y(n * m);
  k::GemmArgs a{};
  a.m1 = m;
  a.n1 = n;
  a.k = kk;
  a.act = act.data();
  a.act_stride = kk / 32 * sizeof(k::BlockQ8A);
  a.wt = w.data();
  a.dst = y.data();
  a.dst_stride = m;
  for (int r = 0; r < reps; ++r) kr->run(a);
  double sum = 0;
  for (float v : y) sum += double(v);
  std::printf("%s M=%zu K=%zu N=%zu reps=%d checksum %g\n", kr->name, m, kk, n, reps, sum);
  return 0;
}
