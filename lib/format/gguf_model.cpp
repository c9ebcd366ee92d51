// Models from GGUF files (llama.cpp's format): architecture metadata -> ModelConfig, tensors ->
// the forward pass's Tensors. F32 and F16 tensors are used in place (mmapped); Q8_0, Q4_0 and
// Q4_1 are repacked without loss into the kernels' interleaved layout; BF16 is widened to f32;
// Q4_K / Q5_K / Q6_K / Q8_K are dequantized and re-quantized to the nearest piquant format with
// a notice. Everything else is refused, naming the tensor and its type.
#include "format/gguf_model.hpp"

#include <cstring>
#include <map>

#include "common/fp16.hpp"
#include "common/pack.hpp"
#include "format/kquants.hpp"
#include "piquant/error.hpp"
#include "tokenizer/tokenizer_gguf.hpp"
#include "util/aligned.hpp"

namespace piquant {
namespace {

struct ArchInfo {
  const char* name;
  RopeLayout rope;  // how llama.cpp's converter stores Q/K rows for this architecture
  bool qkv_bias;
  bool qk_norm;
};

constexpr ArchInfo kArchs[] = {
    {"llama", RopeLayout::kPairs, false, false},
    {"qwen2", RopeLayout::kHalves, true, false},
    {"qwen3", RopeLayout::kHalves, false, true},
    {"exaone", RopeLayout::kHalves, false, false},
};

class Loader {
 public:
  Loader(std::shared_ptr<const GgufFile> f, Model::Impl& m)
      : f_(std::move(f)), m_(m), arena_(m.storage) {}

  const GgufTensorInfo* find(const std::string& name) const { return f_->find_tensor(name); }

  // A weight matrix [rows, cols] for linear(); `embedding` keeps row-major (looked up by row).
  Tensor matrix(const std::string& name, int64_t rows, int64_t cols, bool embedding = false) {
    const GgufTensorInfo* t = find(name);
    if (t == nullptr) throw Error(ErrorCode::kFormat, f_->source() + ": missing tensor " + name);
    check_shape(*t, rows, cols);
    Tensor out;
    out.name = name;
    out.rows = rows;
    out.cols = cols;
    const uint8_t* data = f_->tensor_data(*t);
    const size_t r = static_cast<size_t>(rows), c = static_cast<size_t>(cols);
    switch (static_cast<GgmlType>(t->type)) {
      case GgmlType::kF32:
        out.type = DType::kF32;
        out.data = data;
        return out;
      case GgmlType::kF16:
        out.type = DType::kF16;
        out.data = data;
        if (c % 32 != 0) return widen(out, t->type, data);
        return out;
      case GgmlType::kBF16: return widen(out, t->type, data);
      case GgmlType::kQ8_0: return quantized(out, DType::kQ8, data, embedding);
      case GgmlType::kQ4_0: return quantized(out, DType::kQ4, data, embedding);
      case GgmlType::kQ4_1: return quantized(out, DType::kQ4M, data, embedding);
      case GgmlType::kQ4_K:
      case GgmlType::kQ5_K:
      case GgmlType::kQ6_K:
      case GgmlType::kQ8_K: {
        std::vector<float> f(r * c);
        dequantize_kquant(t->type, data, f.data(), f.size());
        // Q4_K has per-block minimums: q4m keeps them; the 5- to 8-bit types go to q8.
        const DType to = t->type == uint32_t(GgmlType::kQ4_K) ? DType::kQ4M : DType::kQ8;
        note_conversion(t->type, to);
        std::vector<uint8_t> rows_q(r * kernels::row_bytes(to_weight_type(to), c));
        kernels::quantize_rows(to_weight_type(to), f.data(), r, c, rows_q.data());
        const uint8_t* owned = keep(std::move(rows_q));
        return quantized(out, to, owned, embedding);
      }
      default: {
        const GgmlTypeInfo* info = ggml_type_info(t->type);
        throw Error(ErrorCode::kUnsupported,
                    f_->source() + ": tensor " + name + " has unsupported tensor type " +
                        (info ? info->name : "#" + std::to_string(t->type)) +
                        " (piquant reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K, "
                        "Q8_K)");
      }
    }
  }

  // A 1-D f32 vector of n values (norm weights, biases); f16/bf16 are widened.
  Tensor vector(const std::string& name, int64_t n, bool optional = false) {
    const GgufTensorInfo* t = find(name);
    Tensor out;
    out.name = name;
    if (t == nullptr) {
      if (optional) return out;
      throw Error(ErrorCode::kFormat, f_->source() + ": missing tensor " + name);
    }
    if (t->dims.size() != 1 || t->dims[0] != static_cast<uint64_t>(n)) {
      throw Error(ErrorCode::kFormat, f_->source() + ": tensor " + name + " has shape " +
                                          dims_string(*t) + ", expected [" + std::to_string(n) +
                                          "]");
    }
    out.rows = 1;
    out.cols = n;
    const uint8_t* data = f_->tensor_data(*t);
    if (t->type == uint32_t(GgmlType::kF32)) {
      out.data = data;
      return out;
    }
    if (t->type == uint32_t(GgmlType::kF16) || t->type == uint32_t(GgmlType::kBF16)) {
      return widen(out, t->type, data);
    }
    throw Error(ErrorCode::kUnsupported, f_->source() + ": tensor " + name +
                                             " must be F32, F16 or BF16 (it is a 1-D vector)");
  }

