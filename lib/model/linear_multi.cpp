#include "model/linear_multi.hpp"

#include <algorithm>
#include <piquant/error.hpp>
#include <string>

#include "common/pack.hpp"
#include "matmul/matmul.hpp"
#include "threads/thread_pool.hpp"

namespace piquant {

namespace k = kernels;

void linear_multi(const LinearOut* outs, size_t n_outs, const float* x, size_t n_tokens,
                  size_t x_stride, ThreadPool* pool, LinearScratch& scratch) {
  constexpr size_t kMaxOuts = 8;
  for (size_t i = 0; i < n_outs; ++i) {
    if (outs[i].w->empty()) throw Error(ErrorCode::kInvalidArgument, "linear: an empty weight handle");
  }
  if (n_tokens == 0 || n_outs == 0) return;
  const QuantWeight& w0 = outs[0].w->weight();
  bool same = n_outs <= kMaxOuts;
  for (size_t i = 0; i < n_outs; ++i) {
    same = same && outs[i].w->weight().type == w0.type && outs[i].w->weight().cols == w0.cols;
  }
  if (n_outs == 1 || !same) {
    for (size_t i = 0; i < n_outs; ++i) {
      linear(*outs[i].w, x, n_tokens, x_stride, outs[i].y, outs[i].y_stride, pool, scratch);
    }
    return;
  }
  const size_t kk = static_cast<size_t>(w0.cols);
  for (size_t i = 0; i < n_outs; ++i) {
    const QuantWeight& w = outs[i].w->weight();
    check_linear_io(x, outs[i].y, n_tokens, x_stride, outs[i].y_stride, kk,
                    static_cast<size_t>(w.rows));
  }
  const k::GemmKernel& kern = outs[0].w->kernel(n_tokens);  // the same type: the same kernel
  k::GemmArgs args{};
  args.n0 = 0;
  args.n1 = n_tokens;
  args.k = kk;
  set_activations(kern, x, n_tokens, x_stride, kk, pool, scratch, args);
  // The outputs' rows, each padded to linear_chunk_rows(), laid end to end: row g of
  // this concatenation is row g - first[i] of output i.
  const size_t il = linear_chunk_rows(w0.type);
  size_t first[kMaxOuts], total = 0;
  for (size_t i = 0; i < n_outs; ++i) {
    first[i] = total;
    total += (static_cast<size_t>(outs[i].w->weight().rows) + il - 1) / il * il;
  }
  auto run_rows = [&](size_t g0, size_t g1) {
    for (size_t i = 0; i < n_outs; ++i) {
      const size_t m = static_cast<size_t>(outs[i].w->weight().rows);
      if (g1 <= first[i] || g0 >= first[i] + m) continue;
      k::GemmArgs a = args;
      a.m0 = std::max(g0, first[i]) - first[i];
      a.m1 = std::min(g1 - first[i], m);
      a.wt = outs[i].w->weight().packed;
      a.dst = outs[i].y;
      a.dst_stride = outs[i].y_stride;
      kern.run(a);
    }
  };
  if (pool)
    pool->parallel_for(total, il, run_rows);
  else
    run_rows(0, total);
}

}  // namespace piquant
