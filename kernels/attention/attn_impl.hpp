#pragma once
// The SIMD attention core shared by the NEON / AVX2 / AVX-512 files: written once on
// xsimd::batch<float, Arch>, instantiated per arch in files built with that arch's flags. Each
// ISA file supplies only its tile converters (f16 -> f32 and q8 -> f32 with intrinsics, which
// xsimd 8.1 lacks). Included only by those files; everything has internal linkage.
//
// Per tile of kAttnTile (32) positions and per group of up to kAttnMaxGroup query heads:
//   1. convert the K tile to f32 once (f32 K is read in place),
//   2. scores: W keys at a time, one accumulator per key, reduced with haddp into one batch,
//   3. online-softmax update (xsimd::exp over the 32 scores),
//   4. convert the V tile once, then acc_h += p[h][t] * v_t with acc in registers per
//      4*W-float slice of head_dim.
// Converting once per group is what makes GQA cheap: 8 query heads share each K/V load.
#include <algorithm>
#include <cmath>
#include <limits>
#include <xsimd/xsimd.hpp>

#include "attention/attention.hpp"

namespace piquant::kernels {
namespace {

struct LoadF32 {
  const float* operator()(const void* base, const float*, size_t t0, size_t, size_t hd,
                          float*) const {
    return static_cast<const float*>(base) + t0 * hd;
  }
};

template <class Arch>
inline float attn_dot(const float* __restrict a, const float* __restrict b, size_t n) {
  using B = xsimd::batch<float, Arch>;
  constexpr size_t W = B::size;
  B s0(0.0f), s1(0.0f);
  size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    s0 = xsimd::fma(B::load_unaligned(a + i), B::load_unaligned(b + i), s0);
    s1 = xsimd::fma(B::load_unaligned(a + i + W), B::load_unaligned(b + i + W), s1);
  }
  for (; i < n; i += W) s0 = xsimd::fma(B::load_unaligned(a + i), B::load_unaligned(b + i), s0);
  return xsimd::hadd(s0 + s1);
}

/// Horizontal sums of W batches as one batch (lane r = sum of rows[r]). xsimd's haddp, except
/// where an ISA file specializes it (xsimd 8.1's avx512 haddp permutes lanes: see attn_avx512.cpp).
template <class Arch>
struct HsumRows {
  static xsimd::batch<float, Arch> run(const xsimd::batch<float, Arch>* rows) {
    return xsimd::haddp(rows);
  }
};

/// s[t] = scale * q . k_t for t in [0, nt); W keys per step, reduced together by haddp.
template <class Arch>
inline void attn_scores(float* __restrict s, const float* __restrict q, const float* __restrict kt,
                        size_t nt, size_t hd, float scale) {
  using B = xsimd::batch<float, Arch>;
  constexpr size_t W = B::size;
  size_t t = 0;
  for (; t + W <= nt; t += W) {
    B acc[W];
    for (size_t r = 0; r < W; ++r) acc[r] = B(0.0f);
    for (size_t i = 0; i < hd; i += W) {
      const B qv = B::load_unaligned(q + i);
      for (size_t r = 0; r < W; ++r) {
        acc[r] = xsimd::fma(qv, B::load_unaligned(kt + (t + r) * hd + i), acc[r]);
      }
    }
    (HsumRows<Arch>::run(acc) * B(scale)).store_unaligned(s + t);
  }
  for (; t < nt; ++t) s[t] = attn_dot<Arch>(q, kt + t * hd, hd) * scale;
}

/// acc[0, hd) = c * acc + sum_t p[t] * vt[t]
template <class Arch>
inline void attn_accumulate(float* __restrict acc, const float* __restrict p,
                            const float* __restrict vt, size_t nt, size_t hd, float c) {
  using B = xsimd::batch<float, Arch>;
  constexpr size_t W = B::size;
  const B cb(c);
  size_t j = 0;
  for (; j + 4 * W <= hd; j += 4 * W) {
    B a0 = B::load_unaligned(acc + j) * cb, a1 = B::load_unaligned(acc + j + W) * cb;
    B a2 = B::load_unaligned(acc + j + 2 * W) * cb, a3 = B::load_unaligned(acc + j + 3 * W) * cb;
    for (size_t t = 0; t < nt; ++t) {
      const B pt(p[t]);
      const float* v = vt + t * hd + j;
      a0 = xsimd::fma(pt, B::load_unaligned(v), a0);
      a1 = xsimd::fma(pt, B::load_unaligned(v + W), a1);
      a2 = xsimd::fma(pt, B::load_unaligned(v + 2 * W), a2);
      a3 = xsimd::fma(pt, B::load_unaligned(v + 3 * W), a3);
    }
    a0.store_unaligned(acc + j);
    a1.store_unaligned(acc + j + W);
    a2.store_unaligned(acc + j + 2 * W);
    a3.store_unaligned(acc + j + 3 * W);
  }
  for (; j < hd; j += W) {
    B a0 = B::load_unaligned(acc + j) * cb;
    for (size_t t = 0; t < nt; ++t) {
      a0 = xsimd::fma(B(p[t]), B::load_unaligned(vt + t * hd + j), a0);
    }
    a0.store_unaligned(acc + j);
  }
}

/// Requires head_dim % 32 == 0 (a multiple of every W) and head_dim <= kAttnMaxHeadDim.
template <class Arch, class Load>
void attn_simd(const AttnArgs& a, Load load) {
  using B = xsimd::batch<float, Arch>;
  constexpr size_t W = B::size;
  static_assert(kAttnTile % W == 0, "tile must be a multiple of the vector width");
  const size_t hd = a.head_dim;
  alignas(64) float buf[kAttnTile * kAttnMaxHeadDim];
  alignas(64) float acc[kAttnMaxGroup * kAttnMaxHeadDim];
  alignas(64) float p[kAttnMaxGroup][kAttnTile];
  float m[kAttnMaxGroup], l[kAttnMaxGroup], c[kAttnMaxGroup];
  const float neg_inf = -std::numeric_limits<float>::infinity();

  for (size_t h0 = 0; h0 < a.n_q; h0 += kAttnMaxGroup) {
    const size_t ng = std::min(kAttnMaxGroup, a.n_q - h0);
    std::fill(acc, acc + ng * hd, 0.0f);
    std::fill(m, m + ng, neg_inf);
    std::fill(l, l + ng, 0.0f);
    for (size_t t0 = 0; t0 < a.n_kv; t0 += kAttnTile) {
      const size_t nt = std::min(kAttnTile, a.n_kv - t0);
      const float* kt = load(a.k, a.k_scale, t0, nt, hd, buf);
      for (size_t g = 0; g < ng; ++g) {
        float* s = p[g];
        attn_scores<Arch>(s, a.q + (h0 + g) * a.q_stride, kt, nt, hd, a.scale);
        float mx = m[g];
        for (size_t t = 0; t < nt; ++t) mx = std::max(mx, s[t]);
        // Positions past nt get -huge, so exp gives 0 and the full-width sum stays exact.
        for (size_t t = nt; t < kAttnTile; ++t) s[t] = -3.0e38f;
        B sum(0.0f);
        const B mb(mx);
        for (size_t t = 0; t < kAttnTile; t += W) {
          const B e = xsimd::exp(B::load_aligned(s + t) - mb);
          e.store_aligned(s + t);
          sum += e;
        }
        c[g] = std::exp(m[g] - mx);  // 0 on the first tile (m = -inf)
        l[g] = l[g] * c[g] + xsimd::hadd(sum);
        m[g] = mx;
      }
      const float* vt = load(a.v, a.v_scale, t0, nt, hd, buf);
      for (size_t g = 0; g < ng; ++g) attn_accumulate<Arch>(acc + g * hd, p[g], vt, nt, hd, c[g]);
    }
    for (size_t g = 0; g < ng; ++g) {
      const B inv(1.0f / l[g]);
      float* out = a.out + (h0 + g) * a.out_stride;
      for (size_t j = 0; j < hd; j += W) {
        (B::load_aligned(acc + g * hd + j) * inv).store_unaligned(out + j);
      }
    }
  }
}

}  // namespace
}  // namespace piquant::kernels
