#pragma once
// Calibration for the converter (--calibrate TEXT): run the f32 model over some text and
// collect, for every weight matrix, the mean square of each input channel over all tokens
// (llama.cpp's "imatrix" idea). Quantization then weights each weight's error by its input
// channel's importance, so the channels that carry large activations are kept more precisely.
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "convert/source.hpp"

namespace piquant {

/// Called with every weight tensor as f32 before it is quantized (may change the values, e.g.
/// to merge a LoRA adapter). name: piquant's tensor name; rows x cols row-major (rows = 1 for
/// vectors).
using PreQuantizeHook =
    std::function<void(const std::string& name, int64_t rows, int64_t cols, float* data)>;

struct Calibration {
  /// Per matrix name ("blk.0.attn_q.weight", "output.weight"): mean x^2 per input column.
  std::unordered_map<std::string, std::vector<float>> importance;
  size_t tokens = 0;  ///< tokens evaluated
  double seconds = 0;
};

/// Builds the f32 model from `src` in memory (hook applied), evaluates `tokens` in windows of
/// at most `window` tokens (each a fresh context, starting at position 0), and returns the
/// statistics. Memory: the whole model as f32.
Calibration calibrate(const ModelSource& src, const std::vector<TokenId>& tokens, int window,
                      int threads, const PreQuantizeHook& hook);

/// Builds an in-memory f32 model (owning its weights) from a source; the hook sees each tensor.
std::unique_ptr<Model::Impl> load_f32_model(const ModelSource& src, const PreQuantizeHook& hook);

}  // namespace piquant