  std::vector<std::string> notices() const {
    std::vector<std::string> out;
    for (const auto& [from, to] : conversions_) {
      const GgmlTypeInfo* info = ggml_type_info(from.first);
      out.push_back(std::to_string(to) + " " + (info ? info->name : "?") +
                    " tensor(s) converted to " + to_string(from.second) +
                    " at load (nearest format piquant runs)");
    }
    return out;
  }

 private:
  static std::string dims_string(const GgufTensorInfo& t) {
    std::string s = "[";
    for (size_t i = 0; i < t.dims.size(); ++i) s += (i ? ", " : "") + std::to_string(t.dims[i]);
    return s + "] (ne0 first)";
  }

  void check_shape(const GgufTensorInfo& t, int64_t rows, int64_t cols) const {
    if (t.dims.size() != 2 || t.dims[0] != static_cast<uint64_t>(cols) ||
        t.dims[1] != static_cast<uint64_t>(rows)) {
      throw Error(ErrorCode::kFormat, f_->source() + ": tensor " + t.name + " has shape " +
                                          dims_string(t) + " but the metadata implies [" +
                                          std::to_string(cols) + ", " + std::to_string(rows) +
                                          "]");
    }
  }

  const uint8_t* keep(std::vector<uint8_t> bytes) {
    auto p = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
    m_.storage.push_back(p);
    return p->data();
  }

  // f16 / bf16 -> f32 copy.
  Tensor widen(Tensor out, uint32_t type, const uint8_t* data) {
    const size_t n = out.numel();
    std::vector<uint8_t> buf(n * sizeof(float));
    float* f = reinterpret_cast<float*>(buf.data());
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, data + 2 * i, 2);
      f[i] = type == uint32_t(GgmlType::kBF16) ? kernels::bf16_to_f32(h) : kernels::fp16_to_f32(h);
    }
    out.type = DType::kF32;
    out.data = keep(std::move(buf));
    return out;
  }

  // Row-major GGUF blocks: kept in place for embeddings, packed for the kernels otherwise.
  Tensor quantized(Tensor out, DType type, const uint8_t* rows_data, bool embedding) {
    out.type = type;
    if (out.cols % 32 != 0) {
      throw Error(ErrorCode::kFormat, f_->source() + ": tensor " + out.name + " has " +
                                          std::to_string(out.cols) +
                                          " columns, not a multiple of the 32-element block");
    }
    if (embedding) {
      out.layout = TensorLayout::kRows;
      out.data = rows_data;
      return out;
    }
    const auto wt = to_weight_type(type);
    const size_t r = static_cast<size_t>(out.rows), c = static_cast<size_t>(out.cols);
    // 64-byte aligned, huge-page backed: the GEMV streams these once per token.
    uint8_t* packed = arena_.alloc(kernels::packed_size(wt, r, c));
    kernels::pack(wt, rows_data, r, c, packed);
    out.layout = TensorLayout::kPacked;
    out.data = packed;
    return out;
  }

  void note_conversion(uint32_t from, DType to) { ++conversions_[{from, to}]; }

  std::shared_ptr<const GgufFile> f_;
  Model::Impl& m_;
  std::map<std::pair<uint32_t, DType>, int> conversions_;
  WeightArena arena_;  // packed tensors
};

}  // namespace

