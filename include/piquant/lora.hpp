#pragma once
/// \file piquant/lora.hpp
/// LoRA adapters applied at run time, unmerged: y = W x + scale * B (A x) for the attention and
/// feed-forward projections (q, k, v, o, gate, up, down). One quantized base model stays in
/// memory; any number of adapters can be resident at once (immutable, shared), and each Session
/// chooses its own with Session::set_adapters, changeable between requests with no reload.
///
/// Formats read: a PEFT directory (adapter_config.json + adapter_model.safetensors, F32/F16/
/// BF16), an adapter .safetensors file with its adapter_config.json, a GGUF LoRA adapter
/// (general.type = adapter, llama.cpp's convert_lora_to_gguf.py) and piquant's own .piq adapter.
#include <memory>
#include <string>
#include <vector>

namespace piquant {

class Model;

/// How an adapter's A and B matrices are held in memory.
enum class LoraStorage {
  kAuto,  ///< f32 when every tensor in the file is f32, else f16
  kF32,
  kF16,
};

struct LoraLoadOptions {
  /// adapter_config.json for a bare .safetensors file; empty: the one beside it.
  std::string config_path;
  LoraStorage storage = LoraStorage::kAuto;
};

class LoraAdapter {
 public:
  /// Loads an adapter for `model`: checks every matrix's shape against the model, maps PEFT
  /// module names to piquant's projections and reorders the Q/K output rows to the model's RoPE
  /// layout. Throws piquant::Error naming the file, tensor or key and what is wrong (shape
  /// mismatch, unknown module, embeddings/classifier adapters, corrupt file, bad JSON).
  static std::shared_ptr<const LoraAdapter> load(const Model& model, const std::string& path,
                                                 const LoraLoadOptions& options = {});

  const std::string& source() const;
  int rank() const;       ///< the largest rank of its matrices
  float alpha() const;    ///< lora_alpha (PEFT) / adapter.lora.alpha (GGUF)
  bool rslora() const;    ///< scale alpha / sqrt(r) instead of alpha / r
  /// Projections it adapts, in forward order: some of "q", "k", "v", "o", "gate", "up", "down".
  std::vector<std::string> targets() const;
  size_t n_matrices() const;  ///< (layer, projection) pairs adapted
  size_t bytes() const;       ///< memory of A and B
  /// One line: "LoRA r 16 alpha 32 (scale 2) q,k,v,o,gate,up,down x 22 layers, f16, 12.6 MiB".
  std::string describe() const;

  ~LoraAdapter();
  LoraAdapter(const LoraAdapter&) = delete;
  LoraAdapter& operator=(const LoraAdapter&) = delete;
  struct Impl;
  explicit LoraAdapter(std::unique_ptr<Impl> impl);
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

/// An adapter a session applies, with its user scale (multiplies alpha / r; 0 disables it).
struct AdapterChoice {
  std::shared_ptr<const LoraAdapter> adapter;
  float scale = 1.0f;
};

}  // namespace piquant
