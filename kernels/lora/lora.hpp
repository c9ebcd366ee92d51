#pragma once
// LoRA at run time, unmerged: y += scale * B (A x) for N tokens, in two steps so the thread pool
// can split each over its output rows:
//
//   down: t[n][j]  = sum_c A[j][c] * x[n][c]        j in [j0, j1)   A: r x K, row-major
//   up:   y[n][i] += scale * sum_j t[n][j] * Bt[j][i]  i in [i0, i1)   Bt: r x M (B transposed)
//
// Both are thin: r is 1..64, K and M the model's widths. `down` is r dot products of length K
// per token; `up` keeps B transposed so each output vector is an axpy over r contiguous rows
// (vectorised along M, any r works, no horizontal sums). Up to 4 tokens share each weight load.
// A and Bt are f32 or f16 (LoraWeight); activations and outputs are f32. Names:
// lora_down_f32_<weights>_<isa> / lora_up_f32_<weights>_<isa> (output f32, activations f32).
// The math only: no allocation, no threads; the caller (lib/lora/apply.cpp) splits rows.
#include <cstddef>
#include <cstdint>

#include "common/cpu.hpp"

namespace piquant::kernels {

enum class LoraWeight : uint8_t { kF32 = 0, kF16 = 1 };
constexpr size_t kLoraWeightTypes = 2;
inline const char* to_string(LoraWeight w) { return w == LoraWeight::kF32 ? "f32" : "f16"; }

struct LoraDownArgs {
  size_t n_tokens;
  size_t k;             ///< input width (A's columns)
  const float* x;       ///< n_tokens rows, x_stride floats apart
  size_t x_stride;
  const void* a;        ///< r x k, row j at element j * k (f32 or f16 bits)
  float* t;             ///< n_tokens rows, t_stride floats apart; columns [j0, j1) written
  size_t t_stride;
  size_t j0, j1;        ///< rank rows to compute
};

struct LoraUpArgs {
  size_t n_tokens;
  size_t r;             ///< rank
  size_t m;             ///< output width (Bt's columns, Bt row stride)
  const float* t;       ///< n_tokens rows of r values, t_stride floats apart
  size_t t_stride;
  const void* bt;       ///< r x m, row j at element j * m
  float scale;
  float* y;             ///< n_tokens rows, y_stride floats apart; columns [i0, i1) updated
  size_t y_stride;
  size_t i0, i1;
};

using LoraDownFn = void (*)(const LoraDownArgs&);
using LoraUpFn = void (*)(const LoraUpArgs&);

/// One table per ISA: down[w] / up[w] indexed by LoraWeight.
struct LoraKernels {
  const char* isa;  ///< "ref", "avx2", "avx512", "neon"
  CpuFeature needs;
  LoraDownFn down[kLoraWeightTypes];
  LoraUpFn up[kLoraWeightTypes];
};

/// Every compiled table, best first, ref last.
const LoraKernels* const* lora_kernel_tables(size_t* count);
/// The table chosen once for this CPU (honouring PIQUANT_ISA).
const LoraKernels& lora_kernels();
const LoraKernels& lora_kernels(uint32_t enabled);

// The variants (one function per name).
void lora_down_f32_f32_ref(const LoraDownArgs& a);
void lora_down_f32_f16_ref(const LoraDownArgs& a);
void lora_up_f32_f32_ref(const LoraUpArgs& a);
void lora_up_f32_f16_ref(const LoraUpArgs& a);
#if defined(__x86_64__)
void lora_down_f32_f32_avx2(const LoraDownArgs& a);
void lora_down_f32_f16_avx2(const LoraDownArgs& a);
void lora_up_f32_f32_avx2(const LoraUpArgs& a);
void lora_up_f32_f16_avx2(const LoraUpArgs& a);
void lora_down_f32_f32_avx512(const LoraDownArgs& a);
void lora_down_f32_f16_avx512(const LoraDownArgs& a);
void lora_up_f32_f32_avx512(const LoraUpArgs& a);
void lora_up_f32_f16_avx512(const LoraUpArgs& a);
#endif
#if defined(__aarch64__)
void lora_down_f32_f32_neon(const LoraDownArgs& a);
void lora_down_f32_f16_neon(const LoraDownArgs& a);
void lora_up_f32_f32_neon(const LoraUpArgs& a);
void lora_up_f32_f16_neon(const LoraUpArgs& a);
#endif

extern const LoraKernels kLoraRef;
#if defined(__x86_64__)
extern const LoraKernels kLoraAvx2;
extern const LoraKernels kLoraAvx512;
#endif
#if defined(__aarch64__)
extern const LoraKernels kLoraNeon;
#endif

}  // namespace piquant::kernels
