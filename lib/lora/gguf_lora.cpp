// GGUF LoRA adapters (llama.cpp's convert_lora_to_gguf.py): general.type = "adapter",
// adapter.type = "lora", adapter.lora.alpha; tensors blk.<N>.<stem>.weight.lora_a with ggml
// dims [in, r] (row-major [r, in]) and .lora_b with dims [r, out] ([out, r]). The converter
// stores Q/K rows as the base GGUF does for the architecture: adjacent pairs for llama,
// halves for qwen2/qwen3/exaone. scale = alpha / r (llama.cpp: alpha 0 means scale 1).
#include <cmath>

#include "format/dtype_convert.hpp"
#include "format/gguf.hpp"
#include "lora/adapter.hpp"
#include "piquant/error.hpp"

namespace piquant {
namespace {

[[noreturn]] void bad(const std::string& src, const std::string& msg) {
  throw Error(ErrorCode::kFormat, src + ": " + msg);
}
[[noreturn]] void unsupported(const std::string& src, const std::string& msg) {
  throw Error(ErrorCode::kUnsupported, src + ": " + msg);
}

std::vector<float> to_f32(const GgufFile& f, const GgufTensorInfo& t, bool* is_f32) {
  FileDType dt;
  switch (static_cast<GgmlType>(t.type)) {
    case GgmlType::kF32: dt = FileDType::kF32; break;
    case GgmlType::kF16: dt = FileDType::kF16; break;
    case GgmlType::kBF16: dt = FileDType::kBF16; break;
    default: {
      const GgmlTypeInfo* info = ggml_type_info(t.type);
      unsupported(f.source(), "tensor " + t.name + " has type " +
                                  (info ? info->name : std::to_string(t.type)) +
                                  "; LoRA adapters are read in F32, F16 or BF16");
    }
  }
  *is_f32 = *is_f32 && dt == FileDType::kF32;
  std::vector<float> out(t.n_elements);
  convert_to_f32(dt, f.tensor_data(t), out.data(), out.size());
  return out;
}

}  // namespace

LoraSource read_gguf_lora(const std::string& path) {
  const GgufFile f(path);
  const std::string type(f.get_string("general.type", ""));
  if (type != "adapter") {
    bad(path, "general.type is \"" + type + "\", not \"adapter\" (a model, not a LoRA adapter?)");
  }
  const std::string atype(f.get_string("adapter.type", "lora"));
  if (atype != "lora") unsupported(path, "adapter.type \"" + atype + "\" is not lora");
  LoraSource src;
  src.source = path;
  if (const GgufValue* v = f.find("adapter.lora.alpha")) {
    src.alpha = static_cast<float>(v->to_float("adapter.lora.alpha"));
    if (!std::isfinite(src.alpha)) bad(path, "adapter.lora.alpha is not finite");
  }
  const std::string arch(f.get_string("general.architecture", "llama"));
  src.b_layout = arch == "llama" ? RopeLayout::kPairs : RopeLayout::kHalves;

  LoraTensorPairs<GgufTensorInfo> pairs;
  for (const GgufTensorInfo& t : f.tensors()) {
    const std::string& n = t.name;
    const bool is_a = n.size() > 7 && n.compare(n.size() - 7, 7, ".lora_a") == 0;
    const bool is_b = n.size() > 7 && n.compare(n.size() - 7, 7, ".lora_b") == 0;
    if (!is_a && !is_b) bad(path, "tensor " + n + " is not a LoRA matrix (.lora_a / .lora_b)");
    const std::string base = n.substr(0, n.size() - 7);
    if (base.rfind("token_embd", 0) == 0 || base.rfind("output.", 0) == 0) {
      unsupported(path, "tensor " + n +
                            ": LoRA on the token embedding or the classifier is not supported");
    }
    int layer = -1, target = -1;
    if (base.rfind("blk.", 0) == 0) {
      const size_t dot = base.find('.', 4);
      if (dot != std::string::npos && dot > 4 && dot - 4 <= 6) {
        layer = 0;
        for (size_t i = 4; i < dot; ++i) {
          if (base[i] < '0' || base[i] > '9') layer = -1000000;
          else layer = layer * 10 + (base[i] - '0');
        }
        const std::string stem = base.substr(dot + 1);
        for (int k = 0; k < kLoraTargets; ++k) {
          if (stem == std::string(gguf_stem(static_cast<LoraTarget>(k))) + ".weight") target = k;
        }
      }
    }
    if (layer < 0 || target < 0) {
      unsupported(path, "tensor " + n + ": not a projection piquant applies LoRA to "
                                        "(blk.N.attn_q/attn_k/attn_v/attn_output/ffn_gate/"
                                        "ffn_up/ffn_down.weight)");
    }
    if (t.dims.size() != 2) bad(path, "tensor " + n + " must have 2 dimensions");
    add_lora_tensor(pairs, base, is_a, t, layer, static_cast<LoraTarget>(target));
  }
  src.all_f32 = true;
  for (const auto& [base, p] : pairs) {
    LoraSourceMatrix m = lora_source_matrix(path, base, p, "lora_a", "lora_b");
    m.r = static_cast<int64_t>(p.a->dims[1]);
    m.in = static_cast<int64_t>(p.a->dims[0]);
    m.out = static_cast<int64_t>(p.b->dims[1]);
    if (static_cast<int64_t>(p.b->dims[0]) != m.r) {
      bad(path, base + ": lora_a rank " + std::to_string(m.r) + " but lora_b rank " +
                    std::to_string(p.b->dims[0]));
    }
    if (m.r <= 0 || m.r > 4096) bad(path, base + ": rank " + std::to_string(m.r) + " out of range");
    m.a = to_f32(f, *p.a, &src.all_f32);
    m.b = to_f32(f, *p.b, &src.all_f32);
    m.scale = src.alpha != 0.0f ? src.alpha / static_cast<float>(m.r) : 1.0f;
    src.matrices.push_back(std::move(m));
  }
  if (src.matrices.empty()) bad(path, "no LoRA tensors");
  return src;
}

}  // namespace piquant
