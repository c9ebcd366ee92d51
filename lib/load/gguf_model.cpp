// Models from GGUF files (llama.cpp's format): architecture metadata -> ModelConfig, tensors ->
// the forward pass's Tensors. F32 and F16 tensors are used in place (mmapped); Q8_0, Q4_0, Q4_1,
// Q5_0, Q5_1 and the K-quants Q4_K, Q5_K, Q6_K are kept in their own type (piquant's blocks are
// GGUF's) and repacked without loss into the kernels' interleaved layout, one tensor at a time,
// the file's pages released after each (so loading needs about the file's size in memory, not
// twice it); BF16 is widened to f32; Q8_K is dequantized and re-quantized to q8, Q2_K, Q3_K,
// IQ4_NL and IQ4_XS to q4m, with a notice.
// Everything else is refused, naming the tensor and its type.
#include "load/gguf_model.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "common/fp16.hpp"
#include "common/pack.hpp"
#include "dist/load_slicer.hpp"
#include "format/kquants.hpp"
#include "load/arch.hpp"
#include "piquant/error.hpp"
#include "tokenizer/tokenizer_gguf.hpp"
#include "util/aligned.hpp"

namespace piquant {
namespace {

// Drops the whole pages inside [p, p + n) of the read-only file mapping from the resident set
// (they stay in the page cache and fault back in if read again, e.g. a tied embedding's rows).
void release_file_pages(const void* p, size_t n) {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// The GGUF types whose blocks piquant keeps as they are.
bool native_block_type(uint32_t ggml, DType* out) {
  switch (static_cast<GgmlType>(ggml)) {
    case GgmlType::kQ8_0: *out = DType::kQ8; return true;
    case GgmlType::kQ4_0: *out = DType::kQ4; return true;
    case GgmlType::kQ4_1: *out = DType::kQ4M; return true;
    case GgmlType::kQ5_0: *out = DType::kQ5_0; return true;
    case GgmlType::kQ5_1: *out = DType::kQ5_1; return true;
    case GgmlType::kQ4_K: *out = DType::kQ4K; return true;
    case GgmlType::kQ5_K: *out = DType::kQ5K; return true;
    case GgmlType::kQ6_K: *out = DType::kQ6K; return true;
    default: return false;
  }
}

class Loader {
 public:
  Loader(std::shared_ptr<const GgufFile> f, Model::Impl& m, LoadSlicer* slicer)
      : f_(std::move(f)), m_(m), arena_(m.storage), slicer_(slicer) {}

  const GgufTensorInfo* find(const std::string& name) const { return f_->find_tensor(name); }

  // A weight matrix [rows, cols] for linear(); `embedding` keeps row-major (looked up by row).
  Tensor matrix(const std::string& name, int64_t rows, int64_t cols, bool embedding = false) {
    const GgufTensorInfo* t = find(name);
    if (t == nullptr) throw Error(ErrorCode::kFormat, f_->source() + ": missing tensor " + name);
    check_shape(*t, rows, cols);
    Tensor out;
    out.name = name;
    const uint8_t* data = f_->tensor_data(*t);
    size_t n_bytes = t->n_bytes;
    std::shared_ptr<const void> owner;  // a slice's copy (tensor parallelism: a LoadSlicer)
    if (slicer_ != nullptr) slice(*t, embedding, data, rows, cols, n_bytes, owner);
    out.rows = rows;
    out.cols = cols;
    const size_t r = static_cast<size_t>(rows), c = static_cast<size_t>(cols);
    switch (static_cast<GgmlType>(t->type)) {
      case GgmlType::kF32:
        out.type = DType::kF32;
        out.data = data;
        if (owner) m_.storage.push_back(owner);
        return out;
      case GgmlType::kF16:
        out.type = DType::kF16;
        out.data = data;
        if (c % 32 != 0) return widen(out, t->type, data);
        if (owner) m_.storage.push_back(owner);
        return out;
      case GgmlType::kBF16: return widen(out, t->type, data);
      case GgmlType::kQ8_K:     // 8-bit with f32 scales: q8 is as precise
      case GgmlType::kQ2_K:     // 2.6 to 4.5 bits per weight, no kernels of their own:
      case GgmlType::kQ3_K:     // q4m (5 bits) keeps them closest
      case GgmlType::kIQ4_NL:
      case GgmlType::kIQ4_XS: {
        std::vector<float> f(r * c);
        dequantize_kquant(t->type, data, f.data(), f.size());
        release_file_pages(data, n_bytes);
        const DType to = t->type == uint32_t(GgmlType::kQ8_K) ? DType::kQ8 : DType::kQ4M;
        note_conversion(t->type, to);
        std::vector<uint8_t> rows_q(r * kernels::row_bytes(to, c));
        kernels::quantize_rows(to, f.data(), r, c, rows_q.data());
        const uint8_t* owned = keep(std::move(rows_q));
        return quantized(out, to, owned, embedding, /*from_file=*/false);
      }
      default: {
        DType native;
        if (native_block_type(t->type, &native)) {
          if (owner && embedding) m_.storage.push_back(owner);
          return quantized(out, native, data, embedding);
        }
        const GgmlTypeInfo* info = ggml_type_info(t->type);
        throw Error(ErrorCode::kUnsupported,
                    f_->source() + ": tensor " + name + " has unsupported tensor type " +
                        (info ? info->name : "#" + std::to_string(t->type)) +
                        " (piquant reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, "
                        "Q5_K, Q6_K; Q2_K, Q3_K, Q8_K, IQ4_NL, IQ4_XS re-quantized)");
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
    const uint8_t* data = f_->tensor_data(*t);
    int64_t rows = 1;
    size_t n_bytes = t->n_bytes;
    std::shared_ptr<const void> owner;
    if (slicer_ != nullptr) slice(*t, false, data, rows, n, n_bytes, owner);
    out.rows = 1;
    out.cols = n;
    if (t->type == uint32_t(GgmlType::kF32)) {
      out.data = data;
      if (owner) m_.storage.push_back(owner);
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

  // Every fp16 scale (d, and dmin / m where the type has one) of a block tensor must be finite:
  // an inf or NaN would turn every output it touches into inf / NaN. Names the tensor, row and
  // block.
  // Checks rows [row0, row0 + nrows) (rows_data: the tensor's first row).
  void check_scales(const Tensor& t, const uint8_t* rows_data, size_t row0, size_t nrows) const {
    const auto wt = t.type;
    const size_t bb = kernels::block_bytes(wt), nb = static_cast<size_t>(t.cols) / kernels::block_values(wt);
    size_t offs[2] = {0, 2};
    size_t n_offs = 1;
    switch (t.type) {
      case DType::kQ4M:
      case DType::kQ5_1:
      case DType::kQ4K:
      case DType::kQ5K: n_offs = 2; break;
      case DType::kQ6K: offs[0] = offsetof(kernels::BlockQ6K, d); break;
      default: break;
    }
    for (size_t i = row0 * nb; i < (row0 + nrows) * nb; ++i) {
      for (size_t j = 0; j < n_offs; ++j) {
        uint16_t h;
        std::memcpy(&h, rows_data + i * bb + offs[j], 2);
        if ((h & 0x7C00) != 0x7C00) continue;
        const bool k = kernels::is_kquant(wt);
        const char* field = j == 0 ? "d" : k ? "dmin" : "m";
        throw Error(ErrorCode::kFormat,
                    f_->source() + ": tensor " + t.name + " (" + to_string(t.type) + "): " +
                        (k ? "super-block " : "block ") + std::to_string(i % nb) + " of row " +
                        std::to_string(i / nb) + " has a non-finite scale " + field + " (" +
                        ((h & 0x3FF) ? "NaN" : (h & 0x8000) ? "-inf" : "inf") + ")");
      }
    }
  }

  // Row-major GGUF blocks: kept in place for embeddings, packed for the kernels otherwise (and
  // then the file's pages of the tensor are released: the packed copy is what stays resident).
  Tensor quantized(Tensor out, DType type, const uint8_t* rows_data, bool embedding,
                   bool from_file = true) {
    out.type = type;
    const auto bv = static_cast<int64_t>(block_values(type));
    if (out.cols % bv != 0) {
      throw Error(ErrorCode::kFormat, f_->source() + ": tensor " + out.name + " (" + to_string(type) +
                                          ") has rows of " + std::to_string(out.cols) +
                                          " values, not a multiple of its " + std::to_string(bv) +
                                          "-value block");
    }
    const auto wt = type;
    const size_t r = static_cast<size_t>(out.rows), c = static_cast<size_t>(out.cols);
    // In chunks of rows (a multiple of the 4-row groups, so the packed bytes of rows [r0, r1)
    // start at r0 * row_bytes): check the scales, pack, and release the file's pages of the
    // chunk, so the resident set holds one chunk of the file beside the packed copy, not the
    // whole tensor (an embedding stays in the file, looked up by row, its pages faulting back in
    // as tokens need them).
    const size_t rb = kernels::row_bytes(wt, c);
    const size_t chunk = std::max<size_t>(1, (size_t{1} << 20) / (rb * kernels::kRowInterleave)) *
                         kernels::kRowInterleave;
    // 64-byte aligned, huge-page backed: the GEMV streams these once per token.
    uint8_t* packed = embedding ? nullptr : arena_.alloc(kernels::packed_size(wt, r, c));
    for (size_t r0 = 0; r0 < r; r0 += chunk) {
      const size_t n = std::min(chunk, r - r0);
      if (from_file) check_scales(out, rows_data, r0, n);
      if (packed) kernels::pack(wt, rows_data + r0 * rb, n, c, packed + r0 * rb);
      if (from_file) release_file_pages(rows_data + r0 * rb, n * rb);
    }
    if (embedding) {
      out.layout = TensorLayout::kRows;
      out.data = rows_data;
      return out;
    }
    out.layout = TensorLayout::kPacked;
    out.data = packed;
    return out;
  }

  void note_conversion(uint32_t from, DType to) { ++conversions_[{from, to}]; }

  // The part of tensor t this process keeps (slicer_): data, rows, cols, n_bytes become the
  // slice's; owner holds a copy's bytes.
  void slice(const GgufTensorInfo& t, bool embedding, const uint8_t*& data, int64_t& rows,
             int64_t& cols, size_t& n_bytes, std::shared_ptr<const void>& owner) {
    const GgmlTypeInfo* info = ggml_type_info(t.type);
    if (info == nullptr) return;  // refused below, naming the type
    RawTensor whole;
    whole.data = data;
    whole.rows = rows;
    whole.cols = cols;
    whole.block_values = info->block_size;
    whole.block_bytes = info->type_size;
    const RawTensor s = slicer_->slice(t.name, embedding, whole);
    data = s.data;
    rows = s.rows;
    cols = s.cols;
    n_bytes = s.bytes();
    owner = s.owner;
  }

  std::shared_ptr<const GgufFile> f_;
  Model::Impl& m_;
  std::map<std::pair<uint32_t, DType>, int> conversions_;
  WeightArena arena_;  // packed tensors
  LoadSlicer* slicer_;
};

}  // namespace

const char* gguf_piquant_type(uint32_t ggml_type, bool* converted) {
  *converted = false;
  DType t;
  if (native_block_type(ggml_type, &t)) return to_string(t);
  switch (static_cast<GgmlType>(ggml_type)) {
    case GgmlType::kF32: return "f32";
    case GgmlType::kF16: return "f16";
    case GgmlType::kBF16: *converted = true; return "f32";
    case GgmlType::kQ8_K: *converted = true; return "q8";
    case GgmlType::kQ2_K:
    case GgmlType::kQ3_K:
    case GgmlType::kIQ4_NL:
    case GgmlType::kIQ4_XS: *converted = true; return "q4m";
    default: return nullptr;
  }
}

GgufModelInfo read_gguf_model_info(const GgufFile& f) {
  const std::string& src = f.source();
  const std::string arch(f.get_string("general.architecture", ""));
  const ArchSpec* info = find_arch(arch);
  if (info == nullptr) {
    throw Error(ErrorCode::kUnsupported, src + ": unknown architecture '" + arch +
                                             "' (general.architecture); piquant runs " +
                                             supported_arch_names());
  }
  GgufModelInfo out;
  out.rope_layout = info->gguf_rope;
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

std::unique_ptr<Model::Impl> load_gguf_model(std::shared_ptr<const GgufFile> file,
                                             LoadSlicer* slicer) {
  const GgufFile& f = *file;
  const std::string& src = f.source();
  GgufModelInfo info = read_gguf_model_info(f);
  auto m = std::make_unique<Model::Impl>();
  m->origin = ModelOrigin::kGguf;
  m->source = "GGUF v" + std::to_string(f.version());
  m->rope_layout = info.rope_layout;
  m->config = info.config;
  const ModelConfig& c = m->config;
  Loader L(file, *m, slicer);
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
  if (slicer != nullptr) slicer->finish(*m);
  finish_model(*m, freqs.empty() ? nullptr : freqs.f32());
  return m;
}

}  // namespace piquant
