#include "model/quantize_model.hpp"

#include "common/pack.hpp"
#include "piquant/error.hpp"
#include "util/aligned.hpp"

namespace piquant {
namespace {

// Owns the bytes of every converted tensor: 64-byte aligned pieces of huge-page blocks, since
// the GEMV streams them once per token.
struct Arena {
  std::vector<std::shared_ptr<const void>> buffers;
  WeightArena weights{buffers};
  uint8_t* alloc(size_t n) { return weights.alloc(n); }
};

std::vector<float> to_f32(const Tensor& t) {
  std::vector<float> out(t.numel());
  if (t.type == DType::kF32) {
    std::copy(t.f32(), t.f32() + t.numel(), out.begin());
  } else if (t.type == DType::kF16 && t.cols % 32 == 0) {
    kernels::dequantize_rows(kernels::WeightType::kF16, t.data, static_cast<size_t>(t.rows),
                             static_cast<size_t>(t.cols), out.data());
  } else {
    throw Error(ErrorCode::kUnsupported,
                t.name + ": re-quantizing needs f32 or f16 weights, this is " + to_string(t.type));
  }
  return out;
}

Tensor convert(const Tensor& t, DType type, TensorLayout layout, Arena& arena) {
  if (t.empty() || t.rows == 1 || t.cols % 32 != 0 || type == t.type) return t;
  const auto wt = type;
  if (!kernels::has_quantizer(wt)) {
    throw Error(ErrorCode::kUnsupported,
                t.name + ": quantizing to " + to_string(type) + " is not supported yet");
  }
  if (t.cols % static_cast<int64_t>(kernels::block_values(wt)) != 0) {
    throw Error(ErrorCode::kInvalidArgument, t.name + ": " + std::to_string(t.cols) +
                                                 " columns is not a multiple of the " +
                                                 to_string(type) + " block");
  }
  const std::vector<float> f = to_f32(t);
  const size_t rows = static_cast<size_t>(t.rows), cols = static_cast<size_t>(t.cols);
  Tensor out = t;
  out.type = type;
  out.layout = layout;
  std::vector<uint8_t> row_major(rows * kernels::row_bytes(wt, cols));
  kernels::quantize_rows(wt, f.data(), rows, cols, row_major.data());
  if (layout == TensorLayout::kPacked && is_quantized(type)) {
    uint8_t* dst = arena.alloc(kernels::packed_size(wt, rows, cols));
    kernels::pack(wt, row_major.data(), rows, cols, dst);
    out.data = dst;
  } else {
    uint8_t* dst = arena.alloc(row_major.size());
    std::copy(row_major.begin(), row_major.end(), dst);
    out.data = dst;
  }
  return out;
}

}  // namespace

DType parse_dtype(const std::string& n) {
  if (n == "f32") return DType::kF32;
  if (n == "f16") return DType::kF16;
  if (n == "q8" || n == "q8_0") return DType::kQ8;
  if (n == "q4" || n == "q4_0") return DType::kQ4;
  if (n == "q4m" || n == "q4_1") return DType::kQ4M;
  for (DType t : kAllDTypes) {
    if (n == to_string(t)) return t;
  }
  throw Error(ErrorCode::kInvalidArgument,
              "unknown weight type '" + n + "' (f32, f16, q8, q4, q4m, q4_k, q5_k, q6_k, q5_0, q5_1)");
}

std::unique_ptr<Model::Impl> quantize_model(const Model::Impl& src, const QuantizeModelOptions& o) {
  auto m = std::make_unique<Model::Impl>();
  m->config = src.config;
  m->rope_layout = src.rope_layout;
  m->tokenizer = src.tokenizer;
  m->chat_template = src.chat_template;
  m->source = src.source + ", re-quantized to " + to_string(o.type);
  m->storage = src.storage;  // norms and biases still point into the source's storage
  Arena arena;
  m->tok_embd = convert(src.tok_embd, o.embedding_type, TensorLayout::kRows, arena);
  m->output_norm = src.output_norm;
  m->output = convert(src.output, o.embedding_type, TensorLayout::kPacked, arena);
  m->layers = src.layers;
  for (LayerWeights& l : m->layers) {
    for (Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      *t = convert(*t, o.type, TensorLayout::kPacked, arena);
    }
  }
  for (auto& b : arena.buffers) m->storage.push_back(b);
  m->rope_freqs = src.rope_freqs;
  return m;
}

}  // namespace piquant
