#pragma once
// Hugging Face model directories: config.json (architecture), generation_config.json
// (sampling defaults), tokenizer_config.json (chat template, special tokens) and safetensors
// weights: every tensor piquant needs (names from the architecture's row in load/arch.hpp) and
// the shape config.json implies for it.
//
// Supported: LlamaForCausalLM (Llama 2/3/3.1/3.2 incl. llama3 rope scaling, TinyLlama,
// SmolLM2), MistralForCausalLM, Qwen2ForCausalLM (q/k/v biases), Qwen3ForCausalLM (q/k
// RMSNorm, explicit head_dim), ExaoneForCausalLM (EXAONE 3.x: transformer.h.N names).
//
// Hugging Face stores Q/K rows per head in the "halves" RoPE layout (rotation pairs (i, i+d/2));
// GGUF and llama2.c use adjacent pairs (2i, 2i+1). permute_halves_to_pairs converts, as
// llama.cpp's converter does; the runtime may instead run halves RoPE on unpermuted weights.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "format/safetensors.hpp"
#include "piquant/model.hpp"

namespace piquant {

/// config.json, understood.
struct HfConfig {
  std::string hf_architecture;        ///< "LlamaForCausalLM", ...
  ModelConfig config;                 ///< arch: llama, qwen2, qwen3 or exaone
  std::vector<TokenId> bos_token_ids; ///< config.json bos_token_id (int or list), may be empty
  std::vector<TokenId> eos_token_ids;
  int sliding_window = 0;             ///< Mistral v0.1's 4096 (0: none); attention ignores it
};

/// The architectures parse_hf_config accepts, for messages: "LlamaForCausalLM, ...".
std::string hf_supported_architectures();

/// Parses config.json. Unknown architecture: Error(kUnsupported) naming it and the supported
/// list; unsupported features (rope_scaling yarn, non-silu activation, attention_bias on
/// llama, ...): Error(kUnsupported) naming the key; missing or mistyped keys: Error(kFormat).
HfConfig parse_hf_config(const nlohmann::json& j, const std::string& source);
/// generation_config.json: temperature, top_p, top_k, min_p, repetition_penalty, do_sample,
/// max_new_tokens, eos_token_id (int or list). null values count as unset.
GenerationDefaults parse_hf_generation_config(const nlohmann::json& j, const std::string& source);

/// tokenizer_config.json, the parts piquant uses.
struct HfTokenizerConfig {
  std::string chat_template;  ///< "" = none (a list of named templates: the "default" one)
  std::string bos_token, eos_token, pad_token, unk_token;  ///< token text, "" = unset
  std::optional<bool> add_bos_token, add_eos_token;
  std::string tokenizer_class;  ///< "LlamaTokenizer", "PreTrainedTokenizerFast", ...
};
HfTokenizerConfig parse_hf_tokenizer_config(const nlohmann::json& j, const std::string& source);

/// One tensor piquant needs from the checkpoint.
struct HfTensorSpec {
  std::string name;             ///< piquant / GGUF name: "blk.0.attn_q.weight"
  std::string hf_name;          ///< "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;   ///< as Hugging Face stores it: [out, in] for weights
  /// > 0: rows are RoPE'd heads of head_dim in the halves layout, this many heads (Q, K, their
  /// biases; q_norm/k_norm with 1): permute_halves_to_pairs applies to convert to pairs.
  int rope_heads = 0;
};

/// Every tensor the architecture needs, in forward-pass order (embedding, layers, output).
/// lm_head only when the classifier is untied.
std::vector<HfTensorSpec> hf_tensor_specs(const HfConfig& config);

/// Checks each spec's tensor exists in `weights` with exactly the expected shape and a dtype
/// piquant reads; Error(kFormat) "tensor model.layers.3.mlp.up_proj.weight: expected shape
/// [5632, 2048] (from config.json), found [5632, 2047]" or "... missing" (listing up to a few
/// missing names), Error(kUnsupported) for an unsupported dtype.
void check_hf_tensors(const std::vector<HfTensorSpec>& specs, const SafetensorsModel& weights);

/// A whole model directory, opened and checked: nothing is converted or copied yet.
struct HfModel {
  std::string dir;
  HfConfig config;
  GenerationDefaults generation;        ///< defaults when generation_config.json is absent
  HfTokenizerConfig tokenizer_config;   ///< defaults when tokenizer_config.json is absent
  std::string tokenizer_json_path;      ///< dir/tokenizer.json if present, else ""
  std::string tokenizer_model_path;     ///< dir/tokenizer.model (SentencePiece) if present
  SafetensorsModel weights;
  std::vector<HfTensorSpec> tensors;    ///< checked against weights
  std::vector<std::string> unused;      ///< checkpoint tensors no spec uses (e.g. inv_freq)
};
HfModel open_hf_model(const std::string& dir);

/// Reorders the rows of a [n_heads * head_dim, cols] matrix (row-major floats) from the halves
/// RoPE layout to adjacent pairs: within each head, dst row 2i = src row i and dst row 2i + 1 =
/// src row i + head_dim/2. Works on any trivially-copyable element of `elem_size` bytes (f32,
/// f16, bf16 rows alike). src and dst must not overlap.
void permute_halves_to_pairs(const void* src, void* dst, int n_heads, int head_dim, size_t cols,
                             size_t elem_size);
/// The inverse: pairs -> halves.
void permute_pairs_to_halves(const void* src, void* dst, int n_heads, int head_dim, size_t cols,
                             size_t elem_size);

}  // namespace piquant
