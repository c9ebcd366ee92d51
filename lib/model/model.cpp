#include <cstring>
#include <sstream>

#include "format/llama2c.hpp"
#include "format/mapped_file.hpp"
#include "model/model_impl.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace piquant {

void validate_config(const ModelConfig& c, const std::string& src) {
  auto positive = [&](const char* name, int v) {
    if (v <= 0) {
      throw Error(ErrorCode::kFormat,
                  src + ": " + name + " = " + std::to_string(v) + " must be positive");
    }
  };
  positive("dim", c.dim);
  positive("hidden_dim", c.hidden_dim);
  positive("n_layers", c.n_layers);
  positive("n_heads", c.n_heads);
  positive("n_kv_heads", c.n_kv_heads);
  positive("head_dim", c.head_dim);
  positive("vocab_size", c.vocab_size);
  positive("max_seq_len", c.max_seq_len);
  if (c.n_heads % c.n_kv_heads != 0) {
    throw Error(ErrorCode::kFormat, src + ": n_heads " + std::to_string(c.n_heads) +
                                        " is not a multiple of n_kv_heads " +
                                        std::to_string(c.n_kv_heads));
  }
  if (c.head_dim % 2 != 0) {
    throw Error(ErrorCode::kFormat,
                src + ": head_dim " + std::to_string(c.head_dim) + " must be even for RoPE");
  }
  if (!(c.norm_eps > 0.0f) || !(c.rope_theta > 0.0f)) {
    throw Error(ErrorCode::kFormat, src + ": norm_eps and rope_theta must be positive");
  }
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<const Model> Model::load(const std::string& path, const LoadOptions& options) {
  auto file = std::make_shared<const MappedFile>(path);
  std::unique_ptr<Impl> impl;
  // Formats with a magic number are recognised by it; anything else is taken for a llama2.c
  // checkpoint (which has none), whose loader then names the header field that is wrong.
  if (file->size() < 28) {
    throw Error(ErrorCode::kFormat, path + ": file of " + std::to_string(file->size()) +
                                        " bytes is too small to be a model");
  }
  impl = load_llama2c(file);
  if (!options.tokenizer_path.empty()) {
    Tokenizer tok(load_llama2c_tokenizer(options.tokenizer_path));
    if (tok.vocab_size() != static_cast<size_t>(impl->config.vocab_size)) {
      throw Error(ErrorCode::kFormat,
                  options.tokenizer_path + ": tokenizer has " + std::to_string(tok.vocab_size()) +
                      " tokens but the model " + path + " has a vocabulary of " +
                      std::to_string(impl->config.vocab_size));
    }
    impl->tokenizer = std::move(tok);
  }
  return std::make_shared<const Model>(std::move(impl));
}

std::shared_ptr<const Model> Model::synthetic(const SyntheticModelOptions& options) {
  ModelConfig c = options.config;
  // Defaults: llama2.c's stories15M shape with a 512-token demo vocabulary.
  if (c.dim == 0) c.dim = 288;
  if (c.hidden_dim == 0) c.hidden_dim = 768;
  if (c.n_layers == 0) c.n_layers = 6;
  if (c.n_heads == 0) c.n_heads = 6;
  if (c.n_kv_heads == 0) c.n_kv_heads = c.n_heads;
  if (c.head_dim == 0) c.head_dim = c.dim / c.n_heads;
  if (c.vocab_size == 0) c.vocab_size = 512;
  if (c.max_seq_len == 0) c.max_seq_len = 1024;
  if (c.vocab_size < 259) {
    throw Error(ErrorCode::kInvalidArgument, "synthetic model: vocab_size must be >= 259");
  }
  auto impl = model_from_llama2c_weights(random_llama2c_weights(c, options.seed),
                                         "synthetic, seed " + std::to_string(options.seed));
  impl->tokenizer = Tokenizer(make_demo_tokenizer(c.vocab_size));
  return std::make_shared<const Model>(std::move(impl));
}

const ModelConfig& Model::config() const { return impl_->config; }

const Tokenizer& Model::tokenizer() const {
  if (!impl_->tokenizer) {
    throw Error(ErrorCode::kInvalidArgument,
                "this model was loaded without a tokenizer (give one with -z / "
                "LoadOptions::tokenizer_path)");
  }
  return *impl_->tokenizer;
}

bool Model::has_tokenizer() const { return impl_->tokenizer.has_value(); }

const std::string& Model::chat_template() const { return impl_->chat_template; }

size_t Model::weight_bytes() const {
  size_t n = impl_->output.bytes() + impl_->output_norm.bytes();
  for (const LayerWeights& l : impl_->layers) {
    for (const Tensor* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.w_gate,
                            &l.w_down, &l.w_up}) {
      n += t->bytes();
    }
  }
  return n;
}

std::string Model::describe() const {
  const ModelConfig& c = impl_->config;
  std::ostringstream s;
  s << c.arch << " " << c.n_layers << "L dim " << c.dim << " ffn " << c.hidden_dim << " heads "
    << c.n_heads << "/" << c.n_kv_heads << " vocab " << c.vocab_size << " ctx " << c.max_seq_len
    << " " << to_string(impl_->tok_embd.type) << " (" << impl_->source << ")";
  return s.str();
}

}  // namespace piquant
