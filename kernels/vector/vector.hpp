#pragma once
// Float element-wise ops of the forward pass: RMSNorm, RoPE (both layouts), SwiGLU, softmax,
// residual add, and f32 <-> f16 rows for KV cache writes. Written once with xsimd
// (vector_impl.hpp) and instantiated per arch (sse4_2, avx2, avx512, neon), plus a scalar ref.
// One VectorKernels table per arch; vector_kernels() picks one at start like the other
// families (cpu_info(), PIQUANT_ISA). Names: rmsnorm_f32_<isa>, rope_f32_pairs_<isa>, ...
// Any length n >= 1 works (tails are scalar); pointers need no alignment.
#include <cstddef>
#include <cstdint>

#include "common/cpu.hpp"

namespace piquant::kernels {

struct VectorKernels {
  const char* isa;  ///< "ref", "sse4_2", "avx2", "avx512", "neon"
  CpuFeature needs;
  /// out[i] = w[i] * x[i] / sqrt(mean(x^2) + eps); out may alias x. Sum of squares in f32.
  void (*rmsnorm)(float* out, const float* x, const float* w, size_t n, float eps);
  /// Adjacent pairs (llama2.c, GGUF): per head, (x[2i], x[2i+1]) rotated by angle i, whose
  /// cos/sin are cos[i], sin[i], i < head_dim / 2. In place over n_heads heads.
  void (*rope_pairs)(float* x, size_t n_heads, size_t head_dim, const float* cos, const float* sin);
  /// Halves (Hugging Face): per head, (x[i], x[i + head_dim/2]) rotated by angle i.
  void (*rope_halves)(float* x, size_t n_heads, size_t head_dim, const float* cos,
                      const float* sin);
  /// out[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i]; out may alias.
  void (*swiglu)(float* out, const float* gate, const float* up, size_t n);
  /// In place: x = exp(x - max) / sum.
  void (*softmax)(float* x, size_t n);
  /// dst[i] += src[i] (residual).
  void (*add)(float* dst, const float* src, size_t n);
  /// Round to nearest even, overflow to inf (F16C / FCVTN semantics).
  void (*f32_to_f16)(uint16_t* dst, const float* src, size_t n);
  void (*f16_to_f32)(float* dst, const uint16_t* src, size_t n);
};

/// Every compiled table, best first, ref last.
const VectorKernels* const* vector_kernel_tables(size_t* count);
/// The table chosen once for this CPU (cpu_info().enabled, honouring PIQUANT_ISA).
const VectorKernels& vector_kernels();
const VectorKernels& vector_kernels(uint32_t enabled);

// ---- RoPE tables (scalar, computed once per model / position; double inside) ----

/// freqs[i] = theta^(-2i / head_dim), i < head_dim / 2.
void rope_freqs(float* freqs, size_t head_dim, float theta);

/// Llama 3 RoPE scaling (rope_type "llama3"), applied to freqs in place: wavelengths shorter
/// than original_ctx / high_freq_factor keep their frequency, longer than
/// original_ctx / low_freq_factor are divided by `factor`, and those in between blend the two
/// linearly in original_ctx / wavelength.
struct RopeLlama3Scaling {
  float factor = 8.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  float original_ctx = 8192.0f;
};
void rope_scale_llama3(float* freqs, size_t half, const RopeLlama3Scaling& s);

/// cos[i] = cos(pos * freqs[i]), sin[i] = sin(pos * freqs[i]) for i < half.
void rope_cos_sin(float* cos, float* sin, const float* freqs, size_t half, size_t pos);

// The per-arch tables (registry.cpp lists the ones compiled for this target).
extern const VectorKernels kVectorRef;
#if defined(__x86_64__)
extern const VectorKernels kVectorSse42;
extern const VectorKernels kVectorAvx2;
extern const VectorKernels kVectorAvx512;
#endif
#if defined(__aarch64__)
extern const VectorKernels kVectorNeon;
#endif

}  // namespace piquant::kernels
