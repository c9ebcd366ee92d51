#pragma once
// Helpers for the LoRA tests: seeded base models (pairs and halves RoPE layouts of the same
// weights), PEFT / GGUF adapters written to disk, the merged float reference.
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <piquant/piquant.hpp>

#include "format/dtype_convert.hpp"
#include "load/llama2c_model.hpp"
#include "lora/adapter.hpp"

namespace piquant::test {

struct LoraMat {
  std::vector<float> a;  // r x in
  std::vector<float> b;  // out x r, Hugging Face (halves) row order for q/k
};

/// A PEFT-style adapter held in memory.
struct TestAdapter {
  int r = 8;
  float alpha = 16.0f;
  bool rslora = false;
  std::vector<LoraTarget> targets;
  std::map<std::pair<int, int>, LoraMat> mats;  // (layer, target)
  float scale() const {
    return rslora ? alpha / std::sqrt(static_cast<float>(r)) : alpha / static_cast<float>(r);
  }
};

ModelConfig lora_test_config();
std::vector<LoraTarget> all_targets();
const char* hf_module(LoraTarget t);  // "q_proj", ...

TestAdapter make_adapter(const ModelConfig& c, int r, float alpha, bool rslora, uint64_t seed,
                         std::vector<LoraTarget> targets = all_targets());
/// Writes dir/adapter_config.json + dir/adapter_model.safetensors (tensors in `dtype`).
void write_peft(const std::string& dir, const TestAdapter& a, FileDType dtype = FileDType::kF32);
/// Writes a llama.cpp-style GGUF LoRA adapter (llama arch: B's q/k rows in pairs order).
void write_gguf_adapter(const std::string& path, const ModelConfig& c, const TestAdapter& a);

/// The same weights in the pairs layout (llama2.c / GGUF) or halves (Hugging Face) for Q/K.
std::shared_ptr<const Model> build_model(Llama2cWeights w, bool halves);
/// base + user_scale * scale * B A for every matrix (in the pairs layout of `base`).
Llama2cWeights merged_weights(const Llama2cWeights& base, const TestAdapter& a, float user_scale);
float* weight_matrix(Llama2cWeights& w, int layer, LoraTarget t);
/// A quantized copy (layers `type`, embeddings q8).
std::shared_ptr<const Model> quantized_model(const Model& m, DType type);

/// Logits of every position: a prefill of the first `prefill` tokens, then one at a time.
std::vector<float> run_logits(const std::shared_ptr<const Model>& m,
                              const std::vector<AdapterChoice>& adapters,
                              const std::vector<TokenId>& tokens, size_t prefill, int threads = 1);

struct Diff {
  double max_abs = 0, rel_rms = 0;
};
Diff diff(const std::vector<float>& got, const std::vector<float>& ref);

}  // namespace piquant::test
