// The matmul variant table, in preference order: the first entry for (op, weights) whose CPU
// feature is enabled (cpu_info(), capped by PIQUANT_ISA) is chosen once, at first use.
#include <string>

#include "matmul/matmul.hpp"

namespace piquant::kernels {
namespace {

using W = WeightType;
using F = CpuFeature;
constexpr MatmulOp kV = MatmulOp::kGemv, kM = MatmulOp::kGemm;
constexpr ActType kQ = ActType::kQ8, kF = ActType::kF32;

// One line per kernel: the name is the function's own (K stringifies it), and check() below
// verifies at compile time that the name agrees with the entry's op, weight and activation type,
// tile (mr x nr in every GEMM name) and CPU feature (the ISA suffix).
#define K(fn, op, w, act, feat, mr, nr, kr) {#fn, op, w, act, feat, mr, nr, kr, fn}
constexpr GemmKernel kTable[] = {
#if defined(__x86_64__)
    K(gemv_f32_q8_q4_avx512vnni, kV, W::kQ4, kQ, F::kAvx512Vnni, 4, 1, 32),
    K(gemv_f32_q8_q4m_avx512vnni, kV, W::kQ4M, kQ, F::kAvx512Vnni, 4, 1, 32),
    K(gemv_f32_q8_q8_avx512vnni, kV, W::kQ8, kQ, F::kAvx512Vnni, 4, 1, 32),
    K(gemm_f32_q8_q4_16x8_avx512vnni, kM, W::kQ4, kQ, F::kAvx512Vnni, 16, 8, 32),
    K(gemm_f32_q8_q4m_4x8_avx512vnni, kM, W::kQ4M, kQ, F::kAvx512Vnni, 4, 8, 32),
    K(gemm_f32_q8_q8_4x8_avx512vnni, kM, W::kQ8, kQ, F::kAvx512Vnni, 4, 8, 32),
    K(gemv_f32_q8_q4k_avx512vnni, kV, W::kQ4K, kQ, F::kAvx512Vnni, 4, 1, 256),
    K(gemm_f32_q8_q4k_16x8_avx512vnni, kM, W::kQ4K, kQ, F::kAvx512Vnni, 16, 8, 256),
    K(gemv_f32_q8_q5k_avx512vnni, kV, W::kQ5K, kQ, F::kAvx512Vnni, 4, 1, 256),
    K(gemm_f32_q8_q5k_16x8_avx512vnni, kM, W::kQ5K, kQ, F::kAvx512Vnni, 16, 8, 256),
    K(gemv_f32_q8_q6k_avx512vnni, kV, W::kQ6K, kQ, F::kAvx512Vnni, 4, 1, 256),
    K(gemm_f32_q8_q6k_16x8_avx512vnni, kM, W::kQ6K, kQ, F::kAvx512Vnni, 16, 8, 256),
    K(gemv_f32_q8_q50_avx512vnni, kV, W::kQ5_0, kQ, F::kAvx512Vnni, 4, 1, 32),
    K(gemm_f32_q8_q50_4x8_avx512vnni, kM, W::kQ5_0, kQ, F::kAvx512Vnni, 4, 8, 32),
    K(gemv_f32_q8_q51_avx512vnni, kV, W::kQ5_1, kQ, F::kAvx512Vnni, 4, 1, 32),
    K(gemm_f32_q8_q51_4x8_avx512vnni, kM, W::kQ5_1, kQ, F::kAvx512Vnni, 4, 8, 32),
    K(gemv_f32_q8_q4_avx2, kV, W::kQ4, kQ, F::kAvx2, 8, 1, 32),
    K(gemv_f32_q8_q4m_avx2, kV, W::kQ4M, kQ, F::kAvx2, 8, 1, 32),
    K(gemv_f32_q8_q8_avx2, kV, W::kQ8, kQ, F::kAvx2, 8, 1, 32),
    K(gemm_f32_q8_q4_8x4_avx2, kM, W::kQ4, kQ, F::kAvx2, 8, 4, 32),
    K(gemm_f32_q8_q4m_8x4_avx2, kM, W::kQ4M, kQ, F::kAvx2, 8, 4, 32),
    K(gemm_f32_q8_q8_8x4_avx2, kM, W::kQ8, kQ, F::kAvx2, 8, 4, 32),
    K(gemv_f32_q8_q4k_avx2, kV, W::kQ4K, kQ, F::kAvx2, 4, 1, 256),
    K(gemm_f32_q8_q4k_8x4_avx2, kM, W::kQ4K, kQ, F::kAvx2, 8, 4, 256),
    K(gemv_f32_q8_q5k_avx2, kV, W::kQ5K, kQ, F::kAvx2, 4, 1, 256),
    K(gemm_f32_q8_q5k_8x4_avx2, kM, W::kQ5K, kQ, F::kAvx2, 8, 4, 256),
    K(gemv_f32_q8_q6k_avx2, kV, W::kQ6K, kQ, F::kAvx2, 4, 1, 256),
    K(gemm_f32_q8_q6k_8x4_avx2, kM, W::kQ6K, kQ, F::kAvx2, 8, 4, 256),
    K(gemv_f32_q8_q50_avx2, kV, W::kQ5_0, kQ, F::kAvx2, 4, 1, 32),
    K(gemm_f32_q8_q50_4x4_avx2, kM, W::kQ5_0, kQ, F::kAvx2, 4, 4, 32),
    K(gemv_f32_q8_q51_avx2, kV, W::kQ5_1, kQ, F::kAvx2, 4, 1, 32),
    K(gemm_f32_q8_q51_4x4_avx2, kM, W::kQ5_1, kQ, F::kAvx2, 4, 4, 32),
    K(gemv_f32_f32_f32_avx2, kV, W::kF32, kF, F::kAvx2, 1, 1, 32),
    K(gemv_f32_f32_f16_avx2, kV, W::kF16, kF, F::kAvx2, 1, 1, 32),
    K(gemv_f32_f32_f32_avx2, kM, W::kF32, kF, F::kAvx2, 1, 1, 32),
    K(gemv_f32_f32_f16_avx2, kM, W::kF16, kF, F::kAvx2, 1, 1, 32),
#endif
#if defined(__aarch64__)
    K(gemv_f32_q8_q4_neondot, kV, W::kQ4, kQ, F::kNeonDot, 4, 1, 32),
    K(gemv_f32_q8_q4m_neondot, kV, W::kQ4M, kQ, F::kNeonDot, 4, 1, 32),
    K(gemv_f32_q8_q8_neondot, kV, W::kQ8, kQ, F::kNeonDot, 4, 1, 32),
    K(gemm_f32_q8_q4_4x8_neondot, kM, W::kQ4, kQ, F::kNeonDot, 4, 8, 32),
    K(gemm_f32_q8_q4m_4x8_neondot, kM, W::kQ4M, kQ, F::kNeonDot, 4, 8, 32),
    K(gemm_f32_q8_q8_4x8_neondot, kM, W::kQ8, kQ, F::kNeonDot, 4, 8, 32),
    K(gemv_f32_q8_q4k_neondot, kV, W::kQ4K, kQ, F::kNeonDot, 4, 1, 256),
    K(gemv_f32_q8_q5k_neondot, kV, W::kQ5K, kQ, F::kNeonDot, 4, 1, 256),
    K(gemv_f32_q8_q6k_neondot, kV, W::kQ6K, kQ, F::kNeonDot, 4, 1, 256),
    K(gemv_f32_q8_q50_neondot, kV, W::kQ5_0, kQ, F::kNeonDot, 1, 1, 32),
    K(gemv_f32_q8_q51_neondot, kV, W::kQ5_1, kQ, F::kNeonDot, 1, 1, 32),
    K(gemm_f32_q8_q4k_4x8_neondot, kM, W::kQ4K, kQ, F::kNeonDot, 4, 8, 256),
    K(gemm_f32_q8_q5k_4x8_neondot, kM, W::kQ5K, kQ, F::kNeonDot, 4, 8, 256),
    K(gemm_f32_q8_q6k_4x8_neondot, kM, W::kQ6K, kQ, F::kNeonDot, 4, 8, 256),
    K(gemm_f32_q8_q50_1x4_neondot, kM, W::kQ5_0, kQ, F::kNeonDot, 1, 4, 32),
    K(gemm_f32_q8_q51_1x4_neondot, kM, W::kQ5_1, kQ, F::kNeonDot, 1, 4, 32),
    K(gemv_f32_q8_q4_neon, kV, W::kQ4, kQ, F::kNeon, 4, 1, 32),
    K(gemv_f32_q8_q4m_neon, kV, W::kQ4M, kQ, F::kNeon, 4, 1, 32),
    K(gemv_f32_q8_q8_neon, kV, W::kQ8, kQ, F::kNeon, 4, 1, 32),
    K(gemm_f32_q8_q4_4x4_neon, kM, W::kQ4, kQ, F::kNeon, 4, 4, 32),
    K(gemm_f32_q8_q4m_4x4_neon, kM, W::kQ4M, kQ, F::kNeon, 4, 4, 32),
    K(gemm_f32_q8_q8_4x4_neon, kM, W::kQ8, kQ, F::kNeon, 4, 4, 32),
    K(gemv_f32_q8_q4k_neon, kV, W::kQ4K, kQ, F::kNeon, 4, 1, 256),
    K(gemv_f32_q8_q5k_neon, kV, W::kQ5K, kQ, F::kNeon, 4, 1, 256),
    K(gemv_f32_q8_q6k_neon, kV, W::kQ6K, kQ, F::kNeon, 4, 1, 256),
    K(gemv_f32_q8_q50_neon, kV, W::kQ5_0, kQ, F::kNeon, 1, 1, 32),
    K(gemv_f32_q8_q51_neon, kV, W::kQ5_1, kQ, F::kNeon, 1, 1, 32),
    K(gemm_f32_q8_q4k_4x1_neon, kM, W::kQ4K, kQ, F::kNeon, 4, 1, 256),
    K(gemm_f32_q8_q5k_4x1_neon, kM, W::kQ5K, kQ, F::kNeon, 4, 1, 256),
    K(gemm_f32_q8_q6k_4x1_neon, kM, W::kQ6K, kQ, F::kNeon, 4, 1, 256),
    K(gemm_f32_q8_q50_1x2_neon, kM, W::kQ5_0, kQ, F::kNeon, 1, 2, 32),
    K(gemm_f32_q8_q51_1x2_neon, kM, W::kQ5_1, kQ, F::kNeon, 1, 2, 32),
    K(gemv_f32_f32_f32_neon, kV, W::kF32, kF, F::kNeon, 1, 1, 16),
    K(gemv_f32_f32_f16_neon, kV, W::kF16, kF, F::kNeon, 1, 1, 16),
    K(gemv_f32_f32_f32_neon, kM, W::kF32, kF, F::kNeon, 1, 1, 16),
    K(gemv_f32_f32_f16_neon, kM, W::kF16, kF, F::kNeon, 1, 1, 16),
#endif
    // References: one function serves GEMV and GEMM.
    K(matmul_f32_q8_q4_ref, kV, W::kQ4, kQ, F::kNone, 1, 1, 32),
    K(matmul_f32_q8_q4m_ref, kV, W::kQ4M, kQ, F::kNone, 1, 1, 32),
    K(matmul_f32_q8_q8_ref, kV, W::kQ8, kQ, F::kNone, 1, 1, 32),
    K(matmul_f32_q8_q4k_ref, kV, W::kQ4K, kQ, F::kNone, 1, 1, 256),
    K(matmul_f32_q8_q5k_ref, kV, W::kQ5K, kQ, F::kNone, 1, 1, 256),
    K(matmul_f32_q8_q6k_ref, kV, W::kQ6K, kQ, F::kNone, 1, 1, 256),
    K(matmul_f32_q8_q50_ref, kV, W::kQ5_0, kQ, F::kNone, 1, 1, 32),
    K(matmul_f32_q8_q51_ref, kV, W::kQ5_1, kQ, F::kNone, 1, 1, 32),
    K(matmul_f32_f32_f32_ref, kV, W::kF32, kF, F::kNone, 1, 1, 1),
    K(matmul_f32_f32_f16_ref, kV, W::kF16, kF, F::kNone, 1, 1, 1),
    K(matmul_f32_q8_q4_ref, kM, W::kQ4, kQ, F::kNone, 1, 1, 32),
    K(matmul_f32_q8_q4m_ref, kM, W::kQ4M, kQ, F::kNone, 1, 1, 32),
    K(matmul_f32_q8_q8_ref, kM, W::kQ8, kQ, F::kNone, 1, 1, 32),
    K(matmul_f32_q8_q4k_ref, kM, W::kQ4K, kQ, F::kNone, 1, 1, 256),
    K(matmul_f32_q8_q5k_ref, kM, W::kQ5K, kQ, F::kNone, 1, 1, 256),
    K(matmul_f32_q8_q6k_ref, kM, W::kQ6K, kQ, F::kNone, 1, 1, 256),
    K(matmul_f32_q8_q50_ref, kM, W::kQ5_0, kQ, F::kNone, 1, 1, 32),
    K(matmul_f32_q8_q51_ref, kM, W::kQ5_1, kQ, F::kNone, 1, 1, 32),
    K(matmul_f32_f32_f32_ref, kM, W::kF32, kF, F::kNone, 1, 1, 1),
    K(matmul_f32_f32_f16_ref, kM, W::kF16, kF, F::kNone, 1, 1, 1),
};
#undef K
constexpr size_t kCount = sizeof(kTable) / sizeof(kTable[0]);

constexpr size_t len(const char* s) {
  size_t n = 0;
  while (s[n]) ++n;
  return n;
}
constexpr bool contains(const char* s, const char* sub) {
  const size_t n = len(s), m = len(sub);
  for (size_t i = 0; i + m <= n; ++i) {
    size_t j = 0;
    while (j < m && s[i + j] == sub[j]) ++j;
    if (j == m) return true;
  }
  return false;
}
constexpr bool ends_with(const char* s, const char* suf) {
  const size_t n = len(s), m = len(suf);
  if (m > n) return false;
  for (size_t i = 0; i < m; ++i) {
    if (s[n - m + i] != suf[i]) return false;
  }
  return true;
}
constexpr const char* isa_suffix(CpuFeature f) {
  return f == F::kNone ? "_ref" : f == F::kNeon ? "_neon" : f == F::kNeonDot ? "_neondot"
       : f == F::kAvx2 ? "_avx2" : f == F::kAvx512Vnni ? "_avx512vnni" : "?";
}
constexpr const char* type_part(W w, ActType a) {
  if (a == kQ) {
    return w == W::kQ8 ? "_q8_q8_" : w == W::kQ4 ? "_q8_q4_" : w == W::kQ4M ? "_q8_q4m_"
         : w == W::kQ4K ? "_q8_q4k_" : w == W::kQ5K ? "_q8_q5k_" : w == W::kQ6K ? "_q8_q6k_"
         : w == W::kQ5_0 ? "_q8_q50_" : w == W::kQ5_1 ? "_q8_q51_" : "?";
  }
  return w == W::kF32 ? "_f32_f32_" : w == W::kF16 ? "_f32_f16_" : "?";
}
constexpr bool has_tile(const char* s, int mr, int nr) {  // "_<mr>x<nr>_", mr < 100, nr < 10
  const char one[] = {'_', char('0' + mr % 10), 'x', char('0' + nr), '_', 0};
  const char two[] = {'_', char('0' + mr / 10), char('0' + mr % 10), 'x', char('0' + nr), '_', 0};
  return mr < 100 && nr < 10 && contains(s, mr < 10 ? one : two);
}
constexpr bool check() {
  for (const GemmKernel& k : kTable) {
    const char* n = k.name;
    if (!ends_with(n, isa_suffix(k.needs)) || !contains(n, type_part(k.weights, k.act))) return false;
    const bool gemv = n[3] == 'v', gemm = n[3] == 'm' && n[0] == 'g', shared = n[0] == 'm';
    // gemm_*: a register tile named in the name; gemv_*: one token (also serves the GEMM op
    // where no tile exists); matmul_*: the references, any shape.
    if (gemm && (k.op != kM || !has_tile(n, k.mr, k.nr))) return false;
    if (gemv && k.nr != 1) return false;
    if (!gemv && !gemm && !shared) return false;
  }
  return true;
}
static_assert(check(), "a matmul registry entry's name disagrees with its op, types, tile or ISA");
constexpr WeightType kTypes[] = {W::kF32, W::kF16, W::kQ8,  W::kQ4,   W::kQ4M,
                                 W::kQ4K, W::kQ5K, W::kQ6K, W::kQ5_0, W::kQ5_1};
static_assert(sizeof(kTypes) / sizeof(kTypes[0]) == kWeightTypeCount, "every weight type has kernels");

const GemmKernel* choose(MatmulOp op, WeightType t) {
  for (const GemmKernel& k : kTable) {
    if (k.op == op && k.weights == t && cpu_info().has(k.needs)) return &k;
  }
  return nullptr;  // unreachable: every (op, type) has a reference
}

}  // namespace

const GemmKernel* matmul_kernels(size_t* count) {
  *count = kCount;
  return kTable;
}

const GemmKernel& matmul_kernel(MatmulOp op, WeightType t) {
  static const struct Chosen {
    const GemmKernel* k[2][kWeightTypeCount];
    Chosen() {
      for (int o = 0; o < 2; ++o) {
        for (WeightType w : kTypes) k[o][static_cast<int>(w)] = choose(static_cast<MatmulOp>(o), w);
      }
    }
  } chosen;
  return *chosen.k[static_cast<int>(op)][static_cast<int>(t)];
}

std::string matmul_kernel_names() {
  std::string s;
  for (WeightType w : kTypes) {
    for (MatmulOp op : {MatmulOp::kGemv, MatmulOp::kGemm}) {
      s += s.empty() ? "" : ", ";
      s += matmul_kernel(op, w).name;
    }
  }
  return s + ", " + quant_act_kernel().name;
}

}  // namespace piquant::kernels
