#pragma once
// llama2.c checkpoints (Karpathy's run.c "version 0" format): a header of seven int32
//   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
// (vocab_size < 0: the classifier is stored separately at the end), then float32 weights in
// this order: token_embedding[vocab][dim], rms_att[L][dim], wq[L][dim][dim], wk[L][kv_dim][dim],
// wv[L][kv_dim][dim], wo[L][dim][dim], rms_ffn[L][dim], w1[L][hidden][dim], w2[L][dim][hidden],
// w3[L][hidden][dim], rms_final[dim], freq_cis_real[seq_len][hd/2], freq_cis_imag[seq_len][hd/2],
// [wcls[vocab][dim]].
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/model_impl.hpp"

namespace piquant {

class MappedFile;

/// True when the first bytes look like a llama2.c header (positive sizes, sane bounds).
bool looks_like_llama2c(const uint8_t* data, size_t size);

/// Loads a llama2.c checkpoint; weights stay in the mmap. Every size is checked against the file.
std::unique_ptr<Model::Impl> load_llama2c(std::shared_ptr<const MappedFile> file);

/// Float weights in llama2.c order, for writing checkpoints (tests, demo models).
struct Llama2cWeights {
  ModelConfig config;  // arch llama; tied_classifier decides whether wcls is written
  std::vector<float> tok_embd, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls;
};

/// Seeded random weights at `config`'s shape (normal(0, 0.02)-ish, norms near 1).
Llama2cWeights random_llama2c_weights(const ModelConfig& config, uint64_t seed);
/// Writes a version-0 llama2.c checkpoint.
void write_llama2c(const std::string& path, const Llama2cWeights& w);
/// Builds an in-memory Model::Impl that owns `w`'s data.
std::unique_ptr<Model::Impl> model_from_llama2c_weights(Llama2cWeights w, std::string source);

}  // namespace piquant
