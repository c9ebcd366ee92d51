#pragma once
// The runtime forward pass: any number of tokens at once (prefill in chunks of up to kBatch
// tokens; decode is a chunk of one), weights through the quantized matmul kernels (GEMV for one
// token, GEMM for a chunk), attention through the KV cache's kernel, float ops through the
// vector kernels. lib/model/forward.cpp's one-token f32 pass stays as the plain oracle.
//
// Per layer, for a chunk of T tokens at positions pos0..pos0+T-1 (x: T x dim):
//   xb = rmsnorm(x)            q,k,v = xb W{q,k,v}^T (+ bias)     [qk_norm per head]
//   rope(q, k)                 kv.append(k, v)                    att = attend(q)
//   x += att Wo^T              xb = rmsnorm(x)                    h = silu(xb Wg^T) * (xb Wu^T)
//   x += h Wd^T
// then the final norm and the classifier for the tokens whose logits are wanted.
#include <functional>
#include <initializer_list>
#include <utility>
#include <vector>

#include "lora/apply.hpp"
#include "model/kv_cache.hpp"
#include "model/linear.hpp"
#include "model/linear_multi.hpp"
#include "model/model_impl.hpp"

namespace piquant {

class ThreadPool;

class Forward {
 public:
  static constexpr int kBatch = 64;  ///< tokens per prefill chunk

  Forward(const Model::Impl& model, int n_ctx, KvType kv_type, ThreadPool& pool);

  /// Evaluates `n` tokens at positions pos..pos+n-1 (the KV cache must hold 0..pos-1). Writes
  /// the last token's logits to `last_logits` (vocab floats) and, when all_logits is given,
  /// appends every token's logits to it.
  void eval(const TokenId* tokens, int n, int pos, float* last_logits,
            std::vector<float>* all_logits);

  /// Optional observer of every weight matrix's input (n rows of w.cols floats) before the
  /// product: the converter's calibration collects activation statistics through it.
  std::function<void(const Tensor& w, const float* x, int n)> on_matmul_input;

  const KvStore& kv() const { return kv_; }
  /// Bytes of activation scratch this forward holds.
  size_t scratch_bytes() const;
  /// LoRA adapters added after each projection (nullptr or empty: none); the Session owns them.
  void set_adapters(const std::vector<AdapterChoice>* adapters) { adapters_ = adapters; }

 private:
  void eval_chunk(const TokenId* tokens, int n, int pos, float* logits, bool all);
  void matmul(const Tensor& w, const float* x, int n, float* y);
  // y (n rows) += the session's adapters' B (A x) for projection t of layer l.
  void lora(int l, LoraTarget t, const float* x, int n, float* y) {
    if (adapters_ == nullptr || adapters_->empty()) return;
    const ModelConfig& c = m_.config;
    apply_lora(*adapters_, l, t, x, size_t(n), size_t(lora_in_dim(c, t)), y,
               size_t(lora_out_dim(c, t)), &pool_, lora_tmp_);
  }
  friend struct BatchDecode;  // decode_batch (lib/model/batch_decode.cpp)
  void matmul(std::initializer_list<std::pair<const Tensor*, float*>> ws, const float* x, int n);

  const Model::Impl& m_;
  ThreadPool& pool_;
  KvStore kv_;
  LinearScratch lin_;
  int q_dim_, kv_dim_;
  std::vector<float> x_, xb_, q_, k_, v_, att_, hb_, hb2_, cos_, sin_, logits_;
  const std::vector<AdapterChoice>* adapters_ = nullptr;
  std::vector<float> lora_tmp_;
};

/// One decode step for several sessions' forwards on the same model (lib/model/batch_decode.cpp):
/// tokens[i] at position pos[i] of fw[i]'s KV cache; logits[i] gets vocab floats.
void decode_batch_forward(const std::vector<Forward*>& fw, const TokenId* tokens, const int* pos,
                          float* const* logits);

}  // namespace piquant
