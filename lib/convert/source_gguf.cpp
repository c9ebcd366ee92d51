// GGUF files as a converter source. Q8_0 / Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q4_K / Q5_K / Q6_K / F32 /
// F16 tensors are piquant's own blocks and can be copied without loss (`--type keep`, or a type
// equal to the tensor's); BF16 is widened; Q2_K / Q3_K / Q8_K / IQ4_NL / IQ4_XS are dequantized
// (and then re-quantized by the converter to the type asked for, or to the nearest piquant type).
#include <cstring>

#include "common/fp16.hpp"
#include "convert/source.hpp"
#include "format/gguf.hpp"
#include "load/gguf_model.hpp"
#include "load/hf_model.hpp"
#include "format/kquants.hpp"
#include "piquant/error.hpp"
#include "tokenizer/tokenizer_gguf.hpp"

namespace piquant {
namespace {

namespace k = kernels;

class GgufSource : public ModelSource {
 public:
  explicit GgufSource(const std::string& path) : f_(path) {
    const GgufModelInfo info = read_gguf_model_info(f_);
    config_ = info.config;
    rope_layout_ = info.rope_layout;
    chat_template_ = f_.get_string("tokenizer.chat_template", "");
    provenance_ = {{"format", "gguf"},
                   {"path", path},
                   {"gguf_version", f_.version()},
                   {"architecture", config_.arch}};
    if (const GgufValue* v = f_.find("general.name"); v && v->type() == GgufType::kString) {
      provenance_["name"] = std::string(v->to_string("general.name"));
    }
    if (f_.find("tokenizer.ggml.model") != nullptr) {
      set_tokenizer(tokenizer_from_gguf(f_), path);
    }  // none: the caller says what the file will carry, after any -z (piquant-convert)
    HfConfig hc;
    hc.config = config_;
    for (const HfTensorSpec& sp : hf_tensor_specs(hc)) {
      add(sp.name, sp.shape.size() == 2 ? sp.shape[0] : 1,
          sp.shape.size() == 2 ? sp.shape[1] : sp.shape[0], false);
    }
    add("rope_freqs.weight", 1, config_.head_dim / 2, true);
  }

  void read_f32(size_t i, float* out) const override {
    const GgufTensorInfo& t = *infos_.at(i);
    const uint8_t* d = f_.tensor_data(t);
    const size_t n = static_cast<size_t>(t.n_elements);
    struct Release {  // the input's pages are not needed again after this tensor
      const void* p;
      size_t n;
      ~Release() { release_mapped_pages(p, n); }
    } release{d, static_cast<size_t>(t.n_bytes)};
    switch (static_cast<GgmlType>(t.type)) {
      case GgmlType::kF32:
        std::memcpy(out, d, n * 4);
        return;
      case GgmlType::kF16:
      case GgmlType::kBF16:
        for (size_t j = 0; j < n; ++j) {
          uint16_t h;
          std::memcpy(&h, d + 2 * j, 2);
          out[j] = t.type == uint32_t(GgmlType::kF16) ? k::fp16_to_f32(h) : k::bf16_to_f32(h);
        }
        return;
      case GgmlType::kQ8_0:
      case GgmlType::kQ4_0:
      case GgmlType::kQ4_1:
      case GgmlType::kQ5_0:
      case GgmlType::kQ5_1:
      case GgmlType::kQ4_K:
      case GgmlType::kQ5_K:
      case GgmlType::kQ6_K: {  // bit-exact with llama.cpp's dequantization (common/dequant.cpp)
        const SourceTensor& s = tensors_[i];
        k::dequantize_rows(*s.native, d, static_cast<size_t>(s.rows), static_cast<size_t>(s.cols),
                           out);
        return;
      }
      default:
        if (!dequantize_kquant(t.type, d, out, n)) {
          throw Error(ErrorCode::kInternal, f_.source() + ": cannot dequantize " + t.name);
        }
    }
  }

