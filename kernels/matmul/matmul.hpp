#pragma once
// The matmul kernel family: y[n][m] = sum_k W[m][k] * x[n][k] for weights W (M x K, packed by
// common/pack.hpp) and N activation rows x. GEMV is the N = 1 (decode) case, GEMM the prefill
// case with register tiles that reuse every loaded weight block across several tokens.
//
// Kernels compute output rows [m0, m1) for tokens [n0, n1); the caller splits rows across
// threads (m0 must be a multiple of row_interleave(type), m1 <= M). Kernels never allocate,
// throw, or touch memory outside the ranges; bad arguments are the runtime's job to reject.
#include <cstddef>
#include <string>

#include "common/cpu.hpp"
#include "common/quant.hpp"

namespace piquant::kernels {

struct GemmArgs {
  size_t m0, m1, n0, n1, k;  ///< rows [m0, m1), tokens [n0, n1); k % block_values(weights) == 0
  /// Token n's activations start at (const char*)act + n * act_stride: K/32 BlockQ8A for the
  /// quantized weight types, K floats for f32/f16 weights (ActType of the kernel).
  const void* act;
  size_t act_stride;  ///< bytes
  const void* wt;     ///< the whole packed matrix (pack())
  float* dst;         ///< dst[n * dst_stride + m]
  size_t dst_stride;  ///< floats
};

enum class MatmulOp : uint8_t { kGemv, kGemm };
enum class ActType : uint8_t { kF32, kQ8 };

struct GemmKernel {
  const char* name;     ///< "gemm_f32_q8_q4_4x8_avx512vnni"
  MatmulOp op;          ///< what it is registered for (a GEMV kernel still handles any N)
  WeightType weights;   ///< weight type it reads (packed layout of that type)
  ActType act;          ///< activation format it reads
  CpuFeature needs;     ///< CPU feature it needs
  int mr, nr, kr;       ///< register tile: rows x tokens, K step
  void (*run)(const GemmArgs&);
};

/// Every compiled kernel, best first within each (op, weights); references last.
const GemmKernel* matmul_kernels(size_t* count);
/// The best kernel the CPU (capped by PIQUANT_ISA) supports for (op, t); chosen once.
const GemmKernel& matmul_kernel(MatmulOp op, WeightType t);
/// "gemv q4: gemv_f32_q8_q4_avx512vnni, gemm q4: ...; quant: quant_q8a_f32_avx512vnni" for
/// piquant-run -v and test logs.
std::string matmul_kernel_names();

// --- references (matmul_ref.cpp): double sums over unpacked values ----------------------
void matmul_f32_q8_q8_ref(const GemmArgs& a);
void matmul_f32_q8_q4_ref(const GemmArgs& a);
void matmul_f32_q8_q4m_ref(const GemmArgs& a);
void matmul_f32_q8_q4k_ref(const GemmArgs& a);
void matmul_f32_q8_q5k_ref(const GemmArgs& a);
void matmul_f32_q8_q6k_ref(const GemmArgs& a);
void matmul_f32_q8_q50_ref(const GemmArgs& a);
void matmul_f32_q8_q51_ref(const GemmArgs& a);
void matmul_f32_f32_f32_ref(const GemmArgs& a);
void matmul_f32_f32_f16_ref(const GemmArgs& a);

// --- SIMD variants (one file per ISA, see docs/kernels.md) ------------------------------
#if defined(__x86_64__)
void gemv_f32_q8_q8_avx2(const GemmArgs& a);
void gemv_f32_q8_q4_avx2(const GemmArgs& a);
void gemv_f32_q8_q4m_avx2(const GemmArgs& a);
void gemm_f32_q8_q8_8x4_avx2(const GemmArgs& a);
void gemm_f32_q8_q4_8x4_avx2(const GemmArgs& a);
void gemm_f32_q8_q4m_8x4_avx2(const GemmArgs& a);
void gemv_f32_q8_q4k_avx2(const GemmArgs& a);
void gemm_f32_q8_q4k_8x4_avx2(const GemmArgs& a);
void gemv_f32_q8_q5k_avx2(const GemmArgs& a);
void gemm_f32_q8_q5k_8x4_avx2(const GemmArgs& a);
void gemv_f32_q8_q6k_avx2(const GemmArgs& a);
void gemm_f32_q8_q6k_8x4_avx2(const GemmArgs& a);
void gemv_f32_q8_q50_avx2(const GemmArgs& a);
void gemm_f32_q8_q50_4x4_avx2(const GemmArgs& a);
void gemv_f32_q8_q51_avx2(const GemmArgs& a);
void gemm_f32_q8_q51_4x4_avx2(const GemmArgs& a);
void gemv_f32_f32_f32_avx2(const GemmArgs& a);
void gemv_f32_f32_f16_avx2(const GemmArgs& a);
void gemv_f32_q8_q8_avx512vnni(const GemmArgs& a);
void gemv_f32_q8_q4_avx512vnni(const GemmArgs& a);
void gemv_f32_q8_q4m_avx512vnni(const GemmArgs& a);
void gemm_f32_q8_q8_4x8_avx512vnni(const GemmArgs& a);
void gemm_f32_q8_q4_16x8_avx512vnni(const GemmArgs& a);
void gemm_f32_q8_q4m_4x8_avx512vnni(const GemmArgs& a);
void gemv_f32_q8_q4k_avx512vnni(const GemmArgs& a);
void gemm_f32_q8_q4k_16x8_avx512vnni(const GemmArgs& a);
void gemv_f32_q8_q5k_avx512vnni(const GemmArgs& a);
void gemm_f32_q8_q5k_16x8_avx512vnni(const GemmArgs& a);
void gemv_f32_q8_q6k_avx512vnni(const GemmArgs& a);
void gemm_f32_q8_q6k_16x8_avx512vnni(const GemmArgs& a);
void gemv_f32_q8_q50_avx512vnni(const GemmArgs& a);
void gemm_f32_q8_q50_4x8_avx512vnni(const GemmArgs& a);
void gemv_f32_q8_q51_avx512vnni(const GemmArgs& a);
void gemm_f32_q8_q51_4x8_avx512vnni(const GemmArgs& a);
#endif
#if defined(__aarch64__)
void gemv_f32_q8_q8_neon(const GemmArgs& a);
void gemv_f32_q8_q4_neon(const GemmArgs& a);
void gemv_f32_q8_q4m_neon(const GemmArgs& a);
void gemm_f32_q8_q8_4x4_neon(const GemmArgs& a);
void gemm_f32_q8_q4_4x4_neon(const GemmArgs& a);
void gemm_f32_q8_q4m_4x4_neon(const GemmArgs& a);
void gemv_f32_f32_f32_neon(const GemmArgs& a);
void gemv_f32_f32_f16_neon(const GemmArgs& a);
void gemv_f32_q8_q8_neondot(const GemmArgs& a);
void gemv_f32_q8_q4_neondot(const GemmArgs& a);
void gemv_f32_q8_q4m_neondot(const GemmArgs& a);
void gemm_f32_q8_q8_4x8_neondot(const GemmArgs& a);
void gemm_f32_q8_q4_4x8_neondot(const GemmArgs& a);
void gemm_f32_q8_q4m_4x8_neondot(const GemmArgs& a);
// q4_k on dotprod: q4m's 4 x 8 tile per 32-value sub-block (matmul_neondot.cpp); q5_k, q6_k, q5_0,
// q5_1 and every type on the A72: one row x 4 (dotprod) or 2 tokens (matmul_kquant_neon_impl.hpp)
void gemv_f32_q8_q4k_neondot(const GemmArgs& a);
void gemv_f32_q8_q5k_neondot(const GemmArgs& a);
void gemv_f32_q8_q6k_neondot(const GemmArgs& a);
void gemv_f32_q8_q50_neondot(const GemmArgs& a);
void gemv_f32_q8_q51_neondot(const GemmArgs& a);
void gemm_f32_q8_q4k_4x8_neondot(const GemmArgs& a);
void gemm_f32_q8_q5k_4x8_neondot(const GemmArgs& a);
void gemm_f32_q8_q6k_4x8_neondot(const GemmArgs& a);
void gemm_f32_q8_q50_1x4_neondot(const GemmArgs& a);
void gemm_f32_q8_q51_1x4_neondot(const GemmArgs& a);
void gemv_f32_q8_q4k_neon(const GemmArgs& a);
void gemv_f32_q8_q5k_neon(const GemmArgs& a);
void gemv_f32_q8_q6k_neon(const GemmArgs& a);
void gemv_f32_q8_q50_neon(const GemmArgs& a);
void gemv_f32_q8_q51_neon(const GemmArgs& a);
void gemm_f32_q8_q4k_4x1_neon(const GemmArgs& a);
void gemm_f32_q8_q5k_4x1_neon(const GemmArgs& a);
void gemm_f32_q8_q6k_4x1_neon(const GemmArgs& a);
void gemm_f32_q8_q50_1x2_neon(const GemmArgs& a);
void gemm_f32_q8_q51_1x2_neon(const GemmArgs& a);
#endif

}  // namespace piquant::kernels
