// Hugging Face model directories as a converter source: tensors are read one at a time from
// the mapped safetensors shards, widened to f32, and Q/K rows permuted from halves to pairs.
#include <sys/stat.h>

#include "convert/source.hpp"
#include "load/hf_model.hpp"
#include "piquant/error.hpp"

namespace piquant {
namespace {

class HfSource : public ModelSource {
 public:
  explicit HfSource(const std::string& dir) : hf_(open_hf_model(dir)) {
    const HfConfig& hc = hf_.config;
    config_ = hc.config;
    rope_layout_ = RopeLayout::kPairs;  // after the permutation below
    chat_template_ = hf_.tokenizer_config.chat_template;
    generation_ = hf_.generation;
    if (generation_.eos_token_ids.empty()) generation_.eos_token_ids = hc.eos_token_ids;
    provenance_ = {{"format", "huggingface"},
                   {"path", dir},
                   {"architecture", hc.hf_architecture},
                   {"rope", "halves permuted to pairs"}};
    for (const HfTensorSpec& sp : hf_.tensors) {
      const TensorView& v = hf_.weights.get(sp.hf_name);
      SourceTensor t;
      t.name = sp.name;
      t.rows = sp.shape.size() == 2 ? sp.shape[0] : 1;
      t.cols = sp.shape.size() == 2 ? sp.shape[1] : sp.shape[0];
      t.file_type = v.dtype_name;
      t.file_bytes = v.size;
      if (v.dtype == FileDType::kF32) t.native = kernels::WeightType::kF32;
      if (v.dtype == FileDType::kF16) t.native = kernels::WeightType::kF16;
      t.nearest =
          v.dtype == FileDType::kF16 ? kernels::WeightType::kF16 : kernels::WeightType::kF32;
      if (sp.rope_heads > 0) t.native.reset();  // needs the permutation
      tensors_.push_back(std::move(t));
      specs_.push_back(sp);
    }
    for (const std::string& n : hf_.unused) {
      notices_.push_back("skipped tensor " + n + " (not used by piquant)");
    }
    const std::string tok =
        !hf_.tokenizer_json_path.empty() ? hf_.tokenizer_json_path : hf_.tokenizer_model_path;
    if (!tok.empty()) {
      set_tokenizer(Tokenizer::load(tok), tok);
      provenance_["tokenizer"] = tok;
    }  // none: the caller says what the file will carry, after any -z (piquant-convert)
  }

  void read_f32(size_t i, float* out) const override {
    const HfTensorSpec& sp = specs_.at(i);
    const TensorView& v = hf_.weights.get(sp.hf_name);
    if (sp.rope_heads == 0) {
      v.to_f32(out);
      release_mapped_pages(v.data, v.size);
      return;
    }
    std::vector<float> tmp(v.numel);
    v.to_f32(tmp.data());
    release_mapped_pages(v.data, v.size);
    // Rows of a matrix, or elements of a vector (q/k biases, q/k norm weights), per head.
    const size_t cols = sp.shape.size() == 2 ? static_cast<size_t>(tensors_[i].cols) : 1;
    const int head_dim = static_cast<int>(v.numel / cols / static_cast<size_t>(sp.rope_heads));
    permute_halves_to_pairs(tmp.data(), out, sp.rope_heads, head_dim, cols, sizeof(float));
  }

  std::vector<uint8_t> read_native(size_t i) const override {
    const TensorView& v = hf_.weights.get(specs_.at(i).hf_name);
    std::vector<uint8_t> out(v.data, v.data + v.size);
    release_mapped_pages(v.data, v.size);
    return out;
  }

 private:
  HfModel hf_;
  std::vector<HfTensorSpec> specs_;
};

}  // namespace

std::unique_ptr<ModelSource> open_hf_source(const std::string& dir) {
  return std::make_unique<HfSource>(dir);
}

}  // namespace piquant
