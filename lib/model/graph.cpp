#include "model/graph.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "dist/collective.hpp"
#include "piquant/error.hpp"
#include "threads/thread_pool.hpp"
#include "dist/shard.hpp"
#include "vector/vector.hpp"

namespace piquant {

namespace {
// Boundaries of k chunks of `rows` rows, each starting on a multiple of `align`
// (k <= rows / align: every chunk holds at least `align` rows; the last one takes the rest).
std::vector<size_t> chunk_bounds(size_t rows, size_t k, size_t align) {
  const size_t units = rows / align;
  std::vector<size_t> b;
  for (size_t c = 0; c < k; ++c) b.push_back(units * c / k * align);
  b.push_back(rows);
  return b;
}
// The kernels' thread chunks for p's rows (every row computed as one call over all rows
// computes it), times `align`'s other factors.
size_t chunk_align(const LinearWeight& lw, size_t align) {
  return lw.empty() ? align : std::lcm(align, linear_chunk_rows(lw.weight().type));
}
}  // namespace

Forward::Forward(const Model::Impl& model, int n_ctx, KvType kv_type, ThreadPool& pool,
                 int n_seq)
    : m_(model),
      pool_(pool),
      n_heads_(model.shard ? model.shard->n_heads : model.config.n_heads),
      n_kv_heads_(model.shard ? model.shard->n_kv_heads : model.config.n_kv_heads),
      hidden_(model.shard ? model.shard->hidden_dim : model.config.hidden_dim),
      vocab_rows_(model.shard ? model.shard->vocab1 - model.shard->vocab0
                              : model.config.vocab_size),
      kv_(KvShape{model.config.n_layers, n_ctx, n_kv_heads_, model.config.head_dim, n_seq},
          kv_type) {
  const ModelConfig& c = m_.config;
  proj_.reserve(m_.layers.size());
  for (const LayerWeights& l : m_.layers) {
    proj_.push_back(LayerProj{make_proj(l.wq), make_proj(l.wk), make_proj(l.wv), make_proj(l.wo),
                              make_proj(l.w_gate), make_proj(l.w_up), make_proj(l.w_down)});
  }
  output_ = make_proj(m_.output);
  // A split model whose transport overlaps: Wo's and W_down's outputs (the model's width) in
  // chunks on multiples of 32 too (the q8 wire's blocks, so a chunk's blocks are the whole
  // row's); the classifier's rows (gathered as f32) on the kernels' thread chunks alone, as many
  // chunks as the rank with the fewest rows can have (every rank's must pair up).
  const int k = m_.shard && m_.shard->n_ranks > 1 && m_.comm ? m_.comm->overlap_chunks() : 1;
  if (k > 1 && c.dim % 32 == 0) {
    for (const LayerProj& p : proj_) {
      wo_chunks_.push_back(make_chunks(p.wo, k, 32));
      down_chunks_.push_back(make_chunks(p.w_down, k, 32));
    }
  }
  if (k > 1) {
    out_k_ = static_cast<size_t>(k);
    for (int r = 0; r < m_.shard->n_ranks; ++r) {
      const auto [v0, v1] = vocab_range(c.vocab_size, r, m_.shard->n_ranks);
      out_k_ = std::min(out_k_, static_cast<size_t>(v1 - v0) / chunk_align(output_.lw, 1));
    }
    out_chunks_ = make_chunks(output_, static_cast<int>(out_k_), 1);
    if (out_chunks_.b.empty()) out_k_ = 1;
  }
  q_dim_ = n_heads_ * c.head_dim;
  kv_dim_ = n_kv_heads_ * c.head_dim;
  const size_t B = kBatch;
  x_.resize(B * c.dim);
  xb_.resize(B * std::max(c.dim, q_dim_));
  q_.resize(B * q_dim_);
  k_.resize(B * kv_dim_);
  v_.resize(B * kv_dim_);
  att_.resize(B * q_dim_);
  hb_.resize(B * static_cast<size_t>(hidden_));
  hb2_.resize(B * static_cast<size_t>(hidden_));
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

Forward::Proj Forward::make_proj(const Tensor& t) {
  Proj p;
  p.t = &t;
  if (t.type == DType::kF32 && t.cols % 32 != 0) return p;  // the plain loop
  p.lw = LinearWeight(QuantWeight{t.type, t.rows, t.cols, t.data});
  return p;
}

Forward::Chunks Forward::make_chunks(const Proj& p, int k, size_t align) {
  Chunks ch;
  if (p.lw.empty()) return ch;  // the plain loop: not chunked
  const QuantWeight& w = p.lw.weight();
  const size_t a = chunk_align(p.lw, align), rows = static_cast<size_t>(w.rows);
  const size_t kk = std::min(static_cast<size_t>(std::max(k, 1)), rows / a);
  if (kk < 2) return ch;  // one chunk: nothing to overlap
  ch.b = chunk_bounds(rows, kk, a);
  for (size_t c = 0; c < kk; ++c) {
    const auto r0 = static_cast<int64_t>(ch.b[c]), r1 = static_cast<int64_t>(ch.b[c + 1]);
    const size_t off = QuantWeight{w.type, r0, w.cols, nullptr}.packed_bytes();
    ch.parts.emplace_back(QuantWeight{w.type, r1 - r0, w.cols,
                                      static_cast<const uint8_t*>(w.packed) + off});
  }
  return ch;
}

void Forward::matmul_chunk(const Proj& p, const Chunks& ch, size_t c, const float* x, int n,
                           float* y, size_t y_stride) {
  if (c == 0 && on_matmul_input) on_matmul_input(*p.t, x, n);
  linear(ch.parts[c], x, static_cast<size_t>(n), static_cast<size_t>(p.t->cols), y, y_stride,
         &pool_, lin_);
}

void Forward::row_parallel(int l, LoraTarget t, const Proj& p, const Chunks& ch, const float* x,
                           size_t s0, size_t s1, float* y, Collective* comm) {
  const size_t dim = static_cast<size_t>(m_.config.dim), tq = s1 - s0;
  const int nq = static_cast<int>(tq);
  const bool adapters = std::any_of(slot_set_.begin() + static_cast<ptrdiff_t>(s0),
                                    slot_set_.begin() + static_cast<ptrdiff_t>(s1),
                                    [](const auto* set) { return set != nullptr; });
  if (comm == nullptr || ch.b.empty() || adapters) {
    matmul(p, x, nq, y);
    lora(l, t, x, s0, s1, y);
    if (comm) comm->sum(y, tq * dim);  // split model: every rank's share
    return;
  }
  for (size_t c = 0; c + 1 < ch.b.size(); ++c) {
    matmul_chunk(p, ch, c, x, nq, y + ch.b[c], dim);
    comm->start_sum(y + ch.b[c], tq, ch.b[c + 1] - ch.b[c], dim);
  }
  comm->finish();
}

// y (n x w.rows) = x (n x w.cols) W^T. f32 weights whose K is not a multiple of the kernels'
// block of 32 (tiny llama2.c models) take a plain loop; everything else the matmul kernels.
void Forward::matmul(const Proj& p, const float* x, int n, float* y) {
  const Tensor& w = *p.t;
  const size_t rows = static_cast<size_t>(w.rows), cols = static_cast<size_t>(w.cols);
  if (on_matmul_input) on_matmul_input(w, x, n);
  if (p.lw.empty()) {
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
  linear(p.lw, x, static_cast<size_t>(n), cols, y, rows, &pool_, lin_);
}

// Several weights over the same input in one pass (linear_multi: activations quantized once,
// one barrier); weights the kernels cannot take go one by one through matmul() above.
void Forward::matmul(std::initializer_list<std::pair<const Proj*, float*>> ws, const float* x,
                     int n) {
  const bool kernels_take_all =
      ws.size() <= 4 &&
      std::all_of(ws.begin(), ws.end(), [](const auto& wy) { return !wy.first->lw.empty(); });
  if (!kernels_take_all) {
    for (const auto& [w, y] : ws) matmul(*w, x, n, y);
    return;
  }
  LinearOut outs[4];
  size_t k = 0;
  for (const auto& [w, y] : ws) {
    if (on_matmul_input) on_matmul_input(*w->t, x, n);
    outs[k++] = LinearOut{&w->lw, y, static_cast<size_t>(w->t->rows)};
  }
  linear_multi(outs, k, x, static_cast<size_t>(n), static_cast<size_t>(ws.begin()->first->t->cols),
               &pool_, lin_);
}

void Forward::eval(const TokenId* tokens, int n, int pos, float* last_logits,
                   std::vector<float>* all_logits, int seq) {
  const size_t vocab = static_cast<size_t>(m_.config.vocab_size);
  seq_batch_.resize(static_cast<size_t>(std::max(n, 0)));
  for (int i = 0; i < n; ++i) {
    seq_batch_[static_cast<size_t>(i)] =
        BatchRow{tokens[i], pos + i, &kv_, seq, all_logits != nullptr || i + 1 == n, adapters_};
  }
  if (all_logits == nullptr) {
    eval(seq_batch_, last_logits);
    return;
  }
  const size_t old = all_logits->size();
  all_logits->resize(old + static_cast<size_t>(n) * vocab);
  float* mine = all_logits->data() + old;
  eval(seq_batch_, mine);
  if (n > 0) std::copy(mine + (static_cast<size_t>(n) - 1) * vocab, mine + n * vocab, last_logits);
}

void Forward::check(const Batch& batch) const {
  const ModelConfig& c = m_.config;
  struct Next {
    const KvStore* kv;
    int seq, pos;
  };
  std::vector<Next> next;
  for (size_t i = 0; i < batch.size(); ++i) {
    const BatchRow& r = batch[i];
    const std::string where = "batch row " + std::to_string(i);
    if (r.kv == nullptr) throw Error(ErrorCode::kInvalidArgument, where + " has no KV store");
    const KvShape& s = r.kv->shape();
    if (s.n_layers != c.n_layers || s.n_kv_heads != n_kv_heads_ || s.head_dim != c.head_dim) {
      throw Error(ErrorCode::kInvalidArgument, where + ": its KV store is for another model shape");
    }
    if (r.seq < 0 || r.seq >= s.n_seq) {
      throw Error(ErrorCode::kOutOfRange, where + ": sequence " + std::to_string(r.seq) +
                                              " not in [0, " + std::to_string(s.n_seq) + ")");
    }
    if (r.token < 0 || r.token >= c.vocab_size) {
      throw Error(ErrorCode::kOutOfRange, where + ": token id " + std::to_string(r.token) +
                                              " is outside the vocabulary (0.." +
                                              std::to_string(c.vocab_size - 1) + ")");
    }
    if (r.pos < 0) {
      throw Error(ErrorCode::kOutOfRange, where + ": position " + std::to_string(r.pos) + " < 0");
    }
    if (r.pos >= s.n_ctx) {
      throw Error(ErrorCode::kContextFull, where + ": position " + std::to_string(r.pos) +
                                               " does not fit the context of " +
                                               std::to_string(s.n_ctx));
    }
    auto it = std::find_if(next.begin(), next.end(),
                           [&](const Next& x) { return x.kv == r.kv && x.seq == r.seq; });
    if (it == next.end()) {
      const int len = r.kv->length(r.seq);
      if (r.pos > len) {
        throw Error(ErrorCode::kInvalidArgument,
                    where + ": position " + std::to_string(r.pos) + " of sequence " +
                        std::to_string(r.seq) + " leaves a gap (it holds " + std::to_string(len) +
                        " positions)");
      }
      next.push_back(Next{r.kv, r.seq, r.pos + 1});
    } else {
      if (r.pos != it->pos) {
        throw Error(ErrorCode::kInvalidArgument,
                    where + ": position " + std::to_string(r.pos) + " of sequence " +
                        std::to_string(r.seq) + " does not follow its previous row (expected " +
                        std::to_string(it->pos) + ")");
      }
      ++it->pos;
    }
  }
}

void Forward::eval(const Batch& batch, float* logits) {
  check(batch);
  // A sequence continued from an earlier position forgets what followed it.
  for (size_t i = 0; i < batch.size(); ++i) {
    const BatchRow& r = batch[i];
    if (r.pos < r.kv->length(r.seq) &&
        (i == 0 || std::none_of(batch.begin(), batch.begin() + static_cast<ptrdiff_t>(i),
                                [&](const BatchRow& e) { return e.kv == r.kv && e.seq == r.seq; }))) {
      r.kv->truncate(r.pos, r.seq);
    }
  }
  const size_t vocab = static_cast<size_t>(m_.config.vocab_size);
  for (size_t done = 0; done < batch.size();) {
    const size_t n = std::min(batch.size() - done, static_cast<size_t>(kBatch));
    eval_rows(batch.data() + done, static_cast<int>(n), logits);
    for (size_t i = done; i < done + n; ++i) {
      if (batch[i].logits) logits += vocab;
    }
    done += n;
  }
}

void Forward::lora(int l, LoraTarget t, const float* x, size_t s0, size_t s1, float* y) {
  const ModelConfig& c = m_.config;
  const size_t in_dim = static_cast<size_t>(lora_in_dim(c, t));
  const size_t out_dim = static_cast<size_t>(lora_out_dim(c, t));
  // On a slice of a split model the adapters stay whole (they are small): a projection whose
  // outputs are split (q, k, v, gate, up) computes all of B (A x) and keeps its rows; one whose
  // inputs are split (o, down) feeds A this rank's inputs with zeros elsewhere, so B (A x_r)
  // is this rank's share of the sum the reduction after it completes.
  size_t in_n = in_dim, in0 = 0, out_n = out_dim, out0 = 0;
  if (m_.shard) {
    const size_t r = static_cast<size_t>(m_.shard->rank), hd = static_cast<size_t>(c.head_dim);
    switch (t) {
      case LoraTarget::kQ: out_n = static_cast<size_t>(q_dim_); out0 = r * out_n; break;
      case LoraTarget::kK:
      case LoraTarget::kV: out_n = static_cast<size_t>(kv_dim_); out0 = r * out_n; break;
      case LoraTarget::kGate:
      case LoraTarget::kUp: out_n = static_cast<size_t>(hidden_); out0 = r * out_n; break;
      case LoraTarget::kO: in_n = static_cast<size_t>(n_heads_) * hd; in0 = r * in_n; break;
      case LoraTarget::kDown: in_n = static_cast<size_t>(hidden_); in0 = r * in_n; break;
    }
  }
  for (size_t a = s0; a < s1;) {
    const auto* set = slot_set_[a];
    size_t b = a + 1;
    while (b < s1 && slot_set_[b] == set) ++b;
    if (set != nullptr) {
      const float* xa = x + (a - s0) * in_n;
      float* ya = y + (a - s0) * out_n;
      const size_t rows = b - a;
      if (in_n == in_dim && out_n == out_dim) {
        apply_lora(*set, l, t, xa, rows, in_dim, ya, out_dim, &pool_, lora_tmp_);
      } else if (in_n != in_dim) {  // split inputs: zero-padded
        lora_full_.assign(rows * in_dim, 0.0f);
        for (size_t i = 0; i < rows; ++i) {
          std::copy(xa + i * in_n, xa + (i + 1) * in_n, lora_full_.data() + i * in_dim + in0);
        }
        apply_lora(*set, l, t, lora_full_.data(), rows, in_dim, ya, out_dim, &pool_, lora_tmp_);
      } else {  // split outputs: all of them, keep ours
        lora_full_.assign(rows * out_dim, 0.0f);
        apply_lora(*set, l, t, xa, rows, in_dim, lora_full_.data(), out_dim, &pool_, lora_tmp_);
        for (size_t i = 0; i < rows; ++i) {
          const float* src = lora_full_.data() + i * out_dim + out0;
          float* dst = ya + i * out_n;
          for (size_t j = 0; j < out_n; ++j) dst[j] += src[j];
        }
      }
    }
    a = b;
  }
}

// The transformer: every layer once for rows [0, n) (n <= kBatch). Rows are placed in slots of
// the scratch buffers: rows without wanted logits first (the last layer skips them past K/V),
// then by adapter set (one LoRA call per set); each row's arithmetic is the same in any slot.
void Forward::eval_rows(const BatchRow* rows, int n, float* logits) {
  const ModelConfig& c = m_.config;
  const kernels::VectorKernels& vk = kernels::vector_kernels();
  const size_t dim = static_cast<size_t>(c.dim), hd = static_cast<size_t>(c.head_dim);
  const size_t half = hd / 2, hidden = static_cast<size_t>(hidden_);
  const size_t qd = static_cast<size_t>(q_dim_), kvd = static_cast<size_t>(kv_dim_);
  const size_t vocab = static_cast<size_t>(c.vocab_size);
  const size_t T = static_cast<size_t>(n);
  const float eps = c.norm_eps;
  Collective* comm = m_.shard && m_.shard->n_ranks > 1 ? m_.comm.get() : nullptr;

  // Slots: key = (logits wanted, adapter set in order of first appearance); stable.
  auto set_of = [](const BatchRow& r) -> const std::vector<AdapterChoice>* {
    return r.adapters != nullptr && !r.adapters->empty() ? r.adapters : nullptr;
  };
  order_.resize(T);
  slot_of_.resize(T);
  slot_set_.resize(T);
  attn_.resize(T);
  size_t n_skip = 0;
  bool sorted = true;
  for (size_t i = 0; i < T; ++i) {
    order_[i] = static_cast<int>(i);
    if (!rows[i].logits) {
      ++n_skip;
      if (i > 0 && rows[i - 1].logits) sorted = false;
    }
    if (i > 0 && set_of(rows[i]) != set_of(rows[0])) sorted = false;
  }
  if (!sorted) {
    std::vector<const std::vector<AdapterChoice>*> sets;
    for (size_t i = 0; i < T; ++i) {
      const auto* st = set_of(rows[i]);
      if (std::find(sets.begin(), sets.end(), st) == sets.end()) sets.push_back(st);
    }
    for (size_t i = 0; i < T; ++i) {  // key kept in slot_of_ until the sort is done
      const size_t g = static_cast<size_t>(
          std::find(sets.begin(), sets.end(), set_of(rows[i])) - sets.begin());
      slot_of_[i] = static_cast<int>((rows[i].logits ? T : 0) + g);
    }
    std::stable_sort(order_.begin(), order_.end(),
                     [&](int a, int b) { return slot_of_[size_t(a)] < slot_of_[size_t(b)]; });
  }
  for (size_t s = 0; s < T; ++s) {
    const BatchRow& r = rows[order_[s]];
    slot_of_[size_t(order_[s])] = static_cast<int>(s);
    slot_set_[s] = set_of(r);
    attn_[s] = AttnRow{r.kv, r.seq, r.pos};
    tensor_row_f32(m_.tok_embd, r.token, x_.data() + s * dim);
    kernels::rope_cos_sin(cos_.data() + s * half, sin_.data() + s * half, m_.rope_freqs.data(),
                          half, static_cast<size_t>(r.pos));
  }
  const bool halves = m_.rope_layout == RopeLayout::kHalves;
  auto rope = halves ? vk.rope_halves : vk.rope_pairs;

  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = m_.layers[static_cast<size_t>(l)];
    const LayerProj& p = proj_[static_cast<size_t>(l)];
    // Slots [t0, T) need this layer's output: all of them but in the last layer, where only the
    // rows whose logits are wanted do. Every row's K and V still go into the cache.
    const size_t t0 = l + 1 < c.n_layers ? 0 : n_skip;
    const size_t tq = T - t0;
    const int nq = static_cast<int>(tq);
    for (size_t t = 0; t < T; ++t) {
      vk.rmsnorm(xb_.data() + t * dim, x_.data() + t * dim, w.attn_norm.f32(), dim, eps);
    }
    if (t0 == 0) {
      matmul({{&p.wq, q_.data()}, {&p.wk, k_.data()}, {&p.wv, v_.data()}}, xb_.data(), n);
    } else {
      matmul({{&p.wk, k_.data()}, {&p.wv, v_.data()}}, xb_.data(), n);
      if (nq > 0) matmul(p.wq, xb_.data() + t0 * dim, nq, q_.data() + t0 * qd);
    }
    lora(l, LoraTarget::kQ, xb_.data() + t0 * dim, t0, T, q_.data() + t0 * qd);
    lora(l, LoraTarget::kK, xb_.data(), 0, T, k_.data());
    lora(l, LoraTarget::kV, xb_.data(), 0, T, v_.data());
    for (size_t t = 0; t < T; ++t) {  // K and V of every row
      float* kt = k_.data() + t * kvd;
      if (!w.bk.empty()) {
        vk.add(kt, w.bk.f32(), kvd);
        vk.add(v_.data() + t * kvd, w.bv.f32(), kvd);
      }
      if (!w.k_norm.empty()) {
        for (int h = 0; h < n_kv_heads_; ++h) vk.rmsnorm(kt + h * hd, kt + h * hd, w.k_norm.f32(), hd, eps);
      }
      rope(kt, static_cast<size_t>(n_kv_heads_), hd, cos_.data() + t * half,
           sin_.data() + t * half);
    }
    for (size_t t = t0; t < T; ++t) {  // Q of the rows that need this layer's output
      float* qt = q_.data() + t * qd;
      if (!w.bq.empty()) vk.add(qt, w.bq.f32(), qd);
      if (!w.q_norm.empty()) {
        for (int h = 0; h < n_heads_; ++h) vk.rmsnorm(qt + h * hd, qt + h * hd, w.q_norm.f32(), hd, eps);
      }
      rope(qt, static_cast<size_t>(n_heads_), hd, cos_.data() + t * half, sin_.data() + t * half);
    }
    // Store K/V in row order, one call per run of consecutive positions of one sequence.
    for (size_t i = 0; i < T;) {
      const BatchRow& r = rows[i];
      const size_t s = static_cast<size_t>(slot_of_[i]);
      size_t len = 1;
      while (i + len < T && rows[i + len].kv == r.kv && rows[i + len].seq == r.seq &&
             rows[i + len].pos == r.pos + static_cast<int>(len) &&
             static_cast<size_t>(slot_of_[i + len]) == s + len) {
        ++len;
      }
      r.kv->append(l, r.pos, static_cast<int>(len), k_.data() + s * kvd, v_.data() + s * kvd,
                   r.seq);
      i += len;
    }
    if (nq == 0) continue;
    float* x = x_.data() + t0 * dim;
    float* xb = xb_.data() + t0 * dim;
    attend_rows(l, attn_.data() + t0, tq, q_.data() + t0 * qd, n_heads_, att_.data(), &pool_);
    // x += att Wo^T, on a split model summed over the ranks' heads
    row_parallel(l, LoraTarget::kO, p.wo, wo_chunks_.empty() ? no_chunks_ : wo_chunks_[size_t(l)],
                 att_.data(), t0, T, xb, comm);
    vk.add(x, xb, tq * dim);

    for (size_t t = 0; t < tq; ++t) {
      vk.rmsnorm(xb + t * dim, x + t * dim, w.ffn_norm.f32(), dim, eps);
    }
    matmul({{&p.w_gate, hb_.data()}, {&p.w_up, hb2_.data()}}, xb, nq);
    lora(l, LoraTarget::kGate, xb, t0, T, hb_.data());
    lora(l, LoraTarget::kUp, xb, t0, T, hb2_.data());
    vk.swiglu(hb_.data(), hb_.data(), hb2_.data(), tq * hidden);
    // x += h W_down^T, on a split model summed over the ranks' FFN columns
    row_parallel(l, LoraTarget::kDown, p.w_down,
                 down_chunks_.empty() ? no_chunks_ : down_chunks_[size_t(l)], hb_.data(), t0,
                 T, xb, comm);
    vk.add(x, xb, tq * dim);
  }
  const size_t tq = T - n_skip;
  if (tq == 0) return;
  // Classifier for the wanted rows (slots [n_skip, T)), then into `logits` in row order.
  for (size_t t = n_skip; t < T; ++t) {
    vk.rmsnorm(xb_.data() + (t - n_skip) * dim, x_.data() + t * dim, m_.output_norm.f32(), dim, eps);
  }
  if (comm) {
    // This rank's classifier rows for every wanted row, gathered from all ranks: per chunk of
    // the ranks' rows (one chunk without overlap), rank r's block is tq x its chunk's rows,
    // started as soon as it is computed; then laid out as tq rows of the whole vocabulary.
    const int n_ranks = m_.shard->n_ranks;
    const size_t n_chunks = out_k_;
    gather_bounds_.resize(static_cast<size_t>(n_ranks));
    for (int r = 0; r < n_ranks; ++r) {  // rank r's chunks (as its make_chunks made them)
      const auto [v0, v1] = vocab_range(c.vocab_size, r, n_ranks);
      gather_bounds_[size_t(r)] =
          chunk_bounds(static_cast<size_t>(v1 - v0), n_chunks, chunk_align(output_.lw, 1));
    }
    logits_mine_.resize(tq * static_cast<size_t>(vocab_rows_));
    logits_all_.resize(tq * vocab);
    gather_counts_.resize(static_cast<size_t>(n_ranks));
    size_t mine_off = 0, all_off = 0;
    for (size_t ci = 0; ci < n_chunks; ++ci) {
      for (int r = 0; r < n_ranks; ++r) {
        const std::vector<size_t>& b = gather_bounds_[size_t(r)];
        gather_counts_[size_t(r)] = tq * (b[ci + 1] - b[ci]);
      }
      const size_t w = gather_counts_[size_t(m_.shard->rank)] / tq;
      float* y = logits_mine_.data() + mine_off;  // tq x w: this chunk, contiguous
      if (n_chunks > 1) {
        matmul_chunk(output_, out_chunks_, ci, xb_.data(), static_cast<int>(tq), y, w);
      } else {
        matmul(output_, xb_.data(), static_cast<int>(tq), y);
      }
      comm->start_gather(y, tq * w, logits_all_.data() + all_off, gather_counts_.data());
      mine_off += tq * w;
      for (int r = 0; r < n_ranks; ++r) all_off += gather_counts_[size_t(r)];
    }
    comm->finish();
    logits_.resize(tq * vocab);
    size_t off = 0;
    for (size_t ci = 0; ci < n_chunks; ++ci) {
      for (int r = 0; r < n_ranks; ++r) {
        const std::vector<size_t>& b = gather_bounds_[size_t(r)];
        const size_t v0 = static_cast<size_t>(vocab_range(c.vocab_size, r, n_ranks).first) + b[ci];
        const size_t w = b[ci + 1] - b[ci];
        for (size_t t = 0; t < tq; ++t) {
          std::copy(logits_all_.data() + off + t * w, logits_all_.data() + off + (t + 1) * w,
                    (sorted ? logits : logits_.data()) + t * vocab + v0);
        }
        off += tq * w;
      }
    }
    if (sorted) return;
  } else if (sorted) {
    matmul(output_, xb_.data(), static_cast<int>(tq), logits);
    return;
  } else {
    logits_.resize(tq * vocab);
    matmul(output_, xb_.data(), static_cast<int>(tq), logits_.data());
  }
  size_t k = 0;
  for (size_t i = 0; i < T; ++i) {
    if (!rows[i].logits) continue;
    const float* src = logits_.data() + (static_cast<size_t>(slot_of_[i]) - n_skip) * vocab;
    std::copy(src, src + vocab, logits + k * vocab);
    ++k;
  }
}

}  // namespace piquant