GgufModelInfo read_gguf_model_info(const GgufFile& f) {
  const std::string& src = f.source();
  const std::string arch(f.get_string("general.architecture", ""));
  const ArchInfo* info = nullptr;
  for (const ArchInfo& a : kArchs) {
    if (arch == a.name) info = &a;
  }
  if (info == nullptr) {
    throw Error(ErrorCode::kUnsupported,
                src + ": unknown architecture '" + arch +
                    "' (general.architecture); piquant runs llama, qwen2, qwen3 and exaone");
  }
  GgufModelInfo out;
  out.rope_layout = info->rope;
  ModelConfig& c = out.config;
  c.arch = arch;
  auto key = [&](const char* k) { return arch + "." + k; };
  auto u = [&](const char* k) -> int {
    const uint64_t v = f.get(key(k)).to_uint(key(k));
    if (v == 0 || v > (1u << 24)) {
      throw Error(ErrorCode::kFormat, src + ": " + key(k) + " = " + std::to_string(v) +
                                          " is out of range");
    }
    return static_cast<int>(v);
  };
  c.dim = u("embedding_length");
  c.n_layers = u("block_count");
  c.hidden_dim = u("feed_forward_length");
  c.n_heads = u("attention.head_count");
  c.n_kv_heads = f.find(key("attention.head_count_kv")) ? u("attention.head_count_kv") : c.n_heads;
  c.head_dim = f.find(key("attention.key_length")) ? u("attention.key_length") : c.dim / c.n_heads;
  c.max_seq_len = f.find(key("context_length")) ? u("context_length") : 2048;
  if (const GgufValue* v = f.find(key("attention.layer_norm_rms_epsilon"))) {
    c.norm_eps = static_cast<float>(v->to_float(key("attention.layer_norm_rms_epsilon")));
  }
  if (const GgufValue* v = f.find(key("rope.freq_base"))) {
    c.rope_theta = static_cast<float>(v->to_float(key("rope.freq_base")));
  }
  const std::string scaling(f.get_string(key("rope.scaling.type"), "none"));
  if (scaling == "linear") {
    c.rope_scaling.type = RopeScalingType::kLinear;
    c.rope_scaling.factor = static_cast<float>(f.get(key("rope.scaling.factor")).to_float(key("rope.scaling.factor")));
  } else if (scaling != "none" && !scaling.empty()) {
    throw Error(ErrorCode::kUnsupported, src + ": RoPE scaling '" + scaling + "' (" +
                                             key("rope.scaling.type") + ") is not supported");
  }
  const GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
  if (embd == nullptr) throw Error(ErrorCode::kFormat, src + ": missing tensor token_embd.weight");
  if (embd->dims.size() != 2 || embd->dims[1] == 0 || embd->dims[1] > (1u << 24)) {
    throw Error(ErrorCode::kFormat, src + ": token_embd.weight has a bad shape");
  }
  c.vocab_size = static_cast<int>(embd->dims[1]);
  c.qkv_bias = info->qkv_bias && f.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.qk_norm = info->qk_norm;
  c.tied_classifier = f.find_tensor("output.weight") == nullptr;
  validate_config(c, src);
  return out;
}

std::unique_ptr<Model::Impl> load_gguf_model(std::shared_ptr<const GgufFile> file) {
  const GgufFile& f = *file;
  const std::string& src = f.source();
  GgufModelInfo info = read_gguf_model_info(f);
  auto m = std::make_unique<Model::Impl>();
  m->source = "GGUF v" + std::to_string(f.version());
  m->rope_layout = info.rope_layout;
  m->config = info.config;
  const ModelConfig& c = m->config;
  Loader L(file, *m);
  const int64_t d = c.dim, h = c.hidden_dim, hd = c.head_dim;
  const int64_t q = int64_t{c.n_heads} * hd, kv = int64_t{c.n_kv_heads} * hd;
  m->tok_embd = L.matrix("token_embd.weight", c.vocab_size, d, /*embedding=*/true);
  m->output_norm = L.vector("output_norm.weight", d);
  m->output = L.matrix(c.tied_classifier ? "token_embd.weight" : "output.weight", c.vocab_size, d);
  m->layers.resize(static_cast<size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& w = m->layers[static_cast<size_t>(l)];
    const std::string b = "blk." + std::to_string(l) + ".";
    w.attn_norm = L.vector(b + "attn_norm.weight", d);
    w.wq = L.matrix(b + "attn_q.weight", q, d);
    w.wk = L.matrix(b + "attn_k.weight", kv, d);
    w.wv = L.matrix(b + "attn_v.weight", kv, d);
    w.wo = L.matrix(b + "attn_output.weight", d, q);
    if (c.qkv_bias) {
      w.bq = L.vector(b + "attn_q.bias", q);
      w.bk = L.vector(b + "attn_k.bias", kv);
      w.bv = L.vector(b + "attn_v.bias", kv);
    }
    if (c.qk_norm) {
      w.q_norm = L.vector(b + "attn_q_norm.weight", hd);
      w.k_norm = L.vector(b + "attn_k_norm.weight", hd);
    }
    w.ffn_norm = L.vector(b + "ffn_norm.weight", d);
    w.w_gate = L.matrix(b + "ffn_gate.weight", h, d);
    w.w_up = L.matrix(b + "ffn_up.weight", h, d);
    w.w_down = L.matrix(b + "ffn_down.weight", d, h);
  }
  // Llama 3.1+ files carry the llama3 RoPE scaling as per-frequency divisors.
  const Tensor freqs = L.vector("rope_freqs.weight", hd / 2, /*optional=*/true);
  if (f.find("tokenizer.ggml.model") != nullptr) {
    m->tokenizer = tokenizer_from_gguf(f);
    if (m->tokenizer->vocab_size() != static_cast<size_t>(c.vocab_size)) {
      throw Error(ErrorCode::kFormat, src + ": the tokenizer has " +
                                          std::to_string(m->tokenizer->vocab_size()) +
                                          " tokens but token_embd.weight has " +
                                          std::to_string(c.vocab_size) + " rows");
    }
  }
  m->chat_template = f.get_string("tokenizer.chat_template", "");
  m->notices = L.notices();
  m->storage.push_back(file);
  finish_model(*m, freqs.empty() ? nullptr : freqs.f32());
  return m;
}

}  // namespace piquant
