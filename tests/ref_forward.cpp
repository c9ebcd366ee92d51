#include "ref_forward.hpp"

#include <algorithm>
#include <cmath>

#include "piquant/error.hpp"
#include "threads/thread_pool.hpp"

namespace piquant {

ForwardState::ForwardState(const ModelConfig& c, int n_ctx) {
  kv.n_ctx = n_ctx;
  kv.kv_dim = c.n_kv_heads * c.head_dim;
  const size_t kv_size = size_t(c.n_layers) * n_ctx * kv.kv_dim;
  kv.k.assign(kv_size, 0.0f);
  kv.v.assign(kv_size, 0.0f);
  const int q_dim = c.n_heads * c.head_dim;
  x.assign(c.dim, 0.0f);
  xb.assign(std::max(c.dim, q_dim), 0.0f);
  xb2.assign(c.dim, 0.0f);
  hb.assign(c.hidden_dim, 0.0f);
  hb2.assign(c.hidden_dim, 0.0f);
  q.assign(q_dim, 0.0f);
  att.assign(size_t(c.n_heads) * n_ctx, 0.0f);
  logits.assign(c.vocab_size, 0.0f);
}

void rmsnorm(float* out, const float* x, const float* weight, int n, float eps) {
  float ss = 0.0f;
  for (int i = 0; i < n; ++i) ss += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  for (int i = 0; i < n; ++i) out[i] = weight[i] * (scale * x[i]);
}

void matvec(float* y, const Tensor& w, const float* x, ThreadPool& pool) {
  const size_t cols = static_cast<size_t>(w.cols);
  const float* wd = w.f32();
  pool.parallel_for(static_cast<size_t>(w.rows), 16, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      const float* row = wd + r * cols;
      float acc = 0.0f;
      for (size_t c = 0; c < cols; ++c) acc += row[c] * x[c];
      y[r] = acc;
    }
  });
}

void softmax(float* x, int n) {
  float max_v = x[0];
  for (int i = 1; i < n; ++i) max_v = std::max(max_v, x[i]);
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) sum += x[i] = std::exp(x[i] - max_v);
  for (int i = 0; i < n; ++i) x[i] /= sum;
}

void rope(float* x, int n_heads, int head_dim, int pos, const float* freqs, RopeLayout layout) {
  const int half = head_dim / 2;
  for (int i = 0; i < half; ++i) {
    const float angle = static_cast<float>(pos) * freqs[i];
    const float c = std::cos(angle), s = std::sin(angle);
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + h * head_dim;
      const int a = layout == RopeLayout::kPairs ? 2 * i : i;
      const int b = layout == RopeLayout::kPairs ? 2 * i + 1 : i + half;
      const float v0 = v[a], v1 = v[b];
      v[a] = v0 * c - v1 * s;
      v[b] = v0 * s + v1 * c;
    }
  }
}

void forward_token(const Model::Impl& m, ForwardState& s, TokenId token, int pos, ThreadPool& pool) {
  const ModelConfig& c = m.config;
  const int dim = c.dim, hd = c.head_dim;
  const int group = c.n_heads / c.n_kv_heads;
  const float inv_sqrt_hd = 1.0f / std::sqrt(static_cast<float>(hd));
  float* x = s.x.data();

  if (!all_f32(m)) {
    throw Error(ErrorCode::kUnsupported, "the reference forward pass needs f32 weights");
  }
  const float* emb = m.tok_embd.f32() + static_cast<size_t>(token) * dim;
  std::copy(emb, emb + dim, x);

  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = m.layers[l];
    // Attention.
    rmsnorm(s.xb.data(), x, w.attn_norm.f32(), dim, c.norm_eps);
    float* k = s.kv.k_at(l, pos);
    float* v = s.kv.v_at(l, pos);
    matvec(s.q.data(), w.wq, s.xb.data(), pool);
    matvec(k, w.wk, s.xb.data(), pool);
    matvec(v, w.wv, s.xb.data(), pool);
    if (!w.bq.empty()) {
      for (int i = 0; i < c.n_heads * hd; ++i) s.q[i] += w.bq.f32()[i];
      for (int i = 0; i < c.n_kv_heads * hd; ++i) k[i] += w.bk.f32()[i], v[i] += w.bv.f32()[i];
    }
    if (!w.q_norm.empty()) {
      for (int h = 0; h < c.n_heads; ++h) {
        rmsnorm(s.q.data() + h * hd, s.q.data() + h * hd, w.q_norm.f32(), hd, c.norm_eps);
      }
      for (int h = 0; h < c.n_kv_heads; ++h) rmsnorm(k + h * hd, k + h * hd, w.k_norm.f32(), hd, c.norm_eps);
    }
    rope(s.q.data(), c.n_heads, hd, pos, m.rope_freqs.data(), m.rope_layout);
    rope(k, c.n_kv_heads, hd, pos, m.rope_freqs.data(), m.rope_layout);

    pool.parallel_for(static_cast<size_t>(c.n_heads), 1, [&](size_t h0, size_t h1) {
      for (size_t h = h0; h < h1; ++h) {
        const float* qh = s.q.data() + h * hd;
        float* att = s.att.data() + h * s.kv.n_ctx;
        const size_t kv_off = (h / group) * hd;
        for (int t = 0; t <= pos; ++t) {
          const float* kt = s.kv.k_at(l, t) + kv_off;
          float score = 0.0f;
          for (int i = 0; i < hd; ++i) score += qh[i] * kt[i];
          att[t] = score * inv_sqrt_hd;
        }
        softmax(att, pos + 1);
        float* out = s.xb.data() + h * hd;
        std::fill(out, out + hd, 0.0f);
        for (int t = 0; t <= pos; ++t) {
          const float* vt = s.kv.v_at(l, t) + kv_off;
          const float a = att[t];
          for (int i = 0; i < hd; ++i) out[i] += a * vt[i];
        }
      }
    });
    matvec(s.xb2.data(), w.wo, s.xb.data(), pool);
    for (int i = 0; i < dim; ++i) x[i] += s.xb2[i];

    // Feed-forward (SwiGLU): down(silu(gate x) * up x).
    rmsnorm(s.xb.data(), x, w.ffn_norm.f32(), dim, c.norm_eps);
    matvec(s.hb.data(), w.w_gate, s.xb.data(), pool);
    matvec(s.hb2.data(), w.w_up, s.xb.data(), pool);
    for (int i = 0; i < c.hidden_dim; ++i) {
      const float g = s.hb[i];
      s.hb[i] = g / (1.0f + std::exp(-g)) * s.hb2[i];
    }
    matvec(s.xb2.data(), w.w_down, s.hb.data(), pool);
    for (int i = 0; i < dim; ++i) x[i] += s.xb2[i];
  }
  rmsnorm(x, x, m.output_norm.f32(), dim, c.norm_eps);
  matvec(s.logits.data(), m.output, x, pool);
}

}  // namespace piquant
