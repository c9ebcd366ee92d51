// piquant's own adapter file: a .piq container (lib/format/piq.hpp) whose header "config" is the
// base model's, "rope_layout" the layout of the Q/K rows of B, and "extra.lora" holds
// {"alpha", "rslora", "scales": {"blk.0.attn_q": 2.0, ...}}. Tensors, per adapted projection:
//   blk.N.<stem>.weight.lora_a  [r, in]   f16, or i8 + blk.N.<stem>.weight.lora_a.scale f32 [r]
//   blk.N.<stem>.weight.lora_b  [out, r]  f16, or i8 + ....lora_b.scale f32 [out]
// int8 is symmetric per row: value = q * scale, scale = max|row| / 127.
#include <cmath>
#include <cstring>

#include "common/fp16.hpp"
#include "format/piq.hpp"
#include "lora/adapter.hpp"
#include "piquant/error.hpp"

namespace piquant {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& src, const std::string& msg) {
  throw Error(ErrorCode::kFormat, src + ": " + msg);
}

std::vector<float> widen(const LoraMatrix& m, const void* p, size_t n) {
  std::vector<float> out(n);
  if (m.type == kernels::LoraWeight::kF32) {
    std::memcpy(out.data(), p, n * sizeof(float));
  } else {
    const auto* h = static_cast<const uint16_t*>(p);
    for (size_t i = 0; i < n; ++i) out[i] = kernels::fp16_to_f32(h[i]);
  }
  return out;
}

void add_matrix(PiqWriter& w, const std::string& name, const std::vector<float>& v, int64_t rows,
                int64_t cols, LoraFileType type) {
  const size_t R = size_t(rows), C = size_t(cols);
  if (type == LoraFileType::kF16) {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = kernels::fp16_from_f32(v[i]);
    w.add_tensor(name, "f16", "", {rows, cols}, h.data(), h.size() * 2);
    return;
  }
  std::vector<int8_t> q(v.size());
  std::vector<float> scales(R);
  for (size_t r = 0; r < R; ++r) {
    float mx = 0.0f;
    for (size_t c = 0; c < C; ++c) mx = std::max(mx, std::fabs(v[r * C + c]));
    const float s = mx / 127.0f;
    scales[r] = s;
    for (size_t c = 0; c < C; ++c) {
      q[r * C + c] = s > 0 ? static_cast<int8_t>(std::lrintf(v[r * C + c] / s)) : int8_t{0};
    }
  }
  w.add_tensor(name, "i8", "", {rows, cols}, q.data(), q.size());
  w.add_tensor(name + ".scale", "f32", "", {rows}, scales.data(), scales.size() * sizeof(float));
}

std::vector<float> read_matrix(const PiqFile& f, const std::string& name, int64_t* rows,
                               int64_t* cols, bool* all_f32) {
  const PiqTensorInfo& t = f.get(name);
  if (t.shape.size() != 2) bad(f.path(), "tensor " + name + " must have 2 dimensions");
  *rows = t.shape[0];
  *cols = t.shape[1];
  const size_t n = size_t(*rows) * size_t(*cols);
  std::vector<float> out(n);
  const uint8_t* p = f.data(t);
  if (t.type == "f32" || t.type == "f16") {  // sizes checked by parse_piq
    if (t.type == "f32") {
      std::memcpy(out.data(), p, n * sizeof(float));
    } else {
      *all_f32 = false;
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = kernels::fp16_to_f32(h);
      }
    }
    return out;
  }
  if (t.type != "i8") {
    throw Error(ErrorCode::kUnsupported, f.path() + ": tensor " + name + " has type " + t.type +
                                             "; adapters hold f32, f16 or i8");
  }
  *all_f32 = false;
  if (t.size != n) {
    bad(f.path(), "tensor " + name + ": i8 shape needs " + std::to_string(n) +
                      " bytes but the index says " + std::to_string(t.size));
  }
  const PiqTensorInfo& s = f.get(name + ".scale");
  if (s.type != "f32" || s.shape != std::vector<int64_t>{*rows}) {
    bad(f.path(), "tensor " + name + ".scale must be f32 [" + std::to_string(*rows) + "]");
  }
  const uint8_t* sp = f.data(s);
  for (size_t r = 0; r < size_t(*rows); ++r) {
    float sc;
    std::memcpy(&sc, sp + 4 * r, 4);
    for (size_t c = 0; c < size_t(*cols); ++c) {
      out[r * size_t(*cols) + c] = static_cast<float>(static_cast<int8_t>(p[r * size_t(*cols) + c])) * sc;
    }
  }
  return out;
}

}  // namespace

