// PEFT LoRA adapters (Hugging Face peft): adapter_config.json + adapter_model.safetensors.
//   base_model.model.model.layers.<N>.self_attn.q_proj.lora_A.weight   [r, in]
//   base_model.model.model.layers.<N>.self_attn.q_proj.lora_B.weight   [out, r]
// scale = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora. Q/K rows of B are in the
// Hugging Face (halves) RoPE layout, like the checkpoint the adapter was trained on.
// fan_in_fan_out only concerns Conv1D layers (GPT-2): for nn.Linear targets, as in every
// architecture piquant runs, PEFT ignores it and A/B keep their nn.Linear shapes.
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "format/safetensors.hpp"
#include "lora/adapter.hpp"
#include "piquant/error.hpp"

namespace piquant {
namespace {

using json = nlohmann::json;

struct Module {
  const char* name;
  LoraTarget target;
};
// Llama/Mistral/Qwen names, then Exaone's.
constexpr Module kModules[] = {
    {"q_proj", LoraTarget::kQ},       {"k_proj", LoraTarget::kK},
    {"v_proj", LoraTarget::kV},       {"o_proj", LoraTarget::kO},
    {"gate_proj", LoraTarget::kGate}, {"up_proj", LoraTarget::kUp},
    {"down_proj", LoraTarget::kDown}, {"out_proj", LoraTarget::kO},
    {"c_fc_0", LoraTarget::kGate},    {"c_fc_1", LoraTarget::kUp},
    {"c_proj", LoraTarget::kDown},
};
const char* const kEmbeddingModules[] = {"embed_tokens", "lm_head", "wte", "embed_out"};

std::string known_modules() {
  std::string s;
  for (const Module& m : kModules) s += (s.empty() ? "" : ", ") + std::string(m.name);
  return s;
}
const Module* find_module(const std::string& n) {
  for (const Module& m : kModules) {
    if (n == m.name) return &m;
  }
  return nullptr;
}
bool is_embedding(const std::string& n) {
  for (const char* e : kEmbeddingModules) {
    if (n.find(e) != std::string::npos) return true;
  }
  return false;
}

[[noreturn]] void bad(const std::string& src, const std::string& msg) {
  throw Error(ErrorCode::kFormat, src + ": " + msg);
}
[[noreturn]] void unsupported(const std::string& src, const std::string& msg) {
  throw Error(ErrorCode::kUnsupported, src + ": " + msg);
}

struct PeftConfig {
  int r = 0;
  float alpha = 8.0f;
  bool rslora = false;
  bool rank_pattern = false;
};

PeftConfig parse_config(const std::string& path) {
  json j;
  try {
    j = json::parse(read_whole_file(path));
  } catch (const json::exception& e) {
    bad(path, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) bad(path, "adapter_config.json must be a JSON object");
  auto has = [&](const char* k) { return j.contains(k) && !j[k].is_null(); };
  PeftConfig c;
  if (has("peft_type") && j["peft_type"] != "LORA") {
    unsupported(path, "peft_type " + j["peft_type"].dump() + " is not LoRA");
  }
  if (!has("r") || !j["r"].is_number_integer() || j["r"].get<int64_t>() <= 0 ||
      j["r"].get<int64_t>() > 4096) {
    bad(path, "\"r\" must be a positive integer, got " + (has("r") ? j["r"].dump() : "nothing"));
  }
  c.r = j["r"].get<int>();
  if (has("lora_alpha")) {
    if (!j["lora_alpha"].is_number()) bad(path, "\"lora_alpha\" must be a number");
    c.alpha = j["lora_alpha"].get<float>();
  }
  if (!std::isfinite(c.alpha)) bad(path, "\"lora_alpha\" is not finite");
  auto flag = [&](const char* k) {
    if (!has(k)) return false;
    if (!j[k].is_boolean()) bad(path, std::string("\"") + k + "\" must be true or false");
    return j[k].get<bool>();
  };
  c.rslora = flag("use_rslora");
  (void)flag("fan_in_fan_out");  // checked for type; see the file comment
  if (flag("use_dora")) unsupported(path, "DoRA adapters (use_dora) are not supported");
  if (has("alpha_pattern") && !(j["alpha_pattern"].is_object() && j["alpha_pattern"].empty())) {
    unsupported(path, "\"alpha_pattern\" (per-module alpha) is not supported");
  }
  c.rank_pattern = has("rank_pattern") && j["rank_pattern"].is_object() && !j["rank_pattern"].empty();
  if (has("modules_to_save") && !(j["modules_to_save"].is_array() && j["modules_to_save"].empty())) {
    unsupported(path, "\"modules_to_save\" " + j["modules_to_save"].dump() +
                          ": adapters that replace whole modules are not supported");
  }
  if (has("target_modules")) {
    const json& t = j["target_modules"];
    if (t.is_array()) {
      for (const json& e : t) {
        if (!e.is_string()) bad(path, "\"target_modules\" entries must be strings");
        const std::string n = e.get<std::string>();
        if (is_embedding(n)) {
          unsupported(path, "target_modules names " + n +
                                ": LoRA on the token embedding or the classifier is not supported "
                                "(piquant adapts " + known_modules() + ")");
        }
        if (find_module(n) == nullptr) {
          bad(path, "target_modules names unknown module '" + n + "' (piquant adapts " +
                        known_modules() + ")");
        }
      }
    } else if (!t.is_string()) {  // a string is a regex or "all-linear": the tensors decide
      bad(path, "\"target_modules\" must be a list of module names or a string");
    }
  }
  return c;
}

// "base_model.model.model.layers.3.self_attn.q_proj" -> layer 3, module "q_proj".
bool parse_layer_module(const std::string& base, int* layer, std::string* module) {
  const size_t last = base.find_last_of('.');
  if (last == std::string::npos) return false;
  *module = base.substr(last + 1);
  for (const char* key : {".layers.", ".h."}) {
    const size_t at = base.find(key);
    if (at == std::string::npos) continue;
    size_t i = at + std::strlen(key);
    int n = 0, digits = 0;
    while (i < base.size() && base[i] >= '0' && base[i] <= '9' && digits < 7) {
      n = n * 10 + (base[i++] - '0');
      ++digits;
    }
    if (digits == 0 || i >= base.size() || base[i] != '.') return false;
    *layer = n;
    return true;
  }
  return false;
}

}  // namespace

LoraSource read_peft(const std::string& st_path, const std::string& config_path) {
  const PeftConfig cfg = parse_config(config_path);
  const SafetensorsFile file(st_path);
  LoraSource src;
  src.source = st_path;
  src.alpha = cfg.alpha;
  src.rslora = cfg.rslora;
  src.b_layout = RopeLayout::kHalves;
  LoraTensorPairs<TensorView> pairs;
  for (const TensorView& t : file.tensors()) {
    const std::string& n = t.name;
    if (n.find("lora_embedding") != std::string::npos || (is_embedding(n) && n.find("lora_") != std::string::npos)) {
      unsupported(st_path, "tensor " + n +
                               ": LoRA on the token embedding or the classifier is not supported");
    }
    if (n.find("lora_magnitude_vector") != std::string::npos) {
      unsupported(st_path, "tensor " + n + ": DoRA adapters are not supported");
    }
    size_t at = n.find(".lora_A.");
    bool is_a = true;
    if (at == std::string::npos) {
      at = n.find(".lora_B.");
      is_a = false;
    }
    if (at == std::string::npos) {
      unsupported(st_path, "tensor " + n + " is not a LoRA matrix (lora_A / lora_B); adapters "
                                           "that carry whole weights are not supported");
    }
    const std::string base = n.substr(0, at);
    int layer = 0;
    std::string module;
    if (!parse_layer_module(base, &layer, &module)) {
      bad(st_path, "tensor " + n + ": cannot tell its layer (expected ...layers.<N>.<module>)");
    }
    const Module* mod = find_module(module);
    if (mod == nullptr) {
      unsupported(st_path, "tensor " + n + ": module '" + module +
                               "' is not one piquant applies LoRA to (" + known_modules() + ")");
    }
    t.require_supported();
    if (t.shape.size() != 2) {
      bad(st_path, "tensor " + n + " has shape " + t.shape_string() + ", expected 2 dimensions");
    }
    add_lora_tensor(pairs, base, is_a, t, layer, mod->target);
  }
  for (const auto& [base, p] : pairs) {
    LoraSourceMatrix m = lora_source_matrix(st_path, base, p, "lora_A", "lora_B");
    m.r = p.a->shape[0];
    m.in = p.a->shape[1];
    m.out = p.b->shape[0];
    if (p.b->shape[1] != m.r) {
      bad(st_path, base + ": lora_A is " + p.a->shape_string() + " and lora_B " +
                       p.b->shape_string() + ": their ranks differ");
    }
    if (!cfg.rank_pattern && m.r != cfg.r) {
      bad(st_path, base + ": rank " + std::to_string(m.r) + " but adapter_config.json says r = " +
                       std::to_string(cfg.r));
    }
    src.all_f32 = src.all_f32 && p.a->dtype == FileDType::kF32 && p.b->dtype == FileDType::kF32;
    m.a.resize(p.a->numel);
    m.b.resize(p.b->numel);
    p.a->to_f32(m.a.data());
    p.b->to_f32(m.b.data());
    const double r = double(m.r);
    m.scale = static_cast<float>(double(cfg.alpha) / (cfg.rslora ? std::sqrt(r) : r));
    src.matrices.push_back(std::move(m));
  }
  if (src.matrices.empty()) bad(st_path, "no lora_A / lora_B tensors");
  return src;
}

}  // namespace piquant
