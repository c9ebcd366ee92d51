#include "load/piq_model.hpp"

#include <cstring>

#include "common/pack.hpp"
#include "load/arch.hpp"
#include "tokenizer/tokenizer_json.hpp"

namespace piquant {

bool piq_has_magic(const uint8_t* data, size_t size) {
  return size >= 8 && std::memcmp(data, "PIQUANT\0", 8) == 0;
}

namespace {

bool parse_type(const std::string& s, DType* out) {
  for (DType t : kAllDTypes) {
    if (s == to_string(t)) {
      *out = t;
      return true;
    }
  }
  return false;
}

}  // namespace

size_t piq_tensor_bytes(const std::string& type, const std::string& layout, int64_t rows,
                        int64_t cols) {
  DType t;
  if (!parse_type(type, &t) || rows < 0 || cols < 0) return 0;
  if (layout != "" && layout != kPiqLayoutPacked) return 0;
  const size_t r = static_cast<size_t>(rows), c = static_cast<size_t>(cols);
  if (!is_quantized(t)) return r * c * (t == DType::kF32 ? 4 : 2);
  if (c % block_values(t) != 0) return 0;
  const auto wt = t;
  return layout == kPiqLayoutPacked ? kernels::packed_size(wt, r, c)
                                    : r * kernels::row_bytes(wt, c);
}

namespace {

class PiqLoader {
 public:
  PiqLoader(const PiqFile& f, Model::Impl& m) : f_(f), m_(m) {}

  // A tensor of [rows, cols] (a vector: rows 1, stored with shape [cols]). `packed`: the
  // matmul kernels read it, so quantized types must be in the packed layout; otherwise it is
  // looked up by row (the embedding) and must be row-major.
  Tensor get(const std::string& name, int64_t rows, int64_t cols, bool packed,
             bool optional = false) {
    Tensor out;
    out.name = name;
    const PiqTensorInfo* t = f_.find(name);
    if (t == nullptr) {
      if (optional) return out;
      fail("missing tensor " + name);
    }
    const std::vector<int64_t> want =
        rows == 1 && !packed ? std::vector<int64_t>{cols} : std::vector<int64_t>{rows, cols};
    if (t->shape != want && !(rows == 1 && t->shape == std::vector<int64_t>{1, cols})) {
      fail("tensor " + name + " has shape " + shape_str(t->shape) + " but the config implies " +
           shape_str(want));
    }
    DType type;
    if (!parse_type(t->type, &type)) {
      fail("tensor " + name + " has unknown type \"" + t->type +
           "\" (f32, f16, q8, q4, q4m, q4_k, q5_k, q6_k, q5_0, q5_1)");
    }
    if (t->layout != "" && t->layout != kPiqLayoutPacked) {
      fail("tensor " + name + " has unknown layout \"" + t->layout + "\"");
    }
    if (rows == 1 && !packed && type != DType::kF32) {
      fail("tensor " + name + " is a vector and must be f32, not " + t->type);
    }
    if (is_quantized(type) && (t->layout == kPiqLayoutPacked) != packed) {
      fail("tensor " + name + " must be stored " + (packed ? "packed" : "row-major") +
           " for its use, not in layout \"" + t->layout + "\"");
    }
    if ((type == DType::kF16 || is_quantized(type)) && (packed || is_quantized(type)) &&
        cols % static_cast<int64_t>(block_values(type)) != 0) {
      fail("tensor " + name + ": " + t->type + " needs a multiple of " +
           std::to_string(block_values(type)) + " columns, it has " + std::to_string(cols));
    }
    const size_t bytes = piq_tensor_bytes(t->type, t->layout, rows, cols);
    if (bytes == 0 || bytes != t->size) {
      fail("tensor " + name + ": " + t->type + " " + shape_str(want) + " needs " +
           std::to_string(bytes) + " bytes but the index says " + std::to_string(t->size));
    }
    out.type = type;
    out.layout = t->layout == kPiqLayoutPacked ? TensorLayout::kPacked : TensorLayout::kRows;
    out.rows = rows;
    out.cols = cols;
    out.data = f_.data(*t);
    m_.mapped_bytes += bytes;
    return out;
  }

 private:
  static std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
  }
  [[noreturn]] void fail(const std::string& msg) const {
    throw Error(ErrorCode::kFormat, f_.path() + ": " + msg);
  }
  const PiqFile& f_;
  Model::Impl& m_;
};

}  // namespace