void write_lora_piq(const LoraAdapter& ad, const std::string& path, LoraFileType type) {
  const LoraAdapter::Impl& a = ad.impl();
  PiqWriter w(path);
  json scales = json::object();
  for (size_t l = 0; l < a.layers.size(); ++l) {
    for (int t = 0; t < kLoraTargets; ++t) {
      const LoraMatrix& m = a.layers[l][size_t(t)];
      if (m.empty()) continue;
      const std::string base =
          "blk." + std::to_string(l) + "." + gguf_stem(static_cast<LoraTarget>(t));
      const size_t r = size_t(m.r), M = size_t(m.m);
      const std::vector<float> A = widen(m, m.a, r * size_t(m.k));
      const std::vector<float> Bt = widen(m, m.bt, r * M);
      std::vector<float> B(M * r);
      for (size_t i = 0; i < M; ++i) {
        for (size_t j = 0; j < r; ++j) B[i * r + j] = Bt[j * M + i];
      }
      add_matrix(w, base + ".weight.lora_a", A, m.r, m.k, type);
      add_matrix(w, base + ".weight.lora_b", B, m.m, m.r, type);
      scales[base] = m.scale;
    }
  }
  PiqMetadata meta;
  meta.config = a.config;
  meta.rope_layout = a.layout == RopeLayout::kPairs ? "pairs" : "halves";
  meta.tokenizer = json();
  meta.provenance = {{"source", a.source}, {"converter", "piquant lora"}};
  meta.extra = {{"lora", {{"alpha", a.alpha}, {"rslora", a.rslora}, {"scales", scales}}}};
  w.finish(meta);
}

LoraSource read_piq_lora(const std::string& path, const ModelConfig* /*expect*/) {
  const PiqFile f(path);
  const json& extra = f.meta().extra;
  if (!extra.is_object() || !extra.contains("lora") || !extra["lora"].is_object()) {
    bad(path, "a .piq file without extra.lora: a model, not a LoRA adapter?");
  }
  const PiqFile::VerifyResult v = f.verify();
  if (!v.ok()) bad(path, "corrupt adapter: " + v.mismatched.front());
  const json& lj = extra["lora"];
  LoraSource src;
  src.source = path;
  if (!lj.contains("alpha") || !lj["alpha"].is_number()) bad(path, "extra.lora.alpha missing");
  src.alpha = lj["alpha"].get<float>();
  src.rslora = lj.contains("rslora") && lj["rslora"].is_boolean() && lj["rslora"].get<bool>();
  src.b_layout = f.meta().rope_layout == "pairs" ? RopeLayout::kPairs : RopeLayout::kHalves;
  if (!lj.contains("scales") || !lj["scales"].is_object()) bad(path, "extra.lora.scales missing");
  const ModelConfig& c = f.meta().config;
  for (const auto& [base, sv] : lj["scales"].items()) {
    if (!sv.is_number()) bad(path, "extra.lora.scales." + base + " is not a number");
    LoraSourceMatrix m;
    m.name = base;
    int target = -1;
    const size_t dot = base.find('.', 4);
    if (base.rfind("blk.", 0) != 0 || dot == std::string::npos) bad(path, "bad entry " + base);
    try {
      m.layer = std::stoi(base.substr(4, dot - 4));
    } catch (const std::exception&) {
      bad(path, "bad layer in " + base);
    }
    for (int t = 0; t < kLoraTargets; ++t) {
      if (base.substr(dot + 1) == gguf_stem(static_cast<LoraTarget>(t))) target = t;
    }
    if (target < 0) bad(path, "unknown projection in " + base);
    m.target = static_cast<LoraTarget>(target);
    int64_t ar = 0, ac = 0, br = 0, bc = 0;
    m.a = read_matrix(f, base + ".weight.lora_a", &ar, &ac, &src.all_f32);
    m.b = read_matrix(f, base + ".weight.lora_b", &br, &bc, &src.all_f32);
    if (bc != ar) bad(path, base + ": lora_a and lora_b ranks differ");
    m.r = ar;
    m.in = ac;
    m.out = br;
    m.scale = sv.get<float>();
    src.matrices.push_back(std::move(m));
  }
  (void)c;  // the shapes are checked against the model by finish_adapter
  return src;
}

}  // namespace piquant
