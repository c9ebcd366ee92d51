#pragma once
// The architectures piquant runs, one table row each: what the GGUF, Hugging Face and .piq
// loaders (and the converter) need to know about an architecture, in one place. The forward
// pass itself is the same for all of them; the rows differ in tensor names, config.json keys,
// the Q/K RoPE layout GGUF files use, and which optional tensors (q/k/v biases, q/k norms)
// exist. No architecture ships a chat template default: templates come from the files.
#include <string>
#include <string_view>

#include "model/model_impl.hpp"

namespace piquant {

/// A Hugging Face checkpoint's tensor names and config.json keys for one architecture. Layer
/// tensors are `layer` + N + "." + name; attention projections are under `layer` N `attn`.
struct HfArchNames {
  const char* embd;         ///< "model.embed_tokens.weight"
  const char* layer;        ///< "model.layers."
  const char* attn;         ///< "self_attn." (q_proj, k_proj, v_proj, biases, q/k norms)
  const char* attn_norm;    ///< "input_layernorm.weight"
  const char* attn_output;  ///< "o_proj.weight" (under attn)
  const char* ffn_norm;     ///< "post_attention_layernorm.weight"
  const char* ffn_gate;     ///< "mlp.gate_proj.weight"
  const char* ffn_up;       ///< "mlp.up_proj.weight"
  const char* ffn_down;     ///< "mlp.down_proj.weight"
  const char* output_norm;  ///< "model.norm.weight"
  const char* n_layers_key;        ///< read before num_hidden_layers when present; nullptr: none
  bool hidden_dim_optional;        ///< intermediate_size may be absent (then 4 * hidden_size)
  const char* norm_eps_key;        ///< "rms_norm_eps"
  float norm_eps_default;          ///< when that key is absent
  const char* activation_key;      ///< "hidden_act"
  bool tied_default;               ///< tie_word_embeddings when absent (transformers' default)
  bool sliding_window_default;     ///< use_sliding_window when absent (Mistral: on)
};

struct ArchSpec {
  const char* name;      ///< ModelConfig::arch and GGUF's general.architecture: "llama", ...
  RopeLayout gguf_rope;  ///< how llama.cpp's converter stores this architecture's Q/K rows
  bool qkv_bias;         ///< q/k/v projections carry biases (qwen2)
  bool qk_norm;          ///< per-head RMSNorm of q and k before RoPE (qwen3)
  HfArchNames hf;
};

/// The row for `name` ("llama", "qwen2", "qwen3", "exaone"); nullptr for any other.
const ArchSpec* find_arch(std::string_view name);
/// "llama, qwen2, qwen3 and exaone", for messages.
std::string supported_arch_names();

/// Hugging Face `architectures[0]` classes and the architecture each one runs as.
struct HfArchClass {
  const char* hf_class;  ///< "LlamaForCausalLM", "MistralForCausalLM", ...
  const char* arch;      ///< "llama"
};
/// The row for a config.json class; nullptr when piquant does not run it.
const HfArchClass* find_hf_arch_class(std::string_view hf_class);
/// "LlamaForCausalLM, MistralForCausalLM, ...", for messages.
std::string hf_arch_class_names();

}  // namespace piquant
