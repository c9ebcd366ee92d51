// attn_f32_{f32,f16,q8}_ref: the portable scalar attention, usable on any CPU and any head_dim
// up to kAttnMaxHeadDim. Same tiled online softmax as the SIMD variants (see attention.hpp),
// written as plain loops; the tests' oracle is a separate double-precision materialized softmax.
#include <algorithm>
#include <cmath>
#include <limits>

#include "attention/attention.hpp"

namespace piquant::kernels {
namespace {

/// Element j of row t as float.
struct RowF32 {
  const float* p;
  float at(size_t t, size_t hd, size_t j) const { return p[t * hd + j]; }
};
struct RowF16 {
  const uint16_t* p;
  float at(size_t t, size_t hd, size_t j) const { return f16_to_f32_scalar(p[t * hd + j]); }
};
struct RowQ8 {
  const int8_t* p;
  const float* d;
  float at(size_t t, size_t hd, size_t j) const {
    return d[t * kv_q8_blocks(hd) + j / kKvQ8Block] * static_cast<float>(p[t * hd + j]);
  }
};

template <class Rows>
void attn_ref(const AttnArgs& a, Rows k, Rows v) {
  const size_t hd = a.head_dim;
  float kt[kAttnTile * kAttnMaxHeadDim];  // one tile of rows as f32 (K, then V)
  float acc[kAttnMaxHeadDim];
  float s[kAttnTile];
  for (size_t h = 0; h < a.n_q; ++h) {
    const float* q = a.q + h * a.q_stride;
    float m = -std::numeric_limits<float>::infinity(), l = 0.0f;
    std::fill(acc, acc + hd, 0.0f);
    for (size_t t0 = 0; t0 < a.n_kv; t0 += kAttnTile) {
      const size_t nt = std::min(kAttnTile, a.n_kv - t0);
      for (size_t t = 0; t < nt; ++t) {
        for (size_t j = 0; j < hd; ++j) kt[t * hd + j] = k.at(t0 + t, hd, j);
      }
      float mx = m;
      for (size_t t = 0; t < nt; ++t) {
        float dot = 0.0f;
        for (size_t j = 0; j < hd; ++j) dot += q[j] * kt[t * hd + j];
        s[t] = dot * a.scale;
        mx = std::max(mx, s[t]);
      }
      const float c = std::exp(m - mx);  // 0 on the first tile (m = -inf)
      float sum = 0.0f;
      for (size_t t = 0; t < nt; ++t) sum += s[t] = std::exp(s[t] - mx);
      l = l * c + sum;
      m = mx;
      for (size_t t = 0; t < nt; ++t) {
        for (size_t j = 0; j < hd; ++j) kt[t * hd + j] = v.at(t0 + t, hd, j);
      }
      for (size_t j = 0; j < hd; ++j) {
        float x = acc[j] * c;
        for (size_t t = 0; t < nt; ++t) x += s[t] * kt[t * hd + j];
        acc[j] = x;
      }
    }
    float* out = a.out + h * a.out_stride;
    const float inv = 1.0f / l;
    for (size_t j = 0; j < hd; ++j) out[j] = acc[j] * inv;
  }
}

}  // namespace

void attn_f32_f32_ref(const AttnArgs& a) {
  attn_ref(a, RowF32{static_cast<const float*>(a.k)}, RowF32{static_cast<const float*>(a.v)});
}
void attn_f32_f16_ref(const AttnArgs& a) {
  attn_ref(a, RowF16{static_cast<const uint16_t*>(a.k)}, RowF16{static_cast<const uint16_t*>(a.v)});
}
void attn_f32_q8_ref(const AttnArgs& a) {
  attn_ref(a, RowQ8{static_cast<const int8_t*>(a.k), a.k_scale},
           RowQ8{static_cast<const int8_t*>(a.v), a.v_scale});
}

}  // namespace piquant::kernels
