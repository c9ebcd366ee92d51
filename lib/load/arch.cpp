#include "load/arch.hpp"

namespace piquant {
namespace {

// Hugging Face names shared by the Llama-style checkpoints (Llama, Mistral, Qwen2, Qwen3).
constexpr HfArchNames kLlamaStyle = {
    "model.embed_tokens.weight", "model.layers.", "self_attn.", "input_layernorm.weight",
    "o_proj.weight", "post_attention_layernorm.weight", "mlp.gate_proj.weight",
    "mlp.up_proj.weight", "mlp.down_proj.weight", "model.norm.weight",
    /*n_layers_key=*/nullptr, /*hidden_dim_optional=*/false, "rms_norm_eps", 1e-6f, "hidden_act",
    /*tied_default=*/false, /*sliding_window_default=*/false};

constexpr HfArchNames with_sliding_window_default(HfArchNames n) {
  n.sliding_window_default = true;
  return n;
}

// name, the Q/K row layout of GGUF files, qkv_bias, qk_norm, Hugging Face names.
constexpr ArchSpec kArchs[] = {
    {"llama", RopeLayout::kPairs, false, false, with_sliding_window_default(kLlamaStyle)},
    {"qwen2", RopeLayout::kHalves, true, false, kLlamaStyle},
    {"qwen3", RopeLayout::kHalves, false, true, kLlamaStyle},
    // EXAONE 3.x: GPT-2 style names (transformer.h.N), layer_norm_epsilon, tied by default.
    {"exaone", RopeLayout::kHalves, false, false,
     {"transformer.wte.weight", "transformer.h.", "attn.attention.", "ln_1.weight",
      "out_proj.weight", "ln_2.weight", "mlp.c_fc_0.weight", "mlp.c_fc_1.weight",
      "mlp.c_proj.weight", "transformer.ln_f.weight", /*n_layers_key=*/"num_layers",
      /*hidden_dim_optional=*/true, "layer_norm_epsilon", 1e-5f, "activation_function",
      /*tied_default=*/true, /*sliding_window_default=*/false}},
};

constexpr HfArchClass kHfClasses[] = {{"LlamaForCausalLM", "llama"},
                                      {"MistralForCausalLM", "llama"},
                                      {"Qwen2ForCausalLM", "qwen2"},
                                      {"Qwen3ForCausalLM", "qwen3"},
                                      {"ExaoneForCausalLM", "exaone"}};

}  // namespace

const ArchSpec* find_arch(std::string_view name) {
  for (const ArchSpec& a : kArchs) {
    if (name == a.name) return &a;
  }
  return nullptr;
}

std::string supported_arch_names() {
  std::string s;
  const size_t n = sizeof(kArchs) / sizeof(kArchs[0]);
  for (size_t i = 0; i < n; ++i) {
    s += (i == 0 ? "" : i + 1 == n ? " and " : ", ") + std::string(kArchs[i].name);
  }
  return s;
}

const HfArchClass* find_hf_arch_class(std::string_view hf_class) {
  for (const HfArchClass& a : kHfClasses) {
    if (hf_class == a.hf_class) return &a;
  }
  return nullptr;
}

std::string hf_arch_class_names() {
  std::string s;
  for (const HfArchClass& a : kHfClasses) s += (s.empty() ? "" : ", ") + std::string(a.hf_class);
  return s;
}

}  // namespace piquant