  std::vector<uint8_t> read_native(size_t i) const override {
    const GgufTensorInfo& t = *infos_.at(i);
    const uint8_t* d = f_.tensor_data(t);
    std::vector<uint8_t> out(d, d + t.n_bytes);
    release_mapped_pages(d, out.size());
    return out;
  }

 private:
  void add(const std::string& name, int64_t rows, int64_t cols, bool optional) {
    const GgufTensorInfo* t = f_.find_tensor(name);
    if (t == nullptr) {
      if (optional) return;
      throw Error(ErrorCode::kFormat, f_.source() + ": missing tensor " + name);
    }
    const std::vector<uint64_t> want = rows == 1
                                           ? std::vector<uint64_t>{uint64_t(cols)}
                                           : std::vector<uint64_t>{uint64_t(cols), uint64_t(rows)};
    if (t->dims != want) {
      std::string got;
      for (uint64_t x : t->dims) got += (got.empty() ? "" : ", ") + std::to_string(x);
      throw Error(ErrorCode::kFormat, f_.source() + ": tensor " + name + " has shape [" + got +
                                          "] (ne0 first) but the metadata implies [" +
                                          std::to_string(cols) +
                                          (rows == 1 ? "" : ", " + std::to_string(rows)) + "]");
    }
    SourceTensor s;
    s.name = name;
    s.rows = rows;
    s.cols = cols;
    const GgmlTypeInfo* ti = ggml_type_info(t->type);
    s.file_type = ti ? ti->name : "#" + std::to_string(t->type);
    s.file_bytes = t->n_bytes;
    const bool blocks = cols % 32 == 0;
    switch (static_cast<GgmlType>(t->type)) {
      case GgmlType::kF32:
        s.native = s.nearest = k::WeightType::kF32;
        break;
      case GgmlType::kF16:
        s.nearest = blocks ? k::WeightType::kF16 : k::WeightType::kF32;
        if (blocks) s.native = k::WeightType::kF16;
        break;
      case GgmlType::kBF16:
        s.nearest = k::WeightType::kF32;
        break;
      case GgmlType::kQ8_0:
        s.native = s.nearest = k::WeightType::kQ8;
        break;
      case GgmlType::kQ4_0:
        s.native = s.nearest = k::WeightType::kQ4;
        break;
      case GgmlType::kQ4_1:
        s.native = s.nearest = k::WeightType::kQ4M;
        break;
      case GgmlType::kQ5_0:
        s.native = s.nearest = k::WeightType::kQ5_0;
        break;
      case GgmlType::kQ5_1:
        s.native = s.nearest = k::WeightType::kQ5_1;
        break;
      case GgmlType::kQ4_K:
        s.native = s.nearest = k::WeightType::kQ4K;
        break;
      case GgmlType::kQ5_K:
        s.native = s.nearest = k::WeightType::kQ5K;
        break;
      case GgmlType::kQ6_K:
        s.native = s.nearest = k::WeightType::kQ6K;
        break;
      case GgmlType::kQ2_K:
      case GgmlType::kQ3_K:
      case GgmlType::kIQ4_NL:
      case GgmlType::kIQ4_XS:
        s.nearest = k::WeightType::kQ4M;  // no kernels of their own: dequantized, re-quantized
        break;
      case GgmlType::kQ8_K:
        s.nearest = k::WeightType::kQ8;
        break;
      default:
        throw Error(
            ErrorCode::kUnsupported,
            f_.source() + ": tensor " + name + " has unsupported tensor type " + s.file_type +
                " (piquant reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q8_K, IQ4_NL, IQ4_XS)");
    }
    tensors_.push_back(std::move(s));
    infos_.push_back(t);
  }

  GgufFile f_;
  std::vector<const GgufTensorInfo*> infos_;
};

}  // namespace

std::unique_ptr<ModelSource> open_gguf_source(const std::string& path) {
  return std::make_unique<GgufSource>(path);
}

}  // namespace piquant
