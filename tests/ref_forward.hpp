#pragma once
// The reference forward pass of the tests (not compiled into the library), one token at a time,
// written plainly after llama2.c's run.c, f32 weights only:
// RMSNorm -> QKV -> RoPE -> causal grouped-query attention over the KV cache -> output
// projection -> residual -> RMSNorm -> SwiGLU FFN -> residual; final RMSNorm -> classifier.
#include <vector>

#include "model/model_impl.hpp"

namespace piquant {

class ThreadPool;

struct RefKvCache {
  int n_ctx = 0;
  int kv_dim = 0;
  std::vector<float> k, v;  // [layer][position][kv_dim]
  float* k_at(int layer, int pos) { return k.data() + (size_t(layer) * n_ctx + pos) * kv_dim; }
  float* v_at(int layer, int pos) { return v.data() + (size_t(layer) * n_ctx + pos) * kv_dim; }
};

/// Per-session state: the KV cache and scratch buffers for one token.
struct ForwardState {
  ForwardState(const ModelConfig& c, int n_ctx);
  // (q_dim may differ from dim: buffers are sized for both.)
  RefKvCache kv;
  std::vector<float> x, xb, xb2, hb, hb2, q, att, logits;
};

/// Runs `token` at position `pos` (< n_ctx) and writes vocab_size logits into state.logits.
/// All weight matrices must be f32 (Error(kUnsupported) otherwise): this is the oracle.
void forward_token(const Model::Impl& m, ForwardState& s, TokenId token, int pos, ThreadPool& pool);

// Building blocks, exposed for tests.
void rmsnorm(float* out, const float* x, const float* weight, int n, float eps);
/// y[r] = sum_c w[r][c] x[c] for rows [0, w.rows), split across the pool.
void matvec(float* y, const Tensor& w, const float* x, ThreadPool& pool);
void softmax(float* x, int n);
/// Rotates each head of `x` (n_heads * head_dim values) for position `pos`; freqs[i] is the
/// frequency of the i-th rotated pair (Model::Impl::rope_freqs).
void rope(float* x, int n_heads, int head_dim, int pos, const float* freqs, RopeLayout layout);

}  // namespace piquant
