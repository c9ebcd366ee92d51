#pragma once
// LoRA adapters inside the library: what a loaded LoraAdapter holds, the loaders per file format
// (they all produce a LoraSource, which finish_adapter checks against the model and converts to
// the kernels' layout), merging into f32 weights and writing .piq adapters (for the converter).
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lora/lora.hpp"
#include "model/model_impl.hpp"
#include "piquant/error.hpp"
#include "piquant/lora.hpp"

namespace piquant {

/// The seven projections an adapter may target, in forward order.
enum class LoraTarget : int { kQ = 0, kK, kV, kO, kGate, kUp, kDown };
constexpr int kLoraTargets = 7;
/// "q", "k", ...
const char* to_string(LoraTarget t);
/// piquant / GGUF tensor name stem: "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", ...
const char* gguf_stem(LoraTarget t);
/// Output and input widths of the projection for `c`.
int64_t lora_out_dim(const ModelConfig& c, LoraTarget t);
int64_t lora_in_dim(const ModelConfig& c, LoraTarget t);

/// One adapted projection of one layer, in the kernels' layout.
struct LoraMatrix {
  int64_t r = 0, k = 0, m = 0;  ///< rank, input width, output width
  kernels::LoraWeight type = kernels::LoraWeight::kF32;
  const void* a = nullptr;      ///< r x k
  const void* bt = nullptr;     ///< r x m: B transposed, rows in the model's RoPE layout
  float scale = 1.0f;           ///< alpha / r (or alpha / sqrt(r) with rsLoRA)
  bool empty() const { return a == nullptr; }
};

struct LoraAdapter::Impl {
  std::string source;
  float alpha = 0.0f;
  bool rslora = false;
  int max_rank = 0;
  ModelConfig config;                     ///< of the model it was loaded for
  RopeLayout layout = RopeLayout::kPairs; ///< that model's Q/K row layout
  std::vector<std::array<LoraMatrix, kLoraTargets>> layers;
  std::vector<std::vector<uint8_t>> storage;
  size_t bytes = 0;

  const LoraMatrix& at(int layer, LoraTarget t) const {
    return layers[static_cast<size_t>(layer)][static_cast<size_t>(t)];
  }
};

/// A matrix as read from a file, before checking and conversion: f32, B as stored (out x r).
struct LoraSourceMatrix {
  int layer = 0;
  LoraTarget target = LoraTarget::kQ;
  std::string name;  ///< as in the file (for messages)
  int64_t r = 0, in = 0, out = 0;
  std::vector<float> a;  ///< r x in
  std::vector<float> b;  ///< out x r
  float scale = 1.0f;
};

struct LoraSource {
  std::string source;
  float alpha = 0.0f;
  bool rslora = false;
  RopeLayout b_layout = RopeLayout::kHalves;  ///< how Q/K rows of B are stored
  bool all_f32 = true;                        ///< every tensor was f32 in the file
  std::vector<LoraSourceMatrix> matrices;
};

/// A and B tensors of one adapted matrix, as a loader finds them in its file.
template <class Tensor>
struct LoraTensorPair {
  const Tensor* a = nullptr;
  const Tensor* b = nullptr;
  int layer = 0;
  LoraTarget target = LoraTarget::kQ;
};
/// By base name, sorted: deterministic order.
template <class Tensor>
using LoraTensorPairs = std::map<std::string, LoraTensorPair<Tensor>>;

/// Records `t` as the A (is_a) or B tensor of `base`, the `target` matrix of `layer`.
template <class Tensor>
void add_lora_tensor(LoraTensorPairs<Tensor>& pairs, const std::string& base, bool is_a,
                     const Tensor& t, int layer, LoraTarget target) {
  LoraTensorPair<Tensor>& p = pairs[base];
  (is_a ? p.a : p.b) = &t;
  p.layer = layer;
  p.target = target;
}

/// The matrix of `base` with its layer, target and name set; Error(kFormat) "<source>: <base>: has
/// lora_A but no lora_B" (or the other way round) when one is missing. `a_name`, `b_name`: the
/// file format's names for them ("lora_A" / "lora_B" in PEFT, "lora_a" / "lora_b" in GGUF).
template <class Tensor>
LoraSourceMatrix lora_source_matrix(const std::string& source, const std::string& base,
                                    const LoraTensorPair<Tensor>& p, const char* a_name,
                                    const char* b_name) {
  if (p.a == nullptr || p.b == nullptr) {
    throw Error(ErrorCode::kFormat, source + ": " + base + ": has " + (p.a ? a_name : b_name) +
                                        " but no " + (p.a ? b_name : a_name));
  }
  LoraSourceMatrix m;
  m.layer = p.layer;
  m.target = p.target;
  m.name = base;
  return m;
}

/// Reads any supported adapter file (see LoraAdapter::load), nothing checked against a model yet
/// except what the file itself must satisfy.
LoraSource read_lora_source(const std::string& path, const LoraLoadOptions& o);
LoraSource read_peft(const std::string& safetensors_path, const std::string& config_path);
LoraSource read_gguf_lora(const std::string& path);
LoraSource read_piq_lora(const std::string& path, const ModelConfig* expect);

/// Checks shapes against `c` (Error(kFormat) naming tensor, expected and found), permutes Q/K
/// rows of B from src.b_layout to `layout`, transposes B and stores A/B as `storage`.
std::shared_ptr<const LoraAdapter> finish_adapter(LoraSource src, const ModelConfig& c,
                                                  RopeLayout layout, LoraStorage storage);

/// For the converter, which has a config and a layout but no Model: loads `path` for them.
std::shared_ptr<const LoraAdapter> load_lora_for(const ModelConfig& c, RopeLayout layout,
                                                 const std::string& path,
                                                 const LoraLoadOptions& o = {});

/// Merge for piquant-convert --merge-lora: data (rows x cols f32, row-major, Q/K rows in the
/// layout the adapter was loaded for) += user_scale * adapter scale * B A when `name` (piquant's
/// tensor name, "blk.3.attn_q.weight") is a matrix the adapter adapts. Returns whether it did.
/// Error(kInvalidArgument) when rows/cols do not match the adapter's matrix.
bool merge_lora(const LoraAdapter& a, float user_scale, const std::string& name, int64_t rows,
                int64_t cols, float* data);

/// Element type of A and B in a .piq adapter.
enum class LoraFileType { kF16, kI8 };
/// Writes `a` as a .piq adapter (tensors blk.N.<stem>.weight.lora_a [r, in] and .lora_b
/// [out, r]; i8 with an f32 scale per row in .lora_a.scale / .lora_b.scale).
void write_lora_piq(const LoraAdapter& a, const std::string& path, LoraFileType type);

}  // namespace piquant
