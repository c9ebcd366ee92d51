#pragma once
// The forward pass of the library, and its one transformer layer body (Forward::eval_rows in
// lib/model/graph.cpp). A Batch is a list of rows; each row is one token at a position of one
// sequence of a KV store, says whether its logits are wanted and which LoRA adapters apply to
// it. One pass runs every layer once for all rows: the weights stream once (GEMM over the rows;
// GEMV for one row), attention runs per row against that row's own sequence, LoRA runs per run
// of rows sharing an adapter set. A prefill chunk is many rows of one sequence, a decode step of
// eight agents one row of each of eight sequences; mixed passes work the same way.
//
// Per layer, for T rows (x: T x dim):
//   xb = rmsnorm(x)            q,k,v = xb W{q,k,v}^T (+ bias)     [qk_norm per head]
//   rope(q, k)                 kv.append(k, v)  (every row)       att = attend(q)  (per row)
//   x += att Wo^T              xb = rmsnorm(x)                    h = silu(xb Wg^T) * (xb Wu^T)
//   x += h Wd^T
// then the final norm and the classifier for the rows whose logits are wanted. In the last
// layer only those rows run past K/V (the others' outputs would be thrown away).
// The plain one-token f32 pass the tests compare against lives in tests/ref_forward.*.
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

/// One row of a Batch.
struct BatchRow {
  TokenId token = 0;
  int pos = 0;           ///< position in its sequence
  KvStore* kv = nullptr; ///< the store holding the sequence
  int seq = 0;           ///< sequence slot in kv
  bool logits = false;   ///< write this row's logits
  const std::vector<AdapterChoice>* adapters = nullptr;  ///< nullptr or empty: base model
};
using Batch = std::vector<BatchRow>;

class Forward {
 public:
  static constexpr int kBatch = 64;  ///< rows per pass (a longer batch runs in passes of kBatch)

  /// Scratch for kBatch rows and a KV store of n_seq sequences of n_ctx positions.
  Forward(const Model::Impl& model, int n_ctx, KvType kv_type, ThreadPool& pool, int n_seq = 1);

  /// Evaluates the rows in order. For each sequence, its rows must hold consecutive positions
  /// and the first must be at most the sequence's length (an earlier one rewrites from there);
  /// tokens inside the vocabulary; stores of this model's shape. Throws (kInvalidArgument,
  /// kOutOfRange, kContextFull) before changing anything otherwise. Writes the logits of the
  /// rows that want them, in row order, vocab floats each, to `logits`.
  void eval(const Batch& batch, float* logits);

  /// One sequence of this forward's own store: `n` tokens at positions pos..pos+n-1 of `seq`
  /// (the store must hold 0..pos-1). Writes the last token's logits to `last_logits` (vocab
  /// floats) and, when all_logits is given, appends every token's logits to it. Applies the
  /// adapters given to set_adapters.
  void eval(const TokenId* tokens, int n, int pos, float* last_logits,
            std::vector<float>* all_logits, int seq = 0);

  /// Optional observer of every weight matrix's input (n rows of w.cols floats) before the
  /// product: the converter's calibration collects activation statistics through it.
  std::function<void(const Tensor& w, const float* x, int n)> on_matmul_input;

  const KvStore& kv() const { return kv_; }
  KvStore& kv() { return kv_; }
  ThreadPool& pool() { return pool_; }
  const Model::Impl& model() const { return m_; }
  /// Bytes of activation scratch this forward holds.
  size_t scratch_bytes() const;
  /// LoRA adapters of the one-sequence eval (nullptr or empty: none); the owner keeps them.
  void set_adapters(const std::vector<AdapterChoice>* adapters) { adapters_ = adapters; }

