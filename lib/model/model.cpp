#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <sstream>

#include "format/gguf.hpp"
#include "format/mapped_file.hpp"
#include "load/gguf_model.hpp"
#include "load/llama2c_model.hpp"
#include "load/piq_model.hpp"
#include "model/model_impl.hpp"

#include "vector/vector.hpp"
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

void finish_model(Model::Impl& m, const float* freq_factors) {
  const ModelConfig& c = m.config;
  const int64_t d = c.dim, hd = c.head_dim;
  // A rank's slice of a model split across ranks (loaded through a LoadSlicer) holds its rows /
  // columns only.
  const ShardInfo* sh = m.shard ? &*m.shard : nullptr;
  const int64_t h = sh ? sh->hidden_dim : c.hidden_dim;
  const int64_t q = int64_t{sh ? sh->n_heads : c.n_heads} * hd;
  const int64_t kv = int64_t{sh ? sh->n_kv_heads : c.n_kv_heads} * hd;
  auto check = [&](const Tensor& t, int64_t rows, int64_t cols, bool optional = false) {
    if (t.empty()) {
      if (optional) return;
      throw Error(ErrorCode::kFormat, m.source + ": missing tensor " + t.name);
    }
    if (t.rows != rows || t.cols != cols) {
      throw Error(ErrorCode::kFormat,
                  m.source + ": tensor " + t.name + " has shape [" + std::to_string(t.rows) +
                      ", " + std::to_string(t.cols) + "] but the config implies [" +
                      std::to_string(rows) + ", " + std::to_string(cols) + "]");
    }
    if ((t.rows > 1 || t.type != DType::kF32) && !t.packed_for_kernels() &&
        &t != &m.tok_embd) {
      throw Error(ErrorCode::kInternal, m.source + ": tensor " + t.name + " is not packed");
    }
  };
  check(m.tok_embd, c.vocab_size, d);
  check(m.output_norm, 1, d);
  check(m.output, sh ? sh->vocab1 - sh->vocab0 : c.vocab_size, d);
  if (static_cast<int>(m.layers.size()) != c.n_layers) {
    throw Error(ErrorCode::kInternal, m.source + ": layer count does not match the config");
  }
  for (const LayerWeights& l : m.layers) {
    check(l.attn_norm, 1, d);
    check(l.wq, q, d);
    check(l.wk, kv, d);
    check(l.wv, kv, d);
    check(l.wo, d, q);
    check(l.bq, 1, q, !c.qkv_bias);
    check(l.bk, 1, kv, !c.qkv_bias);
    check(l.bv, 1, kv, !c.qkv_bias);
    check(l.q_norm, 1, hd, !c.qk_norm);
    check(l.k_norm, 1, hd, !c.qk_norm);
    check(l.ffn_norm, 1, d);
    check(l.w_gate, h, d);
    check(l.w_up, h, d);
    check(l.w_down, d, h);
  }
  const size_t half = static_cast<size_t>(hd / 2);
  m.rope_freqs.assign(half, 0.0f);
  kernels::rope_freqs(m.rope_freqs.data(), static_cast<size_t>(hd), c.rope_theta);
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type == RopeScalingType::kLinear && rs.factor > 0) {
    for (float& f : m.rope_freqs) f /= rs.factor;
  } else if (rs.type == RopeScalingType::kLlama3) {
    kernels::RopeLlama3Scaling s;
    s.factor = rs.factor;
    s.low_freq_factor = rs.low_freq_factor;
    s.high_freq_factor = rs.high_freq_factor;
    s.original_ctx = static_cast<float>(rs.original_max_position);
    kernels::rope_scale_llama3(m.rope_freqs.data(), half, s);
  }
  if (freq_factors != nullptr) {
    for (size_t i = 0; i < half; ++i) {
      if (!(freq_factors[i] > 0.0f)) {
        throw Error(ErrorCode::kFormat, m.source + ": rope_freqs factor " + std::to_string(i) +
                                            " is not positive");
      }
      m.rope_freqs[i] /= freq_factors[i];
    }
  }
}

