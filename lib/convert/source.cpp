#include "convert/source.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "common/pack.hpp"
#include "format/gguf.hpp"
#include "load/llama2c_model.hpp"
#include "format/mapped_file.hpp"
#include "piquant/error.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace piquant {

uint64_t ModelSource::total_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors_) n += t.file_bytes;
  return n;
}

std::vector<uint8_t> ModelSource::read_native(size_t i) const {
  throw Error(ErrorCode::kInternal, "tensor " + tensors_.at(i).name + " has no native copy");
}

void ModelSource::set_tokenizer(Tokenizer t, const std::string& path) {
  if (t.vocab_size() > static_cast<size_t>(config_.vocab_size)) {
    throw Error(ErrorCode::kFormat, path + ": tokenizer has " + std::to_string(t.vocab_size()) +
                                        " tokens but the model's vocabulary is " +
                                        std::to_string(config_.vocab_size));
  }
  tokenizer_ = std::move(t);
}

void release_mapped_pages(const void* p, size_t n) {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  // Whole pages inside the range only: a neighbour's page stays (it may be in use).
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

namespace {

// A model already in memory with f32 / f16 weights (llama2.c checkpoints are mmapped).
class ImplSource : public ModelSource {
 public:
  ImplSource(std::unique_ptr<Model::Impl> m, nlohmann::json prov) : m_(std::move(m)) {
    config_ = m_->config;
    rope_layout_ = m_->rope_layout;
    tokenizer_ = m_->tokenizer;
    chat_template_ = m_->chat_template;
    generation_ = m_->generation;
    provenance_ = std::move(prov);
    add(m_->tok_embd);
    for (const LayerWeights& l : m_->layers) {
      for (const Tensor* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv,
                              &l.q_norm, &l.k_norm, &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down}) {
        if (!t->empty()) add(*t);
      }
    }
    add(m_->output_norm);
    if (!config_.tied_classifier) add(m_->output);
  }

  void read_f32(size_t i, float* out) const override {
    const Tensor& t = *ptrs_.at(i);
    if (t.type == DType::kF32) {
      std::memcpy(out, t.data, t.numel() * sizeof(float));
    } else if (t.type == DType::kF16) {
      kernels::dequantize_rows(kernels::WeightType::kF16, t.data, static_cast<size_t>(t.rows),
                               static_cast<size_t>(t.cols), out);
    } else {
      throw Error(ErrorCode::kUnsupported, t.name + ": the in-memory source holds " +
                                               std::string(to_string(t.type)) + ", not f32/f16");
    }
  }

  std::vector<uint8_t> read_native(size_t i) const override {
    const Tensor& t = *ptrs_.at(i);
    const auto* p = static_cast<const uint8_t*>(t.data);
    return std::vector<uint8_t>(p, p + t.bytes());
  }

 private:
  void add(const Tensor& t) {
    SourceTensor s;
    s.name = t.name;
    s.rows = t.rows;
    s.cols = t.cols;
    s.file_type = t.type == DType::kF32 ? "F32" : "F16";
    s.file_bytes = t.bytes();
    s.native = t.type;
    s.nearest = t.type;
    tensors_.push_back(std::move(s));
    ptrs_.push_back(&t);
  }
  std::unique_ptr<Model::Impl> m_;
  std::vector<const Tensor*> ptrs_;
};

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

std::unique_ptr<ModelSource> model_impl_source(std::unique_ptr<Model::Impl> model,
                                               nlohmann::json provenance) {
  return std::make_unique<ImplSource>(std::move(model), std::move(provenance));
}

std::unique_ptr<ModelSource> open_model_source(const std::string& input,
                                               const std::string& tokenizer_path) {
  std::unique_ptr<ModelSource> src;
  if (is_dir(input)) {
    src = open_hf_source(input);
  } else {
    auto file = std::make_shared<const MappedFile>(input);
    if (GgufFile::has_magic(file->data(), file->size())) {
      src = open_gguf_source(input);
    } else if (file->size() >= 8 && std::memcmp(file->data(), "PIQUANT\0", 8) == 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  input + ": already a piquant file; convert from the original checkpoint");
    } else if (file->size() < 28) {
      throw Error(ErrorCode::kFormat, input + ": file of " + std::to_string(file->size()) +
                                          " bytes is not a model (HF directory, .gguf or "
                                          "llama2.c checkpoint)");
    } else {
      auto impl = load_llama2c(file);
      src = model_impl_source(std::move(impl), {{"format", "llama2.c"}, {"path", input}});
    }
  }
  if (!tokenizer_path.empty()) {
    const nlohmann::json& prov = src->provenance();
    const bool l2c = prov.contains("format") && prov["format"] == "llama2.c";
    Tokenizer t =
        l2c ? Tokenizer(load_llama2c_tokenizer(tokenizer_path)) : Tokenizer::load(tokenizer_path);
    if (l2c && t.vocab_size() != static_cast<size_t>(src->config().vocab_size)) {
      throw Error(ErrorCode::kFormat,
                  tokenizer_path + ": tokenizer has " + std::to_string(t.vocab_size()) +
                      " tokens but the model " + input + " has a vocabulary of " +
                      std::to_string(src->config().vocab_size));
    }
    src->set_tokenizer(std::move(t), tokenizer_path);
  }
  return src;
}

}  // namespace piquant