 private:
  void check(const Batch& batch) const;
  void eval_rows(const BatchRow* rows, int n, float* logits);
  // A projection as the pass runs it: its tensor (for on_matmul_input and the plain loop) and
  // its linear() handle, made once in the constructor (the weight checked, its kernels chosen).
  // The handle is empty for f32 weights whose K is not a multiple of 32 (tiny llama2.c models),
  // which take a plain loop.
  struct Proj {
    const Tensor* t = nullptr;
    LinearWeight lw;
  };
  struct LayerProj {
    Proj wq, wk, wv, wo, w_gate, w_up, w_down;
  };
  static Proj make_proj(const Tensor& t);
  // Overlap on a split model (docs/distributed.md, "Overlap"): the outputs of Wo, W_down and the
  // classifier computed in chunks of rows, each chunk's sum (or gather) started as soon as it is
  // computed, so that it travels while the next chunk is computed. Rows [b[c], b[c+1]) of the
  // weight are parts[c], a handle on the same packed bytes; the chunks start on multiples of the
  // kernels' thread chunks (every row computed as one call computes it) and of 32 (the q8
  // wire's blocks), so the results are the same bits as one call and one exchange give.
  struct Chunks {
    std::vector<size_t> b;            // 0 = b[0] < ... < b.back() = rows; empty: not chunked
    std::vector<LinearWeight> parts;
  };
  static Chunks make_chunks(const Proj& p, int k, size_t align);
  // y[t * y_stride + r] := row b[c] + r of x W^T for the rows r of chunk c (y: the chunk's first).
  void matmul_chunk(const Proj& p, const Chunks& ch, size_t c, const float* x, int n, float* y,
                    size_t y_stride);
  // y (n x dim) := x Wo^T or x W_down^T summed over the ranks, chunk by chunk (the chunks'
  // exchanges overlapping the compute); without chunks (or with adapters in the pass, whose
  // B (A x) is added to the whole output): the product, the adapters, then one sum.
  void row_parallel(int l, LoraTarget t, const Proj& p, const Chunks& ch, const float* x,
                    size_t s0, size_t s1, float* y, Collective* comm);
  void matmul(const Proj& w, const float* x, int n, float* y);
  void matmul(std::initializer_list<std::pair<const Proj*, float*>> ws, const float* x, int n);
  // y (slots [s0, s1)) += each slot's adapters' B (A x) for projection t of layer l, one call
  // per run of slots sharing an adapter set. x and y point at slot s0.
  void lora(int l, LoraTarget t, const float* x, size_t s0, size_t s1, float* y);

  const Model::Impl& m_;
  ThreadPool& pool_;
  // This rank's heads, KV heads, FFN width and classifier rows: the config's on a whole model,
  // the slice's on a model split across ranks (m_.shard, lib/dist/shard.hpp).
  int n_heads_, n_kv_heads_, hidden_, vocab_rows_;
  std::vector<LayerProj> proj_;  // per layer
  Proj output_;
  std::vector<Chunks> wo_chunks_, down_chunks_;  // per layer (split model only)
  Chunks out_chunks_, no_chunks_;
  size_t out_k_ = 1;  // the classifier's chunks (1: not chunked)
  KvStore kv_;
  LinearScratch lin_;
  int q_dim_, kv_dim_;
  std::vector<float> x_, xb_, q_, k_, v_, att_, hb_, hb2_, cos_, sin_, logits_;
  const std::vector<AdapterChoice>* adapters_ = nullptr;
  std::vector<float> lora_tmp_, lora_full_;
  std::vector<float> logits_mine_, logits_all_;  // split model: this rank's and all logits
  std::vector<size_t> gather_counts_;
  std::vector<std::vector<size_t>> gather_bounds_;  // each rank's classifier chunks
  // Per pass: slot -> row (rows reordered so that wanted rows come last, grouped by adapter
  // set), row -> slot, each slot's adapter set, attention rows, the one-sequence batch.
  std::vector<int> order_, slot_of_;
  std::vector<const std::vector<AdapterChoice>*> slot_set_;
  std::vector<AttnRow> attn_;
  Batch seq_batch_;
};

}  // namespace piquant
