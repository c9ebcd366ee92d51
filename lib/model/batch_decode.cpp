// decode_batch: one decode step for several sessions on one model, as multi-LoRA servers do.
// The base weights stream once for all rows (GEMM over B tokens instead of B GEMVs); RoPE, the
// KV cache and attention are per session at its own position, and each session's adapters are
// added to its own row after every projection. Mirrors Forward::eval_chunk (graph.cpp).
#include <algorithm>

#include "model/graph.hpp"
#include "threads/thread_pool.hpp"
#include "vector/vector.hpp"

namespace piquant {

struct BatchDecode {
  static void run(const std::vector<Forward*>& fw, const TokenId* tokens, const int* pos,
                  float* const* logits);
};

void BatchDecode::run(const std::vector<Forward*>& fw, const TokenId* tokens, const int* pos,
                      float* const* logits) {
  Forward& f0 = *fw[0];
  const Model::Impl& m = f0.m_;
  const ModelConfig& c = m.config;
  const kernels::VectorKernels& vk = kernels::vector_kernels();
  const size_t B = fw.size(), dim = size_t(c.dim), hd = size_t(c.head_dim), half = hd / 2;
  const size_t qd = size_t(f0.q_dim_), kvd = size_t(f0.kv_dim_), hidden = size_t(c.hidden_dim);
  const size_t vocab = size_t(c.vocab_size);
  const float eps = c.norm_eps;
  std::vector<float> x(B * dim), xb(B * std::max(dim, qd)), q(B * qd), k(B * kvd), v(B * kvd),
      att(B * qd), hb(B * hidden), hb2(B * hidden), cs(B * half), sn(B * half), lg(B * vocab);
  for (size_t t = 0; t < B; ++t) {
    tensor_row_f32(m.tok_embd, tokens[t], x.data() + t * dim);
    kernels::rope_cos_sin(cs.data() + t * half, sn.data() + t * half, m.rope_freqs.data(), half,
                          size_t(pos[t]));
  }
  auto rope = m.rope_layout == RopeLayout::kHalves ? vk.rope_halves : vk.rope_pairs;
  ThreadPool& pool = f0.pool_;
  auto mm = [&](const Tensor& w, const float* in, float* out) {
    f0.matmul(w, in, static_cast<int>(B), out);
  };
  auto lora = [&](int l, LoraTarget tg, const float* in, float* out) {
    const size_t in_dim = size_t(lora_in_dim(c, tg)), out_dim = size_t(lora_out_dim(c, tg));
    for (size_t i = 0; i < B; ++i) {
      const auto* set = fw[i]->adapters_;
      if (set == nullptr || set->empty()) continue;
      apply_lora(*set, l, tg, in + i * in_dim, 1, in_dim, out + i * out_dim, out_dim, &pool,
                 f0.lora_tmp_);
    }
  };
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = m.layers[size_t(l)];
    for (size_t t = 0; t < B; ++t) {
      vk.rmsnorm(xb.data() + t * dim, x.data() + t * dim, w.attn_norm.f32(), dim, eps);
    }
    mm(w.wq, xb.data(), q.data());
    lora(l, LoraTarget::kQ, xb.data(), q.data());
    mm(w.wk, xb.data(), k.data());
    lora(l, LoraTarget::kK, xb.data(), k.data());
    mm(w.wv, xb.data(), v.data());
    lora(l, LoraTarget::kV, xb.data(), v.data());
    for (size_t t = 0; t < B; ++t) {
      float* qt = q.data() + t * qd;
      float* kt = k.data() + t * kvd;
      if (!w.bq.empty()) {
        vk.add(qt, w.bq.f32(), qd);
        vk.add(kt, w.bk.f32(), kvd);
        vk.add(v.data() + t * kvd, w.bv.f32(), kvd);
      }
      if (!w.q_norm.empty()) {
        for (int h = 0; h < c.n_heads; ++h) vk.rmsnorm(qt + h * hd, qt + h * hd, w.q_norm.f32(), hd, eps);
        for (int h = 0; h < c.n_kv_heads; ++h) vk.rmsnorm(kt + h * hd, kt + h * hd, w.k_norm.f32(), hd, eps);
      }
      rope(qt, size_t(c.n_heads), hd, cs.data() + t * half, sn.data() + t * half);
      rope(kt, size_t(c.n_kv_heads), hd, cs.data() + t * half, sn.data() + t * half);
      fw[t]->kv_.append(l, pos[t], 1, kt, v.data() + t * kvd);
      fw[t]->kv_.attend(l, qt, c.n_heads, pos[t], 1, att.data() + t * qd, &pool);
    }
    mm(w.wo, att.data(), xb.data());
    lora(l, LoraTarget::kO, att.data(), xb.data());
    vk.add(x.data(), xb.data(), B * dim);
    for (size_t t = 0; t < B; ++t) {
      vk.rmsnorm(xb.data() + t * dim, x.data() + t * dim, w.ffn_norm.f32(), dim, eps);
    }
    mm(w.w_gate, xb.data(), hb.data());
    lora(l, LoraTarget::kGate, xb.data(), hb.data());
    mm(w.w_up, xb.data(), hb2.data());
    lora(l, LoraTarget::kUp, xb.data(), hb2.data());
    vk.swiglu(hb.data(), hb.data(), hb2.data(), B * hidden);
    mm(w.w_down, hb.data(), xb.data());
    lora(l, LoraTarget::kDown, hb.data(), xb.data());
    vk.add(x.data(), xb.data(), B * dim);
  }
  for (size_t t = 0; t < B; ++t) {
    vk.rmsnorm(xb.data() + t * dim, x.data() + t * dim, m.output_norm.f32(), dim, eps);
  }
  mm(m.output, xb.data(), lg.data());
  for (size_t t = 0; t < B; ++t) std::copy(lg.begin() + t * vocab, lg.begin() + (t + 1) * vocab, logits[t]);
}

void decode_batch_forward(const std::vector<Forward*>& fw, const TokenId* tokens, const int* pos,
                          float* const* logits) {
  BatchDecode::run(fw, tokens, pos, logits);
}

}  // namespace piquant
