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
  check_kernel_isa();
  if (n_tokens == 0 || n_outs == 0) return;
  const QuantWeight& w0 = *outs[0].w;
  bool same = n_outs <= kMaxOuts;
  for (size_t i = 0; i < n_outs; ++i)
    same = same && outs[i].w->type == w0.type && outs[i].w->cols == w0.cols;
  if (n_outs == 1 || !same) {
    for (size_t i = 0; i < n_outs; ++i) {
      linear(*outs[i].w, x, n_tokens, x_stride, outs[i].y, outs[i].y_stride, pool, scratch);
    }
    return;
  }
  const size_t kk = static_cast<size_t>(w0.cols);
  for (size_t i = 0; i < n_outs; ++i) {
    const QuantWeight& w = *outs[i].w;
    validate_weight(w, "linear");
    const size_t m = static_cast<size_t>(w.rows);
    if (x == nullptr || outs[i].y == nullptr) {
      throw Error(ErrorCode::kInvalidArgument, "linear: null x or y");
    }
    if (n_tokens > 1 && (x_stride < kk || outs[i].y_stride < m)) {
      throw Error(ErrorCode::kInvalidArgument, "linear: strides x " + std::to_string(x_stride) +
                                                   " / y " + std::to_string(outs[i].y_stride) +
                                                   " smaller than the row lengths " +
                                                   std::to_string(kk) + " / " + std::to_string(m));
    }
  }
  const k::MatmulOp op = n_tokens == 1 ? k::MatmulOp::kGemv : k::MatmulOp::kGemm;
  const k::GemmKernel& kern = k::matmul_kernel(op, w0.type);
  k::GemmArgs args{};
  args.n0 = 0;
  args.n1 = n_tokens;
  args.k = kk;
  if (kern.act == k::ActType::kQ8) {
    const size_t nb = kk / k::kBlock;
    scratch.act.resize(n_tokens * nb * sizeof(k::BlockQ8A));
    auto* act = reinterpret_cast<k::BlockQ8A*>(scratch.act.data());
    const k::QuantActFn quant = k::quant_act_kernel().run;
    auto quantize = [&](size_t t0, size_t t1) {
      for (size_t t = t0; t < t1; ++t) quant(x + t * x_stride, act + t * nb, kk);
    };
    if (pool && n_tokens >= 4)
      pool->parallel_for(n_tokens, 1, quantize);
    else
      quantize(0, n_tokens);
    args.act = act;
    args.act_stride = nb * sizeof(k::BlockQ8A);
  } else {
    args.act = x;
    args.act_stride = x_stride * sizeof(float);
  }
  // The outputs' rows, each padded to the packing's interleave, laid end to end: row g of
  // this concatenation is row g - first[i] of output i.
  const size_t il = k::row_interleave(w0.type);
  size_t first[kMaxOuts], total = 0;
  for (size_t i = 0; i < n_outs; ++i) {
    first[i] = total;
    total += (static_cast<size_t>(outs[i].w->rows) + il - 1) / il * il;
  }
  auto run_rows = [&](size_t g0, size_t g1) {
    for (size_t i = 0; i < n_outs; ++i) {
      const size_t m = static_cast<size_t>(outs[i].w->rows);
      if (g1 <= first[i] || g0 >= first[i] + m) continue;
      k::GemmArgs a = args;
      a.m0 = std::max(g0, first[i]) - first[i];
      a.m1 = std::min(g1 - first[i], m);
      a.wt = outs[i].w->packed;
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
