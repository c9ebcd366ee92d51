#pragma once
// The float ops written once with xsimd 8.1: functors `template <class Arch> void
// operator()(Arch, ...)` on xsimd::batch<float, Arch>, instantiated by vector_<isa>.cpp, each
// built with its arch flags. Tails shorter than a vector run as scalar code in the same file.
// Everything has internal linkage (see STYLE.md on ODR clashes between differently-flagged
// files).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <xsimd/xsimd.hpp>

#include "vector/vector.hpp"

namespace piquant::kernels {
namespace {

struct RmsNorm {
  template <class Arch>
  void operator()(Arch, float* out, const float* x, const float* w, size_t n, float eps) const {
    using B = xsimd::batch<float, Arch>;
    constexpr size_t W = B::size;
    B s0(0.0f), s1(0.0f);
    size_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
      const B a = B::load_unaligned(x + i), b = B::load_unaligned(x + i + W);
      s0 = xsimd::fma(a, a, s0);
      s1 = xsimd::fma(b, b, s1);
    }
    for (; i + W <= n; i += W) {
      const B a = B::load_unaligned(x + i);
      s0 = xsimd::fma(a, a, s0);
    }
    float ss = xsimd::hadd(s0 + s1);
    for (; i < n; ++i) ss += x[i] * x[i];
    const float r = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
    const B rb(r);
    i = 0;
    for (; i + W <= n; i += W) {
      (B::load_unaligned(w + i) * (B::load_unaligned(x + i) * rb)).store_unaligned(out + i);
    }
    for (; i < n; ++i) out[i] = w[i] * (x[i] * r);
  }
};

// Lane generators for xsimd::swizzle. (Not zip_lo/zip_hi: xsimd 8.1's avx512 versions
// interleave within 128-bit lanes, which the tests caught.)
struct SwapPairs {
  static constexpr uint32_t get(size_t i, size_t) { return static_cast<uint32_t>(i ^ 1u); }
};
struct DupLow {  // [0, 0, 1, 1, ...]
  static constexpr uint32_t get(size_t i, size_t) { return static_cast<uint32_t>(i / 2); }
};
struct DupHigh {  // [W/2, W/2, W/2 + 1, ...]
  static constexpr uint32_t get(size_t i, size_t n) { return static_cast<uint32_t>(n / 2 + i / 2); }
};

struct RopePairs {
  template <class Arch>
  void operator()(Arch, float* x, size_t n_heads, size_t hd, const float* cos,
                  const float* sin) const {
    using B = xsimd::batch<float, Arch>;
    constexpr size_t W = B::size;
    using U = xsimd::batch<uint32_t, Arch>;
    constexpr auto swap = xsimd::make_batch_constant<U, SwapPairs>();
    constexpr auto dup_lo = xsimd::make_batch_constant<U, DupLow>();
    constexpr auto dup_hi = xsimd::make_batch_constant<U, DupHigh>();
    alignas(64) float sign_arr[W];
    for (size_t k = 0; k < W; ++k) sign_arr[k] = (k & 1) ? 1.0f : -1.0f;
    const B sign = B::load_aligned(sign_arr);
    for (size_t h = 0; h < n_heads; ++h) {
      float* v = x + h * hd;
      size_t j = 0;
      // 2W values = W pairs per step: out = x * [c,c] + swap(x) * [-s,+s]. Not on SSE: xsimd
      // 8.1's sse2 swizzles measured slower than the scalar loop below (419 vs 364 ns).
      for (; !std::is_same<Arch, xsimd::sse4_2>::value && j + 2 * W <= hd; j += 2 * W) {
        const B c = B::load_unaligned(cos + j / 2), s = B::load_unaligned(sin + j / 2);
        const B x0 = B::load_unaligned(v + j), x1 = B::load_unaligned(v + j + W);
        const B s0 = xsimd::swizzle(s, dup_lo) * sign, s1 = xsimd::swizzle(s, dup_hi) * sign;
        const B c0 = xsimd::swizzle(c, dup_lo), c1 = xsimd::swizzle(c, dup_hi);
        xsimd::fma(xsimd::swizzle(x0, swap), s0, x0 * c0).store_unaligned(v + j);
        xsimd::fma(xsimd::swizzle(x1, swap), s1, x1 * c1).store_unaligned(v + j + W);
      }
      for (size_t i = j / 2; i < hd / 2; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * cos[i] - b * sin[i];
        v[2 * i + 1] = a * sin[i] + b * cos[i];
      }
    }
  }
};

struct RopeHalves {
  template <class Arch>
  void operator()(Arch, float* x, size_t n_heads, size_t hd, const float* cos,
                  const float* sin) const {
    using B = xsimd::batch<float, Arch>;
    constexpr size_t W = B::size;
    const size_t half = hd / 2;
    for (size_t h = 0; h < n_heads; ++h) {
      float* v = x + h * hd;
      size_t i = 0;
      for (; i + W <= half; i += W) {
        const B a = B::load_unaligned(v + i), b = B::load_unaligned(v + half + i);
        const B c = B::load_unaligned(cos + i), s = B::load_unaligned(sin + i);
        xsimd::fms(a, c, b * s).store_unaligned(v + i);
        xsimd::fma(a, s, b * c).store_unaligned(v + half + i);
      }
      for (; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cos[i] - b * sin[i];
        v[i + half] = a * sin[i] + b * cos[i];
      }
    }
  }
};

struct SwiGlu {
  template <class Arch>
  void operator()(Arch, float* out, const float* gate, const float* up, size_t n) const {
    using B = xsimd::batch<float, Arch>;
    constexpr size_t W = B::size;
    const B one(1.0f);
    size_t i = 0;
    for (; i + W <= n; i += W) {
      const B g = B::load_unaligned(gate + i);
      (g / (one + xsimd::exp(-g)) * B::load_unaligned(up + i)).store_unaligned(out + i);
    }
    for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  }
};

struct Softmax {
  template <class Arch>
  void operator()(Arch, float* x, size_t n) const {
    using B = xsimd::batch<float, Arch>;
    constexpr size_t W = B::size;
    float mx = x[0];
    size_t i = 0;
    if (n >= W) {
      B m = B::load_unaligned(x);
      for (i = W; i + W <= n; i += W) m = xsimd::max(m, B::load_unaligned(x + i));
      alignas(64) float lanes[W];
      m.store_aligned(lanes);
      for (size_t k = 0; k < W; ++k) mx = std::max(mx, lanes[k]);
    }
    for (; i < n; ++i) mx = std::max(mx, x[i]);
    const B mb(mx);
    B sum(0.0f);
    for (i = 0; i + W <= n; i += W) {
      const B e = xsimd::exp(B::load_unaligned(x + i) - mb);
      e.store_unaligned(x + i);
      sum += e;
    }
    float s = xsimd::hadd(sum);
    for (; i < n; ++i) s += x[i] = std::exp(x[i] - mx);
    const float inv = 1.0f / s;
    const B ib(inv);
    for (i = 0; i + W <= n; i += W) (B::load_unaligned(x + i) * ib).store_unaligned(x + i);
    for (; i < n; ++i) x[i] *= inv;
  }
};

struct AddInPlace {
  template <class Arch>
  void operator()(Arch, float* dst, const float* src, size_t n) const {
    using B = xsimd::batch<float, Arch>;
    constexpr size_t W = B::size;
    size_t i = 0;
    for (; i + W <= n; i += W) {
      (B::load_unaligned(dst + i) + B::load_unaligned(src + i)).store_unaligned(dst + i);
    }
    for (; i < n; ++i) dst[i] += src[i];
  }
};

/// Plain function pointers over the functors for one Arch, for the VectorKernels tables.
template <class Arch>
struct VectorOps {
  static void rmsnorm(float* out, const float* x, const float* w, size_t n, float eps) {
    RmsNorm{}(Arch{}, out, x, w, n, eps);
  }
  static void rope_pairs(float* x, size_t nh, size_t hd, const float* c, const float* s) {
    RopePairs{}(Arch{}, x, nh, hd, c, s);
  }
  static void rope_halves(float* x, size_t nh, size_t hd, const float* c, const float* s) {
    RopeHalves{}(Arch{}, x, nh, hd, c, s);
  }
  static void swiglu(float* out, const float* g, const float* u, size_t n) {
    SwiGlu{}(Arch{}, out, g, u, n);
  }
  static void softmax(float* x, size_t n) { Softmax{}(Arch{}, x, n); }
  static void add(float* dst, const float* src, size_t n) { AddInPlace{}(Arch{}, dst, src, n); }
};

}  // namespace
}  // namespace piquant::kernels
