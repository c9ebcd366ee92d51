#include "convert/convert.hpp"

#include <cctype>
#include <chrono>
#include <ctime>
#include <thread>
#include <utility>

#include "common/pack.hpp"
#include "convert/kquant_plan.hpp"
#include "convert/quantize.hpp"
#include "format/gguf_writer.hpp"
#include "format/piq.hpp"
#include "load/arch.hpp"
#include "load/piq_model.hpp"
#include "piquant/error.hpp"
#include "piquant/version.hpp"
#include "threads/thread_pool.hpp"
#include "tokenizer/tokenizer_gguf.hpp"
#include "tokenizer/tokenizer_json.hpp"

namespace piquant {
namespace {

namespace k = kernels;
using WT = k::WeightType;

struct Preset {
  const char* name;
  WT most;       // every matrix not named below
  WT sensitive;  // token_embd, output, attn_v, attn_output
  const char* what;
};
constexpr Preset kPresets[] = {
    {"f32", WT::kF32, WT::kF32, "float32, lossless"},
    {"f16", WT::kF16, WT::kF16, "float16"},
    {"q8", WT::kQ8, WT::kQ8, "int8, block 32, fp16 scale (8.5 bits/weight)"},
    {"q4", WT::kQ4, WT::kQ4, "int4 symmetric, block 32, fp16 scale (4.5 bits/weight)"},
    {"q4m", WT::kQ4M, WT::kQ4M, "int4 with a per-block minimum (5 bits/weight)"},
    {"q4_mix", WT::kQ4, WT::kQ8, "q4, with embedding, classifier, attn v/output at q8"},
    {"q4m_mix", WT::kQ4M, WT::kQ8, "q4m, with embedding, classifier, attn v/output at q8"},
};

// Other spellings --type accepts, case-insensitively: GGUF's type names for the same blocks
// (q8 = Q8_0, q4 = Q4_0, q4m = Q4_1) and q4a, the converter's earlier name for q4m. One name,
// the one reports, piquant-inspect and the model description print, is shown for each type.
constexpr std::pair<const char*, const char*> kAliases[] = {
    {"q8_0", "q8"}, {"q4_0", "q4"}, {"q4_1", "q4m"}, {"q4a", "q4m"}, {"q4a_mix", "q4m_mix"},
    {"fp16", "f16"}, {"fp32", "f32"}, {"float32", "f32"}, {"float16", "f16"},
};

bool sensitive(const std::string& name) {
  auto ends = [&](const char* s) {
    const std::string suf(s);
    return name.size() >= suf.size() &&
           name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
  };
  return name == "token_embd.weight" || name == "output.weight" || ends(".attn_v.weight") ||
         ends(".attn_output.weight");
}

std::string iso_date() {
  const std::time_t now = std::time(nullptr);
  char buf[32];
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

size_t row_bytes_of(WT t, size_t cols) {
  return t == WT::kF32 ? cols * 4 : t == WT::kF16 ? cols * 2 : k::row_bytes(t, cols);
}

bool is_k_type(const std::string& t) {
  return t == "q4_k" || t == "q5_k" || t == "q6_k" || t == "q5_0" || t == "q5_1";
}

// Bytes of one row-major row of `cols` values of the named type.
size_t row_bytes_named(const std::string& t, size_t cols) {
  return is_k_type(t) ? k::kquant_row_bytes(kquant_from_name(t), cols)
                      : row_bytes_of(piq_weight_type(t), cols);
}

// The ggml type id of a planned type name (GGUF output).
uint32_t ggml_type_of(const std::string& t) {
  if (is_k_type(t)) return k::kquant_ggml_type(kquant_from_name(t));
  if (t == "f32") return 0;
  if (t == "f16") return 1;
  if (t == "q4") return 2;
  if (t == "q4m") return 3;
  if (t == "q8") return 8;
  throw Error(ErrorCode::kInternal, "no ggml type for " + t);
}

// general.file_type of a GGUF file written with --type `scheme` (llama.cpp's llama_ftype).
uint32_t gguf_file_type(const std::string& scheme) {
  static const std::pair<const char*, uint32_t> kTypes[] = {
      {"f32", 0},   {"f16", 1},   {"q4", 2},     {"q4m", 3},     {"q8", 7},
      {"q5_0", 8},  {"q5_1", 9},  {"q4_k", 14},  {"q4_k_m", 15}, {"q5_k", 16},
      {"q5_k_m", 17}, {"q6_k", 18}, {"q4_mix", 2}, {"q4m_mix", 3}};
  for (const auto& [n, v] : kTypes) {
    if (scheme == n) return v;
  }
  return 7;
}

// Q/K rows as llama.cpp expects them for each architecture piquant exports.
bool gguf_rope_ok(const std::string& arch, RopeLayout l) {
  const ArchSpec* a = find_arch(arch);
  return a != nullptr && a->gguf_rope == l;
}

}  // namespace

WT piq_weight_type(const std::string& name) {
  for (int v = 0; v < 32; ++v) {
    if (name == k::to_string(static_cast<WT>(v))) return static_cast<WT>(v);
  }
  throw Error(ErrorCode::kUnsupported, "type " + name + " cannot be stored in a .piq file");
}

// The K-quant types and mixes (kquant_plan.hpp), GGUF's blocks.
constexpr const char* kKSchemes[] = {"q4_k", "q5_k", "q6_k", "q5_0", "q5_1", "q4_k_m", "q5_k_m"};

std::string convert_type_names() {
  std::string s;
  for (const Preset& p : kPresets) s += std::string(s.empty() ? "" : ", ") + p.name;
  for (const char* k : kKSchemes) s += std::string(", ") + k;
  return s + ", keep";
}

std::string canonical_type_name(const std::string& name) {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& [alias, canonical] : kAliases) {
    if (lower == alias) return canonical;
  }
  if (is_kquant_scheme(lower)) return lower;
  if (lower.size() > 3 && lower[0] == 'q' && lower.find("_k") != std::string::npos) {
    throw Error(ErrorCode::kInvalidArgument,
                "--type " + name + ": piquant writes the K-quants q4_k, q5_k, q6_k and the mixes "
                "q4_k_m, q5_k_m (not this one); the nearest in size: q4_k or q4_k_m");
  }
  return lower;
}

std::string planned_type_name(const std::string& type_name, const SourceTensor& t, int n_layers,
                              std::string* notice) {
  const std::string type = canonical_type_name(type_name);
  if (is_kquant_scheme(type)) {
    if (t.rows == 1) return "f32";  // norms, biases, rope factors
    std::string want = kquant_plan_type(type, t.name, n_layers);
    const size_t nv = kernels::kquant_block_values(kquant_from_name(want));
    if (t.cols % static_cast<int64_t>(nv) != 0) {
      const std::string fb = kquant_fallback(want);
      const std::string to = t.cols % 32 == 0 ? fb : "f32";
      if (notice) {
        *notice = t.name + ": rows of " + std::to_string(t.cols) + " values are not a multiple of " +
                  std::to_string(nv) + ", so " + to + " instead of " + want +
                  (to == fb ? " (llama-quantize's fallback)" : "");
      }
      return to;
    }
    return want;
  }
  return kernels::to_string(planned_type(type, t, n_layers));
}

WT planned_type(const std::string& type_name, const SourceTensor& t, int n_layers) {
  const std::string type = canonical_type_name(type_name);
  if (is_kquant_scheme(type)) return piq_weight_type(planned_type_name(type, t, n_layers, nullptr));
  WT want = WT::kF32;
  if (type == "keep") {
    want = t.nearest;
  } else {
    const Preset* p = nullptr;
    for (const Preset& q : kPresets) {
      if (type == q.name) p = &q;
    }
    if (p == nullptr) {
      throw Error(ErrorCode::kInvalidArgument,
                  "unknown --type '" + type_name + "' (one of " + convert_type_names() +
                      "; GGUF's Q8_0, Q4_0, Q4_1 too, in any case)");
    }
    want = sensitive(t.name) ? p->sensitive : p->most;
  }
  if (t.rows == 1) return WT::kF32;                           // norms, biases, rope factors
  if (want != WT::kF32 && t.cols % 32 != 0) return WT::kF32;  // the kernels' block of 32
  return want;
}


namespace {

nlohmann::json provenance(const ModelSource& src, const ConvertOptions& o, const Calibration& calib) {
  nlohmann::json q = {{"type", canonical_type_name(o.type)},
                      {"block_size", o.block_size},
                      {"scale_search", o.search}};
  if (!o.calibration_tokens.empty()) {
    q["calibration"] = {{"text", o.calibration_name},
                        {"tokens", calib.tokens},
                        {"window", o.calibration_window},
                        {"statistic", "mean square activation per input channel"}};
  }
  nlohmann::json p = {{"source", src.provenance()},
                      {"quantization", q},
                      {"converter", std::string("piquant-convert ") + version()},
                      {"date", iso_date()}};
  for (const auto& [key, value] : o.extra_provenance.items()) p[key] = value;
  return p;
}

// llama.cpp's metadata for the architecture, the tokenizer and the chat template.
void write_gguf_metadata(const ModelSource& src, const ConvertOptions& o, GgufStreamWriter& w) {
  using V = GgufWriteValue;
  const ModelConfig& c = src.config();
  const std::string a = c.arch;
  w.add("general.architecture", V::string(a));
  w.add("general.name", V::string(src.provenance().value("path", std::string("piquant model"))));
  w.add("general.file_type", V::u32(gguf_file_type(canonical_type_name(o.type))));
  w.add("general.quantization_version", V::u32(2));
  w.add("general.quantized_by", V::string(std::string("piquant-convert ") + version()));
  w.add(a + ".context_length", V::u32(static_cast<uint32_t>(c.max_seq_len)));
  w.add(a + ".embedding_length", V::u32(static_cast<uint32_t>(c.dim)));
  w.add(a + ".block_count", V::u32(static_cast<uint32_t>(c.n_layers)));
  w.add(a + ".feed_forward_length", V::u32(static_cast<uint32_t>(c.hidden_dim)));
  w.add(a + ".attention.head_count", V::u32(static_cast<uint32_t>(c.n_heads)));
  w.add(a + ".attention.head_count_kv", V::u32(static_cast<uint32_t>(c.n_kv_heads)));
  w.add(a + ".attention.key_length", V::u32(static_cast<uint32_t>(c.head_dim)));
  w.add(a + ".attention.value_length", V::u32(static_cast<uint32_t>(c.head_dim)));
  w.add(a + ".rope.dimension_count", V::u32(static_cast<uint32_t>(c.head_dim)));
  w.add(a + ".rope.freq_base", V::f32(c.rope_theta));
  w.add(a + ".attention.layer_norm_rms_epsilon", V::f32(c.norm_eps));
  if (c.rope_scaling.type == RopeScalingType::kLinear) {
    w.add(a + ".rope.scaling.type", V::string("linear"));
    w.add(a + ".rope.scaling.factor", V::f32(c.rope_scaling.factor));
  }
  if (src.tokenizer()) {
    GgufWriter tmp;
    tokenizer_to_gguf(*src.tokenizer(), tmp);
    for (const auto& [key, value] : tmp.metadata()) w.add(key, value);
  } else {
    w.add("tokenizer.ggml.model", V::string("none"));
  }
  if (!src.chat_template().empty()) {
    w.add("tokenizer.chat_template", V::string(src.chat_template()));
  }
}

}  // namespace

ConvertReport convert_model(const ModelSource& src, const std::string& output,
                            const ConvertOptions& o) {
  if (o.block_size != 32) {
    throw Error(ErrorCode::kInvalidArgument,
                "--block-size " + std::to_string(o.block_size) +
                    ": the matmul kernels use blocks of 32 elements; only 32 is supported");
  }
  if (o.format != "piq" && o.format != "gguf") {
    throw Error(ErrorCode::kInvalidArgument,
                "--to " + o.format + ": the converter writes piq (default) or gguf");
  }
  const bool gguf = o.format == "gguf";
  const ModelConfig& c = src.config();
  if (gguf && !gguf_rope_ok(c.arch, src.rope_layout())) {
    throw Error(ErrorCode::kUnsupported,
                "--to gguf: cannot write architecture '" + c.arch + "' with its Q/K rows in " +
                    (src.rope_layout() == RopeLayout::kHalves ? "halves" : "pairs") +
                    " RoPE layout as GGUF (llama.cpp expects llama: pairs; qwen2, qwen3, "
                    "exaone: halves)");
  }
  if (gguf && canonical_type_name(o.type) == "keep") {
    throw Error(ErrorCode::kInvalidArgument, "--to gguf needs a --type (keep is for .piq files)");
  }
  ConvertReport rep;
  // Move-assigned from a copy: copy-assignment trips GCC 12's -Wnull-dereference (aarch64 only,
  // a false positive inside std::string's destructor).
  rep.notices = std::vector<std::string>(src.notices());

  // Every tensor's type, decided up front (a GGUF header lists them before the data). A tied
  // classifier of a .piq file gets its own packed copy when it is quantized; a GGUF file keeps
  // one tensor (llama.cpp uses token_embd as the classifier), in the classifier's type.
  struct Planned {
    std::string type, out_type;  // out_type: the tied classifier's copy ("" when none)
  };
  std::vector<Planned> plan(src.tensors().size());
  for (size_t i = 0; i < src.tensors().size(); ++i) {
    const SourceTensor& st = src.tensors()[i];
    std::string notice;
    plan[i].type = planned_type_name(o.type, st, c.n_layers, &notice);
    if (!notice.empty()) rep.notices.push_back(notice);
    if (st.name == "token_embd.weight" && c.tied_classifier) {
      SourceTensor as_out = st;
      as_out.name = "output.weight";
      const std::string out = planned_type_name(o.type, as_out, c.n_layers, nullptr);
      if (gguf) {
        plan[i].type = out;
      } else if (out != plan[i].type || is_k_type(out) || k::is_quantized(piq_weight_type(out))) {
        plan[i].out_type = out;
      }
    }
    if (!gguf) piq_weight_type(plan[i].type);  // every type must be storable
  }
  const int threads = o.threads > 0
                          ? o.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ThreadPool pool(threads);

  Calibration calib;
  if (!o.calibration_tokens.empty()) {
    calib = calibrate(src, o.calibration_tokens, o.calibration_window, threads, o.pre_quantize);
    rep.calibration_tokens = calib.tokens;
  }
  auto importance = [&](const std::string& name) -> const float* {
    const auto it = calib.importance.find(name);
    return it == calib.importance.end() ? nullptr : it->second.data();
  };

  std::unique_ptr<PiqWriter> piq;
  std::unique_ptr<GgufStreamWriter> gw;
  if (gguf) {
    gw = std::make_unique<GgufStreamWriter>(output);
    write_gguf_metadata(src, o, *gw);
    for (size_t i = 0; i < src.tensors().size(); ++i) {
      const SourceTensor& st = src.tensors()[i];
      std::vector<uint64_t> dims = {static_cast<uint64_t>(st.cols)};
      if (st.rows > 1) dims.push_back(static_cast<uint64_t>(st.rows));
      gw->declare_tensor(st.name, ggml_type_of(plan[i].type), dims);
    }
  } else {
    piq = std::make_unique<PiqWriter>(output);
  }
  std::unique_ptr<Progress> progress;
  if (o.progress) {
    progress =
        std::make_unique<Progress>(src.tensors().size(), src.total_bytes(), o.progress_options);
  }
  std::vector<float> f32;
  std::vector<uint8_t> rows_q, packed;

  // Quantizes (or copies) one tensor and writes it; `values` are its f32 values (null: copy
  // `native` bytes).
  auto write = [&](const std::string& name, const SourceTensor& st, const std::string& type,
                   bool embedding, const float* values, const std::vector<uint8_t>* native) {
    const size_t rows = static_cast<size_t>(st.rows), cols = static_cast<size_t>(st.cols);
    TensorReport tr;
    tr.name = name;
    tr.type = type;
    tr.source_type = st.file_type;
    tr.rows = st.rows;
    tr.cols = st.cols;
    const uint8_t* rows_data;
    if (native != nullptr) {
      rows_data = native->data();
      tr.copied = true;
    } else {
      rows_q.resize(rows * row_bytes_named(type, cols));
      QuantizeOptions qo;
      qo.search = o.search;
      qo.importance = embedding ? nullptr : importance(name);
      if (is_k_type(type)) {
        const k::KQuant kt = kquant_from_name(type);
        quantize_matrix_kquant(kt, values, rows, cols, qo, rows_q.data(), &pool);
        tr.rel_rms = relative_rms_error_kquant(kt, values, rows_q.data(), rows, cols);
      } else {
        const WT wt = piq_weight_type(type);
        quantize_matrix(wt, values, rows, cols, qo, rows_q.data(), &pool);
        tr.rel_rms = relative_rms_error(wt, values, rows_q.data(), rows, cols);
      }
      rows_data = rows_q.data();
    }
    tr.bytes = rows * row_bytes_named(type, cols);
    if (gguf) {
      gw->append(rows_data, tr.bytes);
      rep.tensors.push_back(std::move(tr));
      return;
    }
    const WT wt = piq_weight_type(type);
    const bool pack_it = k::is_quantized(wt) && !embedding;
    std::vector<int64_t> shape =
        st.rows == 1 ? std::vector<int64_t>{st.cols} : std::vector<int64_t>{st.rows, st.cols};
    tr.layout = pack_it ? kPiqLayoutPacked : "";
    piq->begin_tensor(name, tr.type, tr.layout, shape);
    if (pack_it) {
      packed.resize(k::packed_size(wt, rows, cols));
      k::pack(wt, rows_data, rows, cols, packed.data());
      piq->append(packed.data(), packed.size());
      tr.bytes = packed.size();
    } else {
      piq->append(rows_data, tr.bytes);
    }
    piq->end_tensor();
    rep.tensors.push_back(std::move(tr));
  };

  for (size_t i = 0; i < src.tensors().size(); ++i) {
    const SourceTensor& st = src.tensors()[i];
    const std::string& type = plan[i].type;
    const std::string& out_type = plan[i].out_type;
    const bool embedding = st.name == "token_embd.weight";
    const bool tied_output = !out_type.empty();
    // Copied as stored when the source holds exactly the planned type.
    auto same = [&](const std::string& t) {
      return st.native && k::to_string(*st.native) == t;
    };
    const bool copy = !o.pre_quantize && same(type) && (!tied_output || same(out_type));
    if (copy) {
      const std::vector<uint8_t> bytes = src.read_native(i);
      write(st.name, st, type, embedding, nullptr, &bytes);
      if (tied_output) write("output.weight", st, out_type, false, nullptr, &bytes);
    } else {
      f32.resize(static_cast<size_t>(st.rows * st.cols));
      src.read_f32(i, f32.data());
      if (o.pre_quantize) o.pre_quantize(st.name, st.rows, st.cols, f32.data());
      // A tied GGUF embedding is the classifier too: quantized with the classifier's statistics.
      const bool as_classifier = gguf && embedding && c.tied_classifier;
      write(as_classifier ? "output.weight" : st.name, st, type, embedding && !as_classifier,
            f32.data(), nullptr);
      if (as_classifier) rep.tensors.back().name = st.name;
      if (tied_output) write("output.weight", st, out_type, false, f32.data(), nullptr);
    }
    if (progress) progress->advance(st.name, st.file_bytes);
  }

  if (gguf) {
    gw->finish();
    if (progress) progress->finish();
    rep.file_bytes = gw->bytes_written();
  } else {
    PiqMetadata meta;
    meta.config = c;
    meta.rope_layout = src.rope_layout() == RopeLayout::kHalves ? "halves" : "pairs";
    if (src.tokenizer()) meta.tokenizer = tokenizer_to_json(*src.tokenizer());
    meta.chat_template = src.chat_template();
    meta.generation = src.generation();
    meta.provenance = provenance(src, o, calib);
    piq->finish(meta);
    if (progress) progress->finish();
    rep.file_bytes = piq->bytes_written();
  }
  uint64_t bytes = 0, mparams = 0, mbytes = 0;
  for (const TensorReport& t : rep.tensors) {
    const uint64_t n = static_cast<uint64_t>(t.rows * t.cols);
    rep.params += n;
    bytes += t.bytes;
    if (t.rows > 1) mparams += n, mbytes += t.bytes;
  }
  rep.bits_per_weight = rep.params ? 8.0 * double(bytes) / double(rep.params) : 0;
  rep.matrix_bits_per_weight = mparams ? 8.0 * double(mbytes) / double(mparams) : 0;
  return rep;
}

}  // namespace piquant
