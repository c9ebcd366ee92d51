// LoraAdapter: format dispatch, checking against the model, conversion to the kernels' layout
// (B transposed, Q/K rows in the model's RoPE layout), merge for the converter.
#include "lora/adapter.hpp"

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "common/fp16.hpp"
#include "format/gguf.hpp"
#include "load/hf_model.hpp"
#include "format/mapped_file.hpp"
#include "piquant/error.hpp"
#include "piquant/model.hpp"

namespace piquant {

const char* to_string(LoraTarget t) {
  static const char* const k[] = {"q", "k", "v", "o", "gate", "up", "down"};
  return k[static_cast<int>(t)];
}

const char* gguf_stem(LoraTarget t) {
  static const char* const k[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                  "ffn_gate", "ffn_up", "ffn_down"};
  return k[static_cast<int>(t)];
}

int64_t lora_out_dim(const ModelConfig& c, LoraTarget t) {
  const int64_t q = int64_t{c.n_heads} * c.head_dim, kv = int64_t{c.n_kv_heads} * c.head_dim;
  switch (t) {
    case LoraTarget::kQ: return q;
    case LoraTarget::kK:
    case LoraTarget::kV: return kv;
    case LoraTarget::kO:
    case LoraTarget::kDown: return c.dim;
    case LoraTarget::kGate:
    case LoraTarget::kUp: return c.hidden_dim;
  }
  return 0;
}

int64_t lora_in_dim(const ModelConfig& c, LoraTarget t) {
  switch (t) {
    case LoraTarget::kO: return int64_t{c.n_heads} * c.head_dim;
    case LoraTarget::kDown: return c.hidden_dim;
    default: return c.dim;
  }
}

namespace {

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
std::string dir_of(const std::string& p) {
  const size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

std::string shape2(int64_t a, int64_t b) {
  return "[" + std::to_string(a) + ", " + std::to_string(b) + "]";
}

}  // namespace

LoraSource read_lora_source(const std::string& path, const LoraLoadOptions& o) {
  if (is_dir(path)) {
    const std::string st = path + "/adapter_model.safetensors";
    if (!is_file(st)) {
      if (is_file(path + "/adapter_model.bin")) {
        throw Error(ErrorCode::kUnsupported,
                    path + ": adapter_model.bin (PyTorch pickle) is not read; save the adapter "
                           "with safe_serialization=True (adapter_model.safetensors)");
      }
      throw Error(ErrorCode::kIo, path + ": no adapter_model.safetensors (not a PEFT adapter "
                                         "directory?)");
    }
    return read_peft(st, o.config_path.empty() ? path + "/adapter_config.json" : o.config_path);
  }
  if (!is_file(path)) throw Error(ErrorCode::kIo, path + ": no such adapter file or directory");
  if (ends_with(path, ".json")) {  // adapter_config.json: the directory it sits in
    return read_peft(dir_of(path) + "/adapter_model.safetensors", path);
  }
  uint8_t magic[8] = {};
  {
    MappedFile f(path);
    if (f.size() >= 8) std::memcpy(magic, f.data(), 8);
    if (f.size() < 8) {
      throw Error(ErrorCode::kFormat, path + ": file of " + std::to_string(f.size()) +
                                          " bytes is too small to be an adapter");
    }
  }
  if (GgufFile::has_magic(magic, 8)) return read_gguf_lora(path);
  if (std::memcmp(magic, "PIQUANT", 8) == 0) return read_piq_lora(path, nullptr);
  if (ends_with(path, ".safetensors")) {
    return read_peft(path, o.config_path.empty() ? dir_of(path) + "/adapter_config.json"
                                                 : o.config_path);
  }
  throw Error(ErrorCode::kFormat,
              path + ": not a LoRA adapter piquant reads (a PEFT directory, adapter "
                     ".safetensors + adapter_config.json, a GGUF adapter or a .piq adapter)");
}

std::shared_ptr<const LoraAdapter> finish_adapter(LoraSource src, const ModelConfig& c,
                                                  RopeLayout layout, LoraStorage storage) {
  auto impl = std::make_unique<LoraAdapter::Impl>();
  impl->source = src.source;
  impl->alpha = src.alpha;
  impl->rslora = src.rslora;
  impl->config = c;
  impl->layout = layout;
  impl->layers.resize(static_cast<size_t>(c.n_layers));
  if (src.matrices.empty()) {
    throw Error(ErrorCode::kFormat, src.source + ": the adapter has no LoRA matrices");
  }
  const bool f16 = storage == LoraStorage::kF16 || (storage == LoraStorage::kAuto && !src.all_f32);
  for (LoraSourceMatrix& s : src.matrices) {
    const std::string where = src.source + ": " + s.name;
    if (s.layer < 0 || s.layer >= c.n_layers) {
      throw Error(ErrorCode::kFormat, where + ": layer " + std::to_string(s.layer) +
                                          " but the model has " + std::to_string(c.n_layers));
    }
    const int64_t in = lora_in_dim(c, s.target), out = lora_out_dim(c, s.target);
    if (s.in != in || s.out != out) {
      throw Error(ErrorCode::kFormat,
                  where + ": " + to_string(s.target) + " projection adapter is " +
                      shape2(s.out, s.in) + " (out x in) but the model's is " + shape2(out, in) +
                      " (adapter for another model?)");
    }
    if (s.r <= 0 || s.r > 4096) {
      throw Error(ErrorCode::kFormat, where + ": rank " + std::to_string(s.r) + " out of range");
    }
    LoraMatrix& dst = impl->layers[static_cast<size_t>(s.layer)][static_cast<size_t>(s.target)];
    if (!dst.empty()) throw Error(ErrorCode::kFormat, where + ": duplicate adapter matrix");
    for (float v : s.a) {
      if (!std::isfinite(v)) throw Error(ErrorCode::kFormat, where + ": A has a non-finite value");
    }
    for (float v : s.b) {
      if (!std::isfinite(v)) throw Error(ErrorCode::kFormat, where + ": B has a non-finite value");
    }
    // Q/K rows of B follow the base weights' RoPE layout.
    const bool qk = s.target == LoraTarget::kQ || s.target == LoraTarget::kK;
    if (qk && src.b_layout != layout) {
      const int heads = s.target == LoraTarget::kQ ? c.n_heads : c.n_kv_heads;
      std::vector<float> p(s.b.size());
      if (layout == RopeLayout::kPairs) {
        permute_halves_to_pairs(s.b.data(), p.data(), heads, c.head_dim, size_t(s.r), sizeof(float));
      } else {
        permute_pairs_to_halves(s.b.data(), p.data(), heads, c.head_dim, size_t(s.r), sizeof(float));
      }
      s.b.swap(p);
    }
    const size_t r = size_t(s.r), k = size_t(in), m = size_t(out);
    std::vector<float> bt(r * m);
    for (size_t i = 0; i < m; ++i) {
      for (size_t j = 0; j < r; ++j) bt[j * m + i] = s.b[i * r + j];
    }
    auto keep = [&](const std::vector<float>& v) -> const void* {
      std::vector<uint8_t> bytes(v.size() * (f16 ? 2 : 4));
      if (f16) {
        auto* h = reinterpret_cast<uint16_t*>(bytes.data());
        for (size_t i = 0; i < v.size(); ++i) h[i] = kernels::fp16_from_f32(v[i]);
      } else {
        std::memcpy(bytes.data(), v.data(), bytes.size());
      }
      impl->bytes += bytes.size();
      impl->storage.push_back(std::move(bytes));
      return impl->storage.back().data();
    };
    dst.r = s.r;
    dst.k = in;
    dst.m = out;
    dst.type = f16 ? kernels::LoraWeight::kF16 : kernels::LoraWeight::kF32;
    dst.a = keep(s.a);
    dst.bt = keep(bt);
    (void)k;
    dst.scale = s.scale;
    impl->max_rank = std::max(impl->max_rank, static_cast<int>(s.r));
  }
  return std::make_shared<const LoraAdapter>(std::move(impl));
}

std::shared_ptr<const LoraAdapter> load_lora_for(const ModelConfig& c, RopeLayout layout,
                                                 const std::string& path,
                                                 const LoraLoadOptions& o) {
  LoraSource src = read_lora_source(path, o);
  return finish_adapter(std::move(src), c, layout, o.storage);
}

// ---- public API -------------------------------------------------------------------------

LoraAdapter::LoraAdapter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LoraAdapter::~LoraAdapter() = default;

std::shared_ptr<const LoraAdapter> LoraAdapter::load(const Model& model, const std::string& path,
                                                     const LoraLoadOptions& options) {
  return load_lora_for(model.config(), model.impl().rope_layout, path, options);
}

const std::string& LoraAdapter::source() const { return impl_->source; }
int LoraAdapter::rank() const { return impl_->max_rank; }
float LoraAdapter::alpha() const { return impl_->alpha; }
bool LoraAdapter::rslora() const { return impl_->rslora; }
size_t LoraAdapter::bytes() const { return impl_->bytes; }

std::vector<std::string> LoraAdapter::targets() const {
  std::vector<std::string> out;
  for (int t = 0; t < kLoraTargets; ++t) {
    for (const auto& l : impl_->layers) {
      if (!l[static_cast<size_t>(t)].empty()) {
        out.push_back(to_string(static_cast<LoraTarget>(t)));
        break;
      }
    }
  }
  return out;
}

size_t LoraAdapter::n_matrices() const {
  size_t n = 0;
  for (const auto& l : impl_->layers) {
    for (const LoraMatrix& m : l) n += !m.empty();
  }
  return n;
}

namespace {
// "1.5 MiB", "34.2 KiB", "512 bytes": readable at any adapter size (not "0.0341797 MiB").
std::string mib_text(size_t bytes) {
  char buf[32];
  const double b = static_cast<double>(bytes);
  if (bytes >= 1048576) {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", b / 1048576.0);
  } else if (bytes >= 1024) {
    std::snprintf(buf, sizeof(buf), "%.1f KiB", b / 1024.0);
  } else {
    std::snprintf(buf, sizeof(buf), "%zu bytes", bytes);
  }
  return buf;
}
}  // namespace

std::string LoraAdapter::describe() const {
  std::ostringstream s;
  const auto t = targets();
  std::string ts;
  for (const auto& x : t) ts += (ts.empty() ? "" : ",") + x;
  size_t layers = 0;
  const char* type = "f32";
  for (const auto& l : impl_->layers) {
    bool any = false;
    for (const LoraMatrix& m : l) {
      if (!m.empty()) any = true, type = kernels::to_string(m.type);
    }
    layers += any;
  }
  s << "LoRA r " << impl_->max_rank << " alpha " << impl_->alpha << (impl_->rslora ? " rslora" : "")
    << ", " << ts << " x " << layers << " layers, " << type << ", "
    << mib_text(impl_->bytes) << " (" << impl_->source << ")";
  return s.str();
}

// ---- merge --------------------------------------------------------------------------------

bool merge_lora(const LoraAdapter& ad, float user_scale, const std::string& name, int64_t rows,
                int64_t cols, float* data) {
  const LoraAdapter::Impl& a = ad.impl();
  // "blk.<N>.<stem>.weight"
  if (name.compare(0, 4, "blk.") != 0) return false;
  const size_t dot = name.find('.', 4);
  if (dot == std::string::npos) return false;
  int layer = 0;
  for (size_t i = 4; i < dot; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    layer = layer * 10 + (name[i] - '0');
    if (layer > 1 << 20) return false;
  }
  const std::string stem = name.substr(dot + 1);
  int target = -1;
  for (int t = 0; t < kLoraTargets; ++t) {
    if (stem == std::string(gguf_stem(static_cast<LoraTarget>(t))) + ".weight") target = t;
  }
  if (target < 0 || layer >= static_cast<int>(a.layers.size())) return false;
  const LoraMatrix& m = a.at(layer, static_cast<LoraTarget>(target));
  if (m.empty()) return false;
  if (rows != m.m || cols != m.k) {
    throw Error(ErrorCode::kInvalidArgument,
                "merge_lora: " + name + " is " + shape2(rows, cols) + " but the adapter (" +
                    a.source + ") expects " + shape2(m.m, m.k));
  }
  const size_t r = size_t(m.r), K = size_t(m.k), M = size_t(m.m);
  std::vector<float> A(r * K), Bt(r * M);
  auto widen = [&](const void* src, std::vector<float>& dst) {
    if (m.type == kernels::LoraWeight::kF32) {
      std::memcpy(dst.data(), src, dst.size() * sizeof(float));
    } else {
      const auto* h = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < dst.size(); ++i) dst[i] = kernels::fp16_to_f32(h[i]);
    }
  };
  widen(m.a, A);
  widen(m.bt, Bt);
  const double s = double(user_scale) * double(m.scale);
  std::vector<double> row(K);
  for (size_t i = 0; i < M; ++i) {
    std::fill(row.begin(), row.end(), 0.0);
    for (size_t j = 0; j < r; ++j) {
      const double b = double(Bt[j * M + i]);
      const float* ar = A.data() + j * K;
      for (size_t c = 0; c < K; ++c) row[c] += b * double(ar[c]);
    }
    float* w = data + i * K;
    for (size_t c = 0; c < K; ++c) w[c] = static_cast<float>(double(w[c]) + s * row[c]);
  }
  return true;
}

}  // namespace piquant
