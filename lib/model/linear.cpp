#include "model/linear.hpp"

#include <piquant/error.hpp>

#include "common/pack.hpp"
#include "matmul/matmul.hpp"
#include "threads/thread_pool.hpp"

namespace piquant {

namespace k = kernels;

size_t QuantWeight::packed_bytes() const {
  return k::packed_size(type, static_cast<size_t>(rows), static_cast<size_t>(cols));
}

void validate_weight(const QuantWeight& w, const std::string& what) {
  if (w.rows <= 0 || w.cols <= 0) {
    throw Error(ErrorCode::kInvalidArgument, what + ": shape " + std::to_string(w.rows) + "x" +
                                                 std::to_string(w.cols) + " is empty");
  }
  const auto bv = static_cast<int64_t>(k::block_values(w.type));
  if (w.cols % bv != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                what + ": " + std::to_string(w.cols) + " columns is not a multiple of " +
                    std::to_string(bv) + " (the " + k::to_string(w.type) + " block size)");
  }
  if (w.packed == nullptr) throw Error(ErrorCode::kInvalidArgument, what + ": no weight data");
}

namespace {

OwnedQuantWeight make_owned(WeightType type, const void* src, int64_t rows, int64_t cols,
                            const char* what) {
  if (src == nullptr) throw Error(ErrorCode::kInvalidArgument, std::string(what) + ": no data");
  OwnedQuantWeight o;
  o.weight = QuantWeight{type, rows, cols, src};
  validate_weight(o.weight, std::string(what) + " (" + k::to_string(type) + ")");
  o.storage.resize(o.weight.packed_bytes());
  o.weight.packed = o.storage.data();
  return o;
}

}  // namespace

OwnedQuantWeight pack_weight(WeightType type, const void* rows_data, int64_t rows, int64_t cols) {
  OwnedQuantWeight o = make_owned(type, rows_data, rows, cols, "pack_weight");
  k::pack(type, rows_data, static_cast<size_t>(rows), static_cast<size_t>(cols), o.storage.data());
  return o;
}

OwnedQuantWeight quantize_weight(WeightType type, const float* w, int64_t rows, int64_t cols) {
  if (!k::has_quantizer(type)) {
    throw Error(ErrorCode::kUnsupported,
                std::string("quantize_weight: quantizing to ") + k::to_string(type) + " is not supported yet");
  }
  OwnedQuantWeight o = make_owned(type, w, rows, cols, "quantize_weight");
  const size_t m = static_cast<size_t>(rows), kk = static_cast<size_t>(cols);
  std::vector<uint8_t> row_major(m * k::row_bytes(type, kk));
  k::quantize_rows(type, w, m, kk, row_major.data());
  k::pack(type, row_major.data(), m, kk, o.storage.data());
  return o;
}

void check_kernel_isa() {
  static const bool ok = k::cpu_isa_error().empty();  // detection is done once
  if (!ok) {
    throw Error(ErrorCode::kUnsupported,
                k::cpu_isa_error() + " (unset PIQUANT_ISA to use the best path this CPU has)");
  }
}

void check_linear_io(const float* x, const float* y, size_t n_tokens, size_t x_stride,
                     size_t y_stride, size_t kk, size_t m) {
  if (x == nullptr || y == nullptr) throw Error(ErrorCode::kInvalidArgument, "linear: null x or y");
  if (n_tokens > 1 && (x_stride < kk || y_stride < m)) {
    throw Error(ErrorCode::kInvalidArgument,
                "linear: strides x " + std::to_string(x_stride) + " / y " + std::to_string(y_stride) +
                    " smaller than the row lengths " + std::to_string(kk) + " / " + std::to_string(m));
  }
}

void set_activations(const k::GemmKernel& kern, const float* x, size_t n_tokens, size_t x_stride,
                     size_t kk, ThreadPool* pool, LinearScratch& scratch, k::GemmArgs& args) {
  if (kern.act != k::ActType::kQ8) {
    args.act = x;
    args.act_stride = x_stride * sizeof(float);
    return;
  }
  const size_t nb = kk / k::kBlock;
  scratch.act.resize(n_tokens * nb * sizeof(k::BlockQ8A));
  auto* act = reinterpret_cast<k::BlockQ8A*>(scratch.act.data());
  const k::QuantActFn quant = k::quant_act_kernel().run;
  auto quantize = [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) quant(x + t * x_stride, act + t * nb, kk);
  };
  if (pool && n_tokens >= 4) pool->parallel_for(n_tokens, 1, quantize);
  else quantize(0, n_tokens);
  args.act = act;
  args.act_stride = nb * sizeof(k::BlockQ8A);
}

size_t linear_chunk_rows(WeightType type) {
  return k::is_quantized(type) ? 2 * k::row_interleave(type) : 1;
}

LinearWeight::LinearWeight(const QuantWeight& w, const std::string& what) : w_(w) {
  check_kernel_isa();
  validate_weight(w, what);
  gemv_ = &k::matmul_kernel(k::MatmulOp::kGemv, w.type);
  gemm_ = &k::matmul_kernel(k::MatmulOp::kGemm, w.type);
}

void linear(const LinearWeight& lw, const float* x, size_t n_tokens, size_t x_stride, float* y,
            size_t y_stride, ThreadPool* pool, LinearScratch& scratch) {
  if (lw.empty()) throw Error(ErrorCode::kInvalidArgument, "linear: an empty weight handle");
  if (n_tokens == 0) return;
  const QuantWeight& w = lw.weight();
  const size_t m = static_cast<size_t>(w.rows), kk = static_cast<size_t>(w.cols);
  check_linear_io(x, y, n_tokens, x_stride, y_stride, kk, m);
  const k::GemmKernel& kern = lw.kernel(n_tokens);
  k::GemmArgs args{};
  args.n0 = 0;
  args.n1 = n_tokens;
  args.k = kk;
  args.wt = w.packed;
  args.dst = y;
  args.dst_stride = y_stride;
  set_activations(kern, x, n_tokens, x_stride, kk, pool, scratch, args);
  auto run_rows = [&](size_t m0, size_t m1) {
    k::GemmArgs a = args;
    a.m0 = m0;
    a.m1 = m1;
    kern.run(a);
  };
  if (pool) pool->parallel_for(m, linear_chunk_rows(w.type), run_rows);
  else run_rows(0, m);
}

std::string linear_kernel_names() {
  check_kernel_isa();
  return k::matmul_kernel_names();
}

}  // namespace piquant
