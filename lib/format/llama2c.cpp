#include "format/llama2c.hpp"

#include <cmath>
#include <cstring>
#include <fstream>

#include "format/mapped_file.hpp"
#include "piquant/error.hpp"

namespace piquant {
namespace {

constexpr int32_t kMaxDim = 1 << 20;  // far beyond any real model; guards size arithmetic

struct Header {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

bool header_sane(const Header& h) {
  auto ok = [](int32_t v) { return v > 0 && v <= kMaxDim; };
  return ok(h.dim) && ok(h.hidden_dim) && ok(h.n_layers) && ok(h.n_heads) && ok(h.n_kv_heads) &&
         h.vocab_size != 0 && h.vocab_size >= -kMaxDim && h.vocab_size <= kMaxDim && ok(h.seq_len);
}

ModelConfig config_from_header(const Header& h, const std::string& src) {
  auto field = [&](const char* name, int32_t v) {
    if (v <= 0 || v > kMaxDim) {
      throw Error(ErrorCode::kFormat, src + ": llama2.c header field " + name + " = " +
                                          std::to_string(v) + " is out of range (1.." +
                                          std::to_string(kMaxDim) + "); is this a llama2.c checkpoint?");
    }
  };
  field("dim", h.dim);
  field("hidden_dim", h.hidden_dim);
  field("n_layers", h.n_layers);
  field("n_heads", h.n_heads);
  field("n_kv_heads", h.n_kv_heads);
  field("seq_len", h.seq_len);
  if (h.vocab_size == 0 || h.vocab_size < -kMaxDim || h.vocab_size > kMaxDim) {
    throw Error(ErrorCode::kFormat, src + ": llama2.c header field vocab_size = " +
                                        std::to_string(h.vocab_size) + " is out of range");
  }
  ModelConfig c;
  c.arch = "llama";
  c.dim = h.dim;
  c.hidden_dim = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.vocab_size = std::abs(h.vocab_size);
  c.max_seq_len = h.seq_len;
  c.tied_classifier = h.vocab_size > 0;
  c.head_dim = h.n_heads > 0 ? h.dim / h.n_heads : 0;
  return c;
}

}  // namespace

Llama2cLayout llama2c_layout(const ModelConfig& c) {
  // Sizes are bounded by kMaxDim (2^20) per field; products of three stay below 2^63.
  const size_t L = c.n_layers, d = c.dim, h = c.hidden_dim, v = c.vocab_size;
  const size_t q_dim = static_cast<size_t>(c.n_heads) * c.head_dim;
  const size_t kv = static_cast<size_t>(c.n_kv_heads) * c.head_dim;
  Llama2cLayout s{};
  s.embd = v * d;
  s.rms_att = L * d;
  s.wq = L * q_dim * d;
  s.wk = L * kv * d;
  s.wv = L * kv * d;
  s.wo = L * d * q_dim;
  s.rms_ffn = L * d;
  s.w1 = L * h * d;
  s.w2 = L * d * h;
  s.w3 = L * h * d;
  s.rms_final = d;
  s.freq = static_cast<size_t>(c.max_seq_len) * (c.head_dim / 2);
  s.wcls = c.tied_classifier ? 0 : v * d;
  return s;
}

bool looks_like_llama2c(const uint8_t* data, size_t size) {
  if (size < sizeof(Header)) return false;
  Header h;
  std::memcpy(&h, data, sizeof(h));
  return header_sane(h);
}

namespace {

// Files that reach the llama2.c loader (which has no magic number) but are something else a user
// may try: named, with what to do instead of a llama2.c header error ("hidden_dim = 0").
void refuse_other_formats(const uint8_t* d, size_t n, const std::string& src) {
  const std::string convert =
      "convert the model folder (config.json, *.safetensors, tokenizer) once with piquant-convert "
      "DIR -o model.piq, then run -m model.piq";
  if (n >= 10) {
    uint64_t header_len = 0;
    std::memcpy(&header_len, d, 8);
    if (d[8] == '{' && header_len >= 2 && header_len <= n - 8) {
      throw Error(ErrorCode::kFormat, src + ": a safetensors file (Hugging Face weights), which "
                                            "piquant does not run directly: " + convert);
    }
  }
  if (n >= 4 && std::memcmp(d, "PK\x03\x04", 4) == 0) {
    throw Error(ErrorCode::kFormat, src + ": a zip archive (a PyTorch checkpoint?), which piquant "
                                          "does not read: " + convert);
  }
  if (n >= 3 && d[0] == 0x80 && d[1] >= 2 && d[1] <= 5 && d[2] != 0) {
    throw Error(ErrorCode::kFormat, src + ": a Python pickle (a PyTorch checkpoint?), which "
                                          "piquant does not read: " + convert);
  }
  for (const char* magic : {"lmgg", "fmgg", "tjgg", "ggml", "ggmf", "ggjt"}) {
    if (n >= 4 && std::memcmp(d, magic, 4) == 0) {
      throw Error(ErrorCode::kFormat, src + ": an old GGML-era file (before GGUF), which piquant "
                                            "does not read: convert it to GGUF with llama.cpp's "
                                            "tools, or convert the original model folder with "
                                            "piquant-convert");
    }
  }
  if (n >= 1 && (d[0] == '{' || d[0] == '[')) {
    throw Error(ErrorCode::kFormat, src + ": a JSON or text file, not a model (-m takes a .piq, "
                                          ".gguf or llama2.c checkpoint; a Hugging Face folder is "
                                          "converted with piquant-convert DIR -o model.piq)");
  }
}

}  // namespace

ModelConfig read_llama2c_header(const MappedFile& file) {
  const std::string& src = file.path();
  if (!looks_like_llama2c(file.data(), file.size())) {
    refuse_other_formats(file.data(), file.size(), src);
  }
  ByteReader r(file.data(), file.size(), src);
  Header h;
  h.dim = r.read<int32_t>("llama2.c header (7 x int32)");
  h.hidden_dim = r.read<int32_t>("llama2.c header (7 x int32)");
  h.n_layers = r.read<int32_t>("llama2.c header (7 x int32)");
  h.n_heads = r.read<int32_t>("llama2.c header (7 x int32)");
  h.n_kv_heads = r.read<int32_t>("llama2.c header (7 x int32)");
  h.vocab_size = r.read<int32_t>("llama2.c header (7 x int32)");
  h.seq_len = r.read<int32_t>("llama2.c header (7 x int32)");
  return config_from_header(h, src);
}

const float* llama2c_weights(const MappedFile& file, const ModelConfig& config) {
  const std::string& src = file.path();
  const Llama2cLayout s = llama2c_layout(config);
  const int32_t dim = config.dim, hidden = config.hidden_dim, layers = config.n_layers;
  const int32_t vocab = config.tied_classifier ? config.vocab_size : -config.vocab_size;
  const size_t need = checked_add(sizeof(Header), checked_mul(s.total(), sizeof(float), src), src);
  if (file.size() != need) {
    throw Error(ErrorCode::kFormat,
                src + ": llama2.c checkpoint with dim " + std::to_string(dim) + ", hidden " +
                    std::to_string(hidden) + ", " + std::to_string(layers) +
                    " layers, vocab " + std::to_string(vocab) + " needs " +
                    std::to_string(need) + " bytes but the file has " +
                    std::to_string(file.size()) +
                    (file.size() < need ? " (truncated?)" : " (trailing data or wrong header)"));
  }
  // The weights start at byte 28: not 4-aligned only if the mmap base were odd, which it is not.
  return reinterpret_cast<const float*>(file.data() + sizeof(Header));
}

void write_llama2c(const std::string& path, const Llama2cWeights& w) {
  const ModelConfig& c = w.config;
  std::ofstream f(path, std::ios::binary);
  if (!f) throw Error(ErrorCode::kIo, path + ": cannot open for writing");
  const int32_t vocab = c.tied_classifier ? c.vocab_size : -c.vocab_size;
  const int32_t header[7] = {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, vocab,
                             c.max_seq_len};
  f.write(reinterpret_cast<const char*>(header), sizeof(header));
  auto put = [&f](const std::vector<float>& v) {
    f.write(reinterpret_cast<const char*>(v.data()),
            static_cast<std::streamsize>(v.size() * sizeof(float)));
  };
  put(w.tok_embd);
  put(w.rms_att);
  put(w.wq);
  put(w.wk);
  put(w.wv);
  put(w.wo);
  put(w.rms_ffn);
  put(w.w1);
  put(w.w2);
  put(w.w3);
  put(w.rms_final);
  // freq_cis_real / imag, as llama2.c's export writes them (unused by run.c and by piquant).
  const int half = c.head_dim / 2;
  std::vector<float> re(static_cast<size_t>(c.max_seq_len) * half), im(re.size());
  for (int p = 0; p < c.max_seq_len; ++p) {
    for (int i = 0; i < half; ++i) {
      const double freq = std::pow(10000.0, -2.0 * i / c.head_dim);
      re[static_cast<size_t>(p) * half + i] = static_cast<float>(std::cos(p * freq));
      im[static_cast<size_t>(p) * half + i] = static_cast<float>(std::sin(p * freq));
    }
  }
  put(re);
  put(im);
  if (!c.tied_classifier) put(w.wcls);
  if (!f) throw Error(ErrorCode::kIo, path + ": write failed");
}

}  // namespace piquant
