#pragma once
// llama2.c checkpoints (Karpathy's run.c "version 0" format): a header of seven int32
//   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
// (vocab_size < 0: the classifier is stored separately at the end), then float32 weights in
// this order: token_embedding[vocab][dim], rms_att[L][dim], wq[L][dim][dim], wk[L][kv_dim][dim],
// wv[L][kv_dim][dim], wo[L][dim][dim], rms_ffn[L][dim], w1[L][hidden][dim], w2[L][dim][hidden],
// w3[L][hidden][dim], rms_final[dim], freq_cis_real[seq_len][hd/2], freq_cis_imag[seq_len][hd/2],
// [wcls[vocab][dim]].
//
// The container only: header, section sizes, the weights' place in the file, and writing.
// Turning a checkpoint into a model is lib/load/llama2c_model.hpp's.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "piquant/model.hpp"

namespace piquant {

class MappedFile;

/// True when the first bytes look like a llama2.c header (positive sizes, sane bounds).
bool looks_like_llama2c(const uint8_t* data, size_t size);

/// Floats each section holds, in file order.
struct Llama2cLayout {
  size_t embd, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq, wcls;
  size_t total() const {
    return embd + rms_att + wq + wk + wv + wo + rms_ffn + w1 + w2 + w3 + rms_final + 2 * freq + wcls;
  }
};
/// The sections of a checkpoint of `config`'s shape (tied_classifier: no wcls).
Llama2cLayout llama2c_layout(const ModelConfig& config);

/// The header of a mapped checkpoint as a config (arch llama; each field range-checked, the
/// config as a whole is not validated here). A file that is recognisably something else (a
/// safetensors file, a zip or pickle, GGML, JSON) gets an Error(kFormat) saying what it is.
ModelConfig read_llama2c_header(const MappedFile& file);
/// The weights of a mapped checkpoint whose header gave `config`: Error(kFormat) when the file
/// size is not exactly what the header implies.
const float* llama2c_weights(const MappedFile& file, const ModelConfig& config);

/// Float weights in llama2.c order, for writing checkpoints (tests, demo models).
struct Llama2cWeights {
  ModelConfig config;  // arch llama; tied_classifier decides whether wcls is written
  std::vector<float> tok_embd, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls;
};

/// Writes a version-0 llama2.c checkpoint.
void write_llama2c(const std::string& path, const Llama2cWeights& w);

}  // namespace piquant