bool all_f32(const Model::Impl& m) {
  auto f = [](const Tensor& t) { return t.empty() || t.type == DType::kF32; };
  if (!f(m.tok_embd) || !f(m.output)) return false;
  for (const LayerWeights& l : m.layers) {
    for (const Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      if (!f(*t)) return false;
    }
  }
  return true;
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<const Model> Model::load(const std::string& path, const LoadOptions& options) {
  return load_model(path, options, nullptr);
}

std::shared_ptr<const Model> load_model(const std::string& path, const LoadOptions& options,
                                        LoadSlicer* slicer) {
  // The file is mapped once: the magic is read from the mapping the loader then parses.
  auto file = std::make_shared<const MappedFile>(path);
  std::unique_ptr<Model::Impl> impl;
  // Formats with a magic number are recognised by it; anything else is taken for a llama2.c
  // checkpoint (which has none), whose loader then names the header field that is wrong.
  if (piq_has_magic(file->data(), file->size())) {
    impl = load_piq_model(std::make_shared<const PiqFile>(file));
  } else if (GgufFile::has_magic(file->data(), file->size())) {
    impl = load_gguf_model(std::make_shared<const GgufFile>(file), slicer);
  } else if (file->size() < 28) {
    throw Error(ErrorCode::kFormat, path + ": file of " + std::to_string(file->size()) +
                                        " bytes is too small to be a model");
  } else {
    impl = load_llama2c(file);
  }
  impl->path = path;
  if (!options.tokenizer_path.empty()) {
    // A llama2.c checkpoint comes with a tokenizer.bin: read it as one, so a damaged file gets
    // an error naming its field rather than "unrecognised format".
    const bool llama2c = impl->origin == ModelOrigin::kLlama2c;
    Tokenizer tok = llama2c ? Tokenizer(load_llama2c_tokenizer(options.tokenizer_path))
                            : Tokenizer::load(options.tokenizer_path);
    if (tok.vocab_size() > static_cast<size_t>(impl->config.vocab_size) ||
        (llama2c && tok.vocab_size() != static_cast<size_t>(impl->config.vocab_size))) {
      throw Error(ErrorCode::kFormat,
                  options.tokenizer_path + ": tokenizer has " + std::to_string(tok.vocab_size()) +
                      " tokens but the model " + path + " has a vocabulary of " +
                      std::to_string(impl->config.vocab_size));
    }
    impl->tokenizer = std::move(tok);
  }
  return std::make_shared<const Model>(std::move(impl));
}

namespace {

// The demo model's text (SyntheticModelOptions::demo_text). A tied classifier scores the current
// token's own embedding highest, so random tied weights repeat one token ("timeeeee"); a random
// untied one settles on one token too. Instead the classifier is built from the embeddings: the
// row of token t is the embedding of its predecessor in a random cycle through the readable
// tokens (letters, space, word pieces, punctuation), so the residual stream, which carries the
// current token's embedding, scores its successor highest: greedy text walks the cycle, and
// the attention and MLP layers (scaled down, still random) shift the scores with the context.
// Every embedding also shares a large component along dimension 0, which the residual carries to
// the final norm (h[0] large and positive at every position): the classifier's dimension 0
// holds a penalty for punctuation (small) and for everything unreadable (bytes, specials, unused
// ids; large), so none of those is picked. Measured on the default shape: greedy 64 tokens hold
// 60+ distinct ids; sampling at temperature 1 varies with the seed.
void shape_demo_text(Llama2cWeights& w, const Tokenizer& tok, uint64_t seed) {
  const ModelConfig& c = w.config;
  const size_t d = static_cast<size_t>(c.dim);
  const size_t n_vocab = static_cast<size_t>(c.vocab_size);
  for (float& x : w.wo) x *= 0.5f;  // the layers nudge, the current token leads
  for (float& x : w.w2) x *= 0.5f;
  for (size_t t = 0; t < n_vocab; ++t) w.tok_embd[t * d] = 8.0f;
  std::vector<size_t> readable;
  std::vector<float> penalty(n_vocab, -3.0f);
  for (size_t t = 0; t < n_vocab; ++t) {
    const std::string& piece = tok.piece(static_cast<TokenId>(t));
    const bool special = piece.size() > 1 && piece.front() == '<' && piece.back() == '>';
    if (special || piece.empty()) continue;
    bool letters = true, printable = true;
    for (char ch : piece) {
      letters = letters && (std::isalpha(static_cast<unsigned char>(ch)) || ch == ' ');
      printable = printable && ch >= ' ' && ch <= '~';
    }
    if (!printable) continue;
    penalty[t] = letters ? 0.0f : -0.6f;
    readable.push_back(t);
  }
  std::mt19937_64 rng(seed ^ 0x64656d6fULL);  // "demo"
  std::shuffle(readable.begin(), readable.end(), rng);
  const float scale = 0.02f;  // top logit ~5 over the others' ~N(0, 0.7): sampling varies
  std::fill(w.wcls.begin(), w.wcls.end(), 0.0f);
  for (size_t i = 0; i < readable.size(); ++i) {
    const size_t t = readable[(i + 1) % readable.size()];  // the successor of readable[i]
    const float* pred = w.tok_embd.data() + readable[i] * d;
    float* row = w.wcls.data() + t * d;
    for (size_t k = 1; k < d; ++k) row[k] = scale * pred[k];
  }
  for (size_t t = 0; t < n_vocab; ++t) w.wcls[t * d] = penalty[t];
}

}  // namespace

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
  Tokenizer tokenizer(make_demo_tokenizer(c.vocab_size));
  if (options.demo_text) c.tied_classifier = false;
  Llama2cWeights w = random_llama2c_weights(c, options.seed);
  if (options.demo_text) shape_demo_text(w, tokenizer, options.seed);
  auto impl = model_from_llama2c_weights(
      std::move(w), std::string(options.demo_text ? "demo model" : "synthetic") + ", seed " +
                        std::to_string(options.seed));
  impl->tokenizer = std::move(tokenizer);
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
const std::vector<std::string>& Model::notices() const { return impl_->notices; }
const GenerationDefaults& Model::generation_defaults() const { return impl_->generation; }
size_t Model::mapped_bytes() const { return impl_->mapped_bytes; }

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

// The matrices' types, most bytes first ("q4_k+q6_k" for a Q4_K_M file; one name when uniform).
static std::string weight_types(const Model::Impl& m) {
  std::map<std::string, size_t> bytes;
  auto add = [&](const Tensor& t) {
    if (!t.empty()) bytes[to_string(t.type)] += t.bytes();
  };
  add(m.output);
  for (const LayerWeights& l : m.layers) {
    for (const Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) add(*t);
  }
  std::vector<std::pair<size_t, std::string>> order;
  for (const auto& [name, b] : bytes) order.emplace_back(b, name);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string s;
  for (const auto& [b, name] : order) s += (s.empty() ? "" : "+") + name;
  return s;
}

std::string Model::describe() const {
  const ModelConfig& c = impl_->config;
  std::ostringstream s;
  s << c.arch << " " << c.n_layers << "L dim " << c.dim << " ffn " << c.hidden_dim << " heads "
    << c.n_heads << "/" << c.n_kv_heads << " vocab " << c.vocab_size << " ctx " << c.max_seq_len
    << " " << weight_types(*impl_) << " (" << impl_->source << ")";
  return s.str();
}

}  // namespace piquant
