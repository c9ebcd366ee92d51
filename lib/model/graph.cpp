#include "model/graph.hpp"

#include <algorithm>
#include <cmath>

#include "piquant/error.hpp"
#include "threads/thread_pool.hpp"
#include "vector/vector.hpp"

namespace piquant {

Forward::Forward(const Model::Impl& model, int n_ctx, KvType kv_type, ThreadPool& pool)
    : m_(model),
      pool_(pool),
      kv_(KvShape{model.config.n_layers, n_ctx, model.config.n_kv_heads, model.config.head_dim},
          kv_type) {
  const ModelConfig& c = m_.config;
  q_dim_ = c.n_heads * c.head_dim;
  kv_dim_ = c.n_kv_heads * c.head_dim;
  const size_t B = kBatch;
  x_.resize(B * c.dim);
  xb_.resize(B * std::max(c.dim, q_dim_));
  q_.resize(B * q_dim_);
  k_.resize(B * kv_dim_);
  v_.resize(B * kv_dim_);
  att_.resize(B * q_dim_);
  hb_.resize(B * c.hidden_dim);
  hb2_.resize(B * c.hidden_dim);
  cos_.resize(B * (c.head_dim / 2));
  sin_.resize(B * (c.head_dim / 2));
}

size_t Forward::scratch_bytes() const {
  size_t n = 0;
  for (const auto* v : {&x_, &xb_, &q_, &k_, &v_, &att_, &hb_, &hb2_, &cos_, &sin_, &logits_}) {
    n += v->capacity() * sizeof(float);
  }
  return n + lin_.act.capacity();
}

// y (n x w.rows) = x (n x w.cols) W^T. f32 weights whose K is not a multiple of the kernels'
// block of 32 (tiny llama2.c models) take a plain loop; everything else the matmul kernels.
void Forward::matmul(const Tensor& w, const float* x, int n, float* y) {
  const size_t rows = static_cast<size_t>(w.rows), cols = static_cast<size_t>(w.cols);
  if (on_matmul_input) on_matmul_input(w, x, n);
  if (w.type == DType::kF32 && cols % 32 != 0) {
    const float* wd = w.f32();
    pool_.parallel_for(rows, 16, [&](size_t r0, size_t r1) {
      for (int t = 0; t < n; ++t) {
        const float* xt = x + static_cast<size_t>(t) * cols;
        for (size_t r = r0; r < r1; ++r) {
          const float* row = wd + r * cols;
          float acc = 0.0f;
          for (size_t c = 0; c < cols; ++c) acc += row[c] * xt[c];
          y[static_cast<size_t>(t) * rows + r] = acc;
        }
      }
    });
    return;
  }
  QuantWeight q;
  q.type = to_weight_type(w.type);
  q.rows = w.rows;
  q.cols = w.cols;
  q.packed = w.data;
  linear(q, x, static_cast<size_t>(n), cols, y, rows, &pool_, lin_);
}

// Several weights over the same input in one pass (linear_multi: activations quantized once,
// one barrier); weights the kernels cannot take go one by one through matmul() above.
void Forward::matmul(std::initializer_list<std::pair<const Tensor*, float*>> ws, const float* x,
                     int n) {
  const bool kernels_take_all =
      ws.size() <= 4 && std::all_of(ws.begin(), ws.end(), [](const auto& wy) {
        return !(wy.first->type == DType::kF32 && wy.first->cols % 32 != 0);
      });
  if (!kernels_take_all) {
    for (const auto& [w, y] : ws) matmul(*w, x, n, y);
    return;
  }
  QuantWeight q[4];
  LinearOut outs[4];
  size_t k = 0;
  for (const auto& [w, y] : ws) {
    if (on_matmul_input) on_matmul_input(*w, x, n);
    q[k] = QuantWeight{to_weight_type(w->type), w->rows, w->cols, w->data};
    outs[k] = LinearOut{&q[k], y, static_cast<size_t>(w->rows)};
    ++k;
  }
  linear_multi(outs, k, x, static_cast<size_t>(n), static_cast<size_t>(ws.begin()->first->cols),
               &pool_, lin_);
}

void Forward::eval(const TokenId* tokens, int n, int pos, float* last_logits,
                   std::vector<float>* all_logits) {
  const int vocab = m_.config.vocab_size;
  for (int done = 0; done < n;) {
    const int chunk = std::min(kBatch, n - done);
    const bool last = done + chunk == n;
    const bool all = all_logits != nullptr;
    logits_.resize(static_cast<size_t>(all ? chunk : 1) * vocab);
    if (all || last) {
      eval_chunk(tokens + done, chunk, pos + done, logits_.data(), all);
      if (all) all_logits->insert(all_logits->end(), logits_.begin(), logits_.end());
      const float* l = logits_.data() + (all ? static_cast<size_t>(chunk - 1) * vocab : 0);
      if (last) std::copy(l, l + vocab, last_logits);
    } else {
      eval_chunk(tokens + done, chunk, pos + done, nullptr, false);
    }
    done += chunk;
  }
}

void Forward::eval_chunk(const TokenId* tokens, int n, int pos, float* logits, bool all) {
  const ModelConfig& c = m_.config;
  const kernels::VectorKernels& vk = kernels::vector_kernels();
  const size_t dim = static_cast<size_t>(c.dim), hd = static_cast<size_t>(c.head_dim);
  const size_t half = hd / 2, hidden = static_cast<size_t>(c.hidden_dim);
  const size_t qd = static_cast<size_t>(q_dim_), kvd = static_cast<size_t>(kv_dim_);
  const size_t T = static_cast<size_t>(n);
  const float eps = c.norm_eps;

  for (size_t t = 0; t < T; ++t) {
    tensor_row_f32(m_.tok_embd, tokens[t], x_.data() + t * dim);
    kernels::rope_cos_sin(cos_.data() + t * half, sin_.data() + t * half, m_.rope_freqs.data(),
                          half, static_cast<size_t>(pos) + t);
  }
  const bool halves = m_.rope_layout == RopeLayout::kHalves;
  auto rope = halves ? vk.rope_halves : vk.rope_pairs;

  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = m_.layers[static_cast<size_t>(l)];
    // Tokens [t0, T) need this layer's output. In the last layer that is only the tokens whose
    // logits are asked for (none in a chunk without logits, else the last one unless `all`):
    // every token's K and V still go into the cache, the rest of the layer (Q, attention, O,
    // FFN) runs for those tokens alone. Each token's arithmetic is the same either way.
    const size_t t0 = l + 1 < c.n_layers ? 0 : logits == nullptr ? T : all ? 0 : T - 1;
    const size_t tq = T - t0;
    const int nq = static_cast<int>(tq);
    for (size_t t = 0; t < T; ++t) {
      vk.rmsnorm(xb_.data() + t * dim, x_.data() + t * dim, w.attn_norm.f32(), dim, eps);
    }
    if (t0 == 0) {
      matmul({{&w.wq, q_.data()}, {&w.wk, k_.data()}, {&w.wv, v_.data()}}, xb_.data(), n);
    } else {
      matmul({{&w.wk, k_.data()}, {&w.wv, v_.data()}}, xb_.data(), n);
      if (nq > 0) matmul(w.wq, xb_.data() + t0 * dim, nq, q_.data() + t0 * qd);
    }
    if (nq > 0) lora(l, LoraTarget::kQ, xb_.data() + t0 * dim, nq, q_.data() + t0 * qd);
    lora(l, LoraTarget::kK, xb_.data(), n, k_.data());
    lora(l, LoraTarget::kV, xb_.data(), n, v_.data());
    for (size_t t = 0; t < T; ++t) {  // K and V of every token
      float* kt = k_.data() + t * kvd;
      if (!w.bk.empty()) {
        vk.add(kt, w.bk.f32(), kvd);
        vk.add(v_.data() + t * kvd, w.bv.f32(), kvd);
      }
      if (!w.k_norm.empty()) {
        for (int h = 0; h < c.n_kv_heads; ++h) vk.rmsnorm(kt + h * hd, kt + h * hd, w.k_norm.f32(), hd, eps);
      }
      rope(kt, static_cast<size_t>(c.n_kv_heads), hd, cos_.data() + t * half,
           sin_.data() + t * half);
    }
    for (size_t t = t0; t < T; ++t) {  // Q of the tokens that need this layer's output
      float* qt = q_.data() + t * qd;
      if (!w.bq.empty()) vk.add(qt, w.bq.f32(), qd);
      if (!w.q_norm.empty()) {
        for (int h = 0; h < c.n_heads; ++h) vk.rmsnorm(qt + h * hd, qt + h * hd, w.q_norm.f32(), hd, eps);
      }
      rope(qt, static_cast<size_t>(c.n_heads), hd, cos_.data() + t * half, sin_.data() + t * half);
    }
    kv_.append(l, pos, n, k_.data(), v_.data());
    if (nq == 0) continue;
    float* x = x_.data() + t0 * dim;
    float* xb = xb_.data() + t0 * dim;
    kv_.attend(l, q_.data() + t0 * qd, c.n_heads, pos + static_cast<int>(t0), nq, att_.data(), &pool_);
    matmul(w.wo, att_.data(), nq, xb);
    lora(l, LoraTarget::kO, att_.data(), nq, xb);
    vk.add(x, xb, tq * dim);

    for (size_t t = 0; t < tq; ++t) {
      vk.rmsnorm(xb + t * dim, x + t * dim, w.ffn_norm.f32(), dim, eps);
    }
    matmul({{&w.w_gate, hb_.data()}, {&w.w_up, hb2_.data()}}, xb, nq);
    lora(l, LoraTarget::kGate, xb, nq, hb_.data());
    lora(l, LoraTarget::kUp, xb, nq, hb2_.data());
    vk.swiglu(hb_.data(), hb_.data(), hb2_.data(), tq * hidden);
    matmul(w.w_down, hb_.data(), nq, xb);
    lora(l, LoraTarget::kDown, hb_.data(), nq, xb);
    vk.add(x, xb, tq * dim);
  }
  if (logits == nullptr) return;
  // Classifier: every token's logits, or just the last one's.
  const size_t first = all ? 0 : T - 1;
  for (size_t t = first; t < T; ++t) {
    vk.rmsnorm(xb_.data() + (t - first) * dim, x_.data() + t * dim, m_.output_norm.f32(), dim, eps);
  }
  matmul(m_.output, xb_.data(), static_cast<int>(T - first), logits);
}

}  // namespace piquant
