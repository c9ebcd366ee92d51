#include "convert/convert.hpp"

#include <cctype>
#include <chrono>
#include <ctime>
#include <thread>
#include <utility>

#include "common/pack.hpp"
#include "convert/quantize.hpp"
#include "format/piq.hpp"
#include "format/piq_model.hpp"
#include "piquant/error.hpp"
#include "piquant/version.hpp"
#include "threads/thread_pool.hpp"
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

}  // namespace

std::string convert_type_names() {
  std::string s;
  for (const Preset& p : kPresets) s += std::string(s.empty() ? "" : ", ") + p.name;
  return s + ", keep";
}

std::string canonical_type_name(const std::string& name) {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& [alias, canonical] : kAliases) {
    if (lower == alias) return canonical;
  }
  if (lower.size() > 3 && lower[0] == 'q' && lower.find("_k") != std::string::npos) {
    throw Error(ErrorCode::kInvalidArgument,
                "--type " + name + ": piquant writes no K-quants (it reads GGUF K-quant models "
                "and re-quantizes them); the nearest in size: q4_mix or q4m_mix");
  }
  return lower;
}

WT planned_type(const std::string& type_name, const SourceTensor& t) {
  const std::string type = canonical_type_name(type_name);
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

ConvertReport convert_model(const ModelSource& src, const std::string& output,
                            const ConvertOptions& o) {
  if (o.block_size != 32) {
    throw Error(ErrorCode::kInvalidArgument,
                "--block-size " + std::to_string(o.block_size) +
                    ": the matmul kernels use blocks of 32 elements; only 32 is supported");
  }
  for (const SourceTensor& t : src.tensors()) planned_type(o.type, t);  // validates the name
  ConvertReport rep;
  // Move-assigned from a copy: copy-assignment trips GCC 12's -Wnull-dereference (aarch64 only,
  // a false positive inside std::string's destructor).
  rep.notices = std::vector<std::string>(src.notices());
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

  PiqWriter writer(output);
  const ModelConfig& c = src.config();
  std::unique_ptr<Progress> progress;
  if (o.progress) {
    progress =
        std::make_unique<Progress>(src.tensors().size(), src.total_bytes(), o.progress_options);
  }
  std::vector<float> f32;
  std::vector<uint8_t> rows_q, packed;

  // Quantizes (or copies) one tensor and writes it; `values` are its f32 values (null: copy
  // `native` bytes).
  auto write = [&](const std::string& name, const SourceTensor& st, WT type, bool embedding,
                   const float* values, const std::vector<uint8_t>* native) {
    const size_t rows = static_cast<size_t>(st.rows), cols = static_cast<size_t>(st.cols);
    TensorReport tr;
    tr.name = name;
    tr.type = k::to_string(type);
    tr.source_type = st.file_type;
    tr.rows = st.rows;
    tr.cols = st.cols;
    const uint8_t* rows_data;
    if (native != nullptr) {
      rows_data = native->data();
      tr.copied = true;
    } else {
      rows_q.resize(rows * row_bytes_of(type, cols));
      QuantizeOptions qo;
      qo.search = o.search;
      qo.importance = embedding ? nullptr : importance(name);
      quantize_matrix(type, values, rows, cols, qo, rows_q.data(), &pool);
      tr.rel_rms = relative_rms_error(type, values, rows_q.data(), rows, cols);
      rows_data = rows_q.data();
    }
    const bool pack_it = k::is_quantized(type) && !embedding;
    std::vector<int64_t> shape =
        st.rows == 1 ? std::vector<int64_t>{st.cols} : std::vector<int64_t>{st.rows, st.cols};
    tr.layout = pack_it ? kPiqLayoutPacked : "";
    writer.begin_tensor(name, tr.type, tr.layout, shape);
    if (pack_it) {
      packed.resize(k::packed_size(type, rows, cols));
      k::pack(type, rows_data, rows, cols, packed.data());
      writer.append(packed.data(), packed.size());
      tr.bytes = packed.size();
    } else {
      tr.bytes = rows * row_bytes_of(type, cols);
      writer.append(rows_data, tr.bytes);
    }
    writer.end_tensor();
    rep.tensors.push_back(std::move(tr));
  };

  for (size_t i = 0; i < src.tensors().size(); ++i) {
    const SourceTensor& st = src.tensors()[i];
    const WT type = planned_type(o.type, st);
    const bool embedding = st.name == "token_embd.weight";
    // The classifier of a tied model gets its own packed copy when it is quantized.
    bool tied_output = false;
    WT out_type = type;
    if (embedding && c.tied_classifier) {
      SourceTensor as_out = st;
      as_out.name = "output.weight";
      out_type = planned_type(o.type, as_out);
      tied_output = k::is_quantized(out_type) || out_type != type;
    }
    const bool copy =
        !o.pre_quantize && st.native && *st.native == type && (!tied_output || out_type == type);
    if (copy) {
      const std::vector<uint8_t> bytes = src.read_native(i);
      write(st.name, st, type, embedding, nullptr, &bytes);
      if (tied_output) write("output.weight", st, out_type, false, nullptr, &bytes);
    } else {
      f32.resize(static_cast<size_t>(st.rows * st.cols));
      src.read_f32(i, f32.data());
      if (o.pre_quantize) o.pre_quantize(st.name, st.rows, st.cols, f32.data());
      write(st.name, st, type, embedding, f32.data(), nullptr);
      if (tied_output) write("output.weight", st, out_type, false, f32.data(), nullptr);
    }
    if (progress) progress->advance(st.name, st.file_bytes);
  }

  PiqMetadata meta;
  meta.config = c;
  meta.rope_layout = src.rope_layout() == RopeLayout::kHalves ? "halves" : "pairs";
  if (src.tokenizer()) meta.tokenizer = tokenizer_to_json(*src.tokenizer());
  meta.chat_template = src.chat_template();
  meta.generation = src.generation();
  nlohmann::json q = {{"type", canonical_type_name(o.type)},
                      {"block_size", o.block_size},
                      {"scale_search", o.search}};
  if (!o.calibration_tokens.empty()) {
    q["calibration"] = {{"text", o.calibration_name},
                        {"tokens", calib.tokens},
                        {"window", o.calibration_window},
                        {"statistic", "mean square activation per input channel"}};
  }
  meta.provenance = {{"source", src.provenance()},
                     {"quantization", q},
                     {"converter", std::string("piquant-convert ") + version()},
                     {"date", iso_date()}};
  for (const auto& [key, value] : o.extra_provenance.items()) meta.provenance[key] = value;
  writer.finish(meta);
  if (progress) progress->finish();

  rep.file_bytes = writer.bytes_written();
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
