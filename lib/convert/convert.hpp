#pragma once
// piquant-convert's pipeline: a ModelSource in, one .piq file out. Tensors stream one at a
// time (read -> optional hook -> quantize with scale search / calibration -> pack -> write), so
// memory stays bounded by the largest tensor as f32 (plus the f32 model when calibrating).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "convert/calibrate.hpp"
#include "convert/source.hpp"
#include "util/progress.hpp"

namespace piquant {

struct ConvertOptions {
  /// A weight type for every matrix (f32, f16, q8, q4, q4m), a preset (q4_mix, q4m_mix), or
  /// keep (each tensor in the piquant type nearest to how the source stores it; GGUF Q8_0,
  /// Q4_0, Q4_1, F16 and F32 tensors are copied bit for bit).
  std::string type = "q8";
  /// Output format: "piq" (packed for piquant's kernels) or "gguf" (row-major GGUF blocks, the
  /// types llama.cpp reads; Q/K rows in the layout llama.cpp expects for the architecture).
  std::string format = "piq";
  int block_size = 32;                      ///< elements per quantization block; the kernels: 32
  bool search = true;                       ///< per-block scale search (false: plain absmax)
  std::vector<TokenId> calibration_tokens;  ///< non-empty: calibrate on these
  std::string calibration_name;             ///< for provenance (the text file's name)
  int calibration_window = 512;             ///< tokens per calibration context
  int threads = 0;                          ///< 0: all hardware threads
  bool progress = true;                     ///< progress bar / lines on stderr
  ProgressOptions progress_options;
  /// Sees every tensor as f32 before quantization (also while building the calibration model,
  /// so it may run twice per tensor). Set: no tensor is copied as-is (all are re-quantized).
  PreQuantizeHook pre_quantize;
  nlohmann::json extra_provenance = nlohmann::json::object();
};

struct TensorReport {
  std::string name, type, layout, source_type;
  int64_t rows = 0, cols = 0;
  uint64_t bytes = 0;
  double rel_rms = 0;   ///< sqrt(sum (w - deq)^2 / sum w^2) against the source's values
  bool copied = false;  ///< stored bytes copied from the source without re-quantizing
};

struct ConvertReport {
  std::vector<TensorReport> tensors;
  uint64_t file_bytes = 0;
  uint64_t params = 0;                ///< elements of every stored tensor
  double bits_per_weight = 0;         ///< tensor bytes * 8 / params, the whole file's weights
  double matrix_bits_per_weight = 0;  ///< the same over 2-D weight matrices only
  size_t calibration_tokens = 0;
  std::vector<std::string> notices;
};

/// The presets and types --type accepts, for messages: "f32, f16, q8, q4, q4m, q4_mix, ...".
std::string convert_type_names();
/// `name` as convert_type_names() spells it: lower case, GGUF's names (Q8_0, Q4_0, Q4_1) and the
/// old q4a / q4a_mix mapped to piquant's; unknown names are returned lower-cased (planned_type
/// refuses them); K-quant names are refused with the nearest preset.
std::string canonical_type_name(const std::string& name);
/// The weight type a tensor gets under `type` in a model of n_layers layers (throws
/// Error(kInvalidArgument) for an unknown name). Vectors are always f32; matrices whose width is
/// not a multiple of 32 stay f32; a K type whose rows are not whole super-blocks falls back
/// (kquant_fallback).
kernels::WeightType planned_type(const std::string& type, const SourceTensor& t, int n_layers);
/// The same as a name ("q4_k", "q5_0", "q8", "f32", ...); `notice` (may be null) receives the
/// reason when a K type falls back.
std::string planned_type_name(const std::string& type, const SourceTensor& t, int n_layers,
                              std::string* notice);
/// The .piq weight type of a type name (Error(kUnsupported) when .piq files cannot hold it).
kernels::WeightType piq_weight_type(const std::string& name);

/// Converts `src` into the .piq file `output` (written to output.tmp, renamed at the end).
ConvertReport convert_model(const ModelSource& src, const std::string& output,
                            const ConvertOptions& options);

}  // namespace piquant
