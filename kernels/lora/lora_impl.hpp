#pragma once
// The SIMD LoRA kernels written once over a small vector-traits struct V (one per ISA file:
// lora_avx2.cpp, lora_avx512.cpp, lora_neon.cpp), each built with its own flags. Internal
// linkage throughout (STYLE.md: differently-flagged inline functions are an ODR clash).
//
// V provides: Reg, kWidth, zero(), set1(f), load(const float*), load(const uint16_t*) (f16 ->
// f32), fma(a, b, acc) = a * b + acc, add(a, b), hsum(a), store(float*, a).
#include <cstddef>
#include <cstdint>

#include "common/fp16.hpp"
#include "lora/lora.hpp"

namespace piquant::kernels {
namespace {

inline float scalar_w(const float* p, size_t i) { return p[i]; }
inline float scalar_w(const uint16_t* p, size_t i) { return fp16_to_f32(p[i]); }

// NT tokens at once: each A row is loaded once per NT tokens.
template <class V, class WT, int NT>
void lora_down_block(const LoraDownArgs& a, const WT* A, size_t n0) {
  using R = typename V::Reg;
  constexpr size_t W = V::kWidth;
  const float* x[NT];
  for (int t = 0; t < NT; ++t) x[t] = a.x + (n0 + size_t(t)) * a.x_stride;
  for (size_t j = a.j0; j < a.j1; ++j) {
    const WT* row = A + j * a.k;
    R acc0[NT], acc1[NT];
    for (int t = 0; t < NT; ++t) acc0[t] = acc1[t] = V::zero();
    size_t c = 0;
    for (; c + 2 * W <= a.k; c += 2 * W) {
      const R w0 = V::load(row + c), w1 = V::load(row + c + W);
      for (int t = 0; t < NT; ++t) {
        acc0[t] = V::fma(w0, V::load(x[t] + c), acc0[t]);
        acc1[t] = V::fma(w1, V::load(x[t] + c + W), acc1[t]);
      }
    }
    for (; c + W <= a.k; c += W) {
      const R w0 = V::load(row + c);
      for (int t = 0; t < NT; ++t) acc0[t] = V::fma(w0, V::load(x[t] + c), acc0[t]);
    }
    for (int t = 0; t < NT; ++t) {
      float s = V::hsum(V::add(acc0[t], acc1[t]));
      for (size_t cc = c; cc < a.k; ++cc) s += scalar_w(row, cc) * x[t][cc];
      a.t[(n0 + size_t(t)) * a.t_stride + j] = s;
    }
  }
}

template <class V, class WT>
void lora_down(const LoraDownArgs& a) {
  const WT* A = static_cast<const WT*>(a.a);
  size_t n = 0;
  for (; n + 4 <= a.n_tokens; n += 4) lora_down_block<V, WT, 4>(a, A, n);
  for (; n < a.n_tokens; ++n) lora_down_block<V, WT, 1>(a, A, n);
}

template <class V, class WT, int NT>
void lora_up_block(const LoraUpArgs& a, const WT* B, size_t n0) {
  using R = typename V::Reg;
  constexpr size_t W = V::kWidth;
  const float* t[NT];
  float* y[NT];
  for (int q = 0; q < NT; ++q) {
    t[q] = a.t + (n0 + size_t(q)) * a.t_stride;
    y[q] = a.y + (n0 + size_t(q)) * a.y_stride;
  }
  const R sc = V::set1(a.scale);
  size_t i = a.i0;
  for (; i + 2 * W <= a.i1; i += 2 * W) {
    R acc0[NT], acc1[NT];
    for (int q = 0; q < NT; ++q) acc0[q] = acc1[q] = V::zero();
    for (size_t j = 0; j < a.r; ++j) {
      const WT* b = B + j * a.m + i;
      const R b0 = V::load(b), b1 = V::load(b + W);
      for (int q = 0; q < NT; ++q) {
        const R tv = V::set1(t[q][j]);
        acc0[q] = V::fma(b0, tv, acc0[q]);
        acc1[q] = V::fma(b1, tv, acc1[q]);
      }
    }
    for (int q = 0; q < NT; ++q) {
      V::store(y[q] + i, V::fma(acc0[q], sc, V::load(y[q] + i)));
      V::store(y[q] + i + W, V::fma(acc1[q], sc, V::load(y[q] + i + W)));
    }
  }
  for (; i + W <= a.i1; i += W) {
    R acc[NT];
    for (int q = 0; q < NT; ++q) acc[q] = V::zero();
    for (size_t j = 0; j < a.r; ++j) {
      const R b0 = V::load(B + j * a.m + i);
      for (int q = 0; q < NT; ++q) acc[q] = V::fma(b0, V::set1(t[q][j]), acc[q]);
    }
    for (int q = 0; q < NT; ++q) V::store(y[q] + i, V::fma(acc[q], sc, V::load(y[q] + i)));
  }
  for (; i < a.i1; ++i) {
    for (int q = 0; q < NT; ++q) {
      float s = 0.0f;
      for (size_t j = 0; j < a.r; ++j) s += t[q][j] * scalar_w(B, j * a.m + i);
      y[q][i] += a.scale * s;
    }
  }
}

template <class V, class WT>
void lora_up(const LoraUpArgs& a) {
  const WT* B = static_cast<const WT*>(a.bt);
  size_t n = 0;
  for (; n + 4 <= a.n_tokens; n += 4) lora_up_block<V, WT, 4>(a, B, n);
  for (; n < a.n_tokens; ++n) lora_up_block<V, WT, 1>(a, B, n);
}

}  // namespace
}  // namespace piquant::kernels