std::unique_ptr<Model::Impl> load_piq_model(std::shared_ptr<const PiqFile> file) {
  const PiqFile& f = *file;
  const PiqMetadata& meta = f.meta();
  auto m = std::make_unique<Model::Impl>();
  m->origin = ModelOrigin::kPiq;
  m->source = "piquant file v" + std::to_string(f.header().version);
  m->config = meta.config;
  const ModelConfig& c = m->config;
  validate_config(c, f.path());
  if (find_arch(c.arch) == nullptr) {
    throw Error(ErrorCode::kUnsupported, f.path() + ": unknown architecture '" + c.arch +
                                             "'; piquant runs " + supported_arch_names());
  }
  m->rope_layout = meta.rope_layout == "halves" ? RopeLayout::kHalves : RopeLayout::kPairs;
  m->chat_template = meta.chat_template;
  m->generation = meta.generation;
  if (!meta.tokenizer.is_null()) {
    try {
      m->tokenizer = tokenizer_from_json(meta.tokenizer);
    } catch (const Error& e) {
      throw Error(e.code(), f.path() + ": tokenizer: " + e.what());
    }
    if (m->tokenizer->vocab_size() > static_cast<size_t>(c.vocab_size)) {
      throw Error(ErrorCode::kFormat,
                  f.path() + ": the tokenizer has " + std::to_string(m->tokenizer->vocab_size()) +
                      " tokens but the model's vocabulary is " + std::to_string(c.vocab_size));
    }
  }
  PiqLoader L(f, *m);
  const int64_t d = c.dim, h = c.hidden_dim, hd = c.head_dim;
  const int64_t q = int64_t{c.n_heads} * hd, kv = int64_t{c.n_kv_heads} * hd;
  m->tok_embd = L.get("token_embd.weight", c.vocab_size, d, /*packed=*/false);
  m->output_norm = L.get("output_norm.weight", 1, d, false);
  // The classifier: its own packed copy when there is one (an untied model, or a tied one
  // whose classifier is quantized); else the embedding's f32/f16 rows serve, which are the
  // same bytes in both layouts.
  if (f.find("output.weight") != nullptr) {
    m->output = L.get("output.weight", c.vocab_size, d, true);
  } else {
    if (!c.tied_classifier) {
      throw Error(ErrorCode::kFormat, f.path() +
                                          ": missing tensor output.weight (the config "
                                          "says the classifier is not tied)");
    }
    if (is_quantized(m->tok_embd.type) || (m->tok_embd.type == DType::kF16 && d % 32 != 0)) {
      throw Error(ErrorCode::kFormat, f.path() + ": missing tensor output.weight (a " +
                                          std::string(to_string(m->tok_embd.type)) +
                                          " embedding cannot serve as the classifier)");
    }
    m->output = m->tok_embd;
    m->output.name = "output.weight";
  }
  m->layers.resize(static_cast<size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& w = m->layers[static_cast<size_t>(l)];
    const std::string b = "blk." + std::to_string(l) + ".";
    w.attn_norm = L.get(b + "attn_norm.weight", 1, d, false);
    w.wq = L.get(b + "attn_q.weight", q, d, true);
    w.wk = L.get(b + "attn_k.weight", kv, d, true);
    w.wv = L.get(b + "attn_v.weight", kv, d, true);
    w.wo = L.get(b + "attn_output.weight", d, q, true);
    if (c.qkv_bias) {
      w.bq = L.get(b + "attn_q.bias", 1, q, false);
      w.bk = L.get(b + "attn_k.bias", 1, kv, false);
      w.bv = L.get(b + "attn_v.bias", 1, kv, false);
    }
    if (c.qk_norm) {
      w.q_norm = L.get(b + "attn_q_norm.weight", 1, hd, false);
      w.k_norm = L.get(b + "attn_k_norm.weight", 1, hd, false);
    }
    w.ffn_norm = L.get(b + "ffn_norm.weight", 1, d, false);
    w.w_gate = L.get(b + "ffn_gate.weight", h, d, true);
    w.w_up = L.get(b + "ffn_up.weight", h, d, true);
    w.w_down = L.get(b + "ffn_down.weight", d, h, true);
  }
  const Tensor freqs = L.get("rope_freqs.weight", 1, hd / 2, false, /*optional=*/true);
  m->storage.push_back(file);
  finish_model(*m, freqs.empty() ? nullptr : freqs.f32());
  return m;
}

}  // namespace piquant
