#pragma once
// Writes an f32 model (Model::synthetic's) as a llama GGUF file with its matrices quantized to
// one ggml type, row-major as llama.cpp stores them (norms f32): the GGUF fixtures of the
// tensor-parallel tests (tests/mpi/mpi_make_model, tests/lib/test_shard.cpp), which read them
// through the GGUF loader's slicing hook.
#include <string>
#include <vector>

#include "common/quant.hpp"
#include "format/gguf.hpp"
#include "format/gguf_writer.hpp"
#include "model/model_impl.hpp"
#include "tokenizer/tokenizer_gguf.hpp"

namespace piquant {

/// `type`: kF32, kQ4_0, kQ8_0, kQ4_K or kQ6_K (the weight matrices and the embedding).
inline void write_gguf_model(const Model::Impl& m, GgmlType type, const std::string& path) {
  const ModelConfig& c = m.config;
  GgufWriter w;
  w.add("general.architecture", GgufWriteValue::string("llama"));
  w.add("llama.embedding_length", GgufWriteValue::u32(uint32_t(c.dim)));
  w.add("llama.block_count", GgufWriteValue::u32(uint32_t(c.n_layers)));
  w.add("llama.feed_forward_length", GgufWriteValue::u32(uint32_t(c.hidden_dim)));
  w.add("llama.attention.head_count", GgufWriteValue::u32(uint32_t(c.n_heads)));
  w.add("llama.attention.head_count_kv", GgufWriteValue::u32(uint32_t(c.n_kv_heads)));
  w.add("llama.attention.key_length", GgufWriteValue::u32(uint32_t(c.head_dim)));
  w.add("llama.context_length", GgufWriteValue::u32(uint32_t(c.max_seq_len)));
  w.add("llama.attention.layer_norm_rms_epsilon", GgufWriteValue::f32(c.norm_eps));
  w.add("llama.rope.freq_base", GgufWriteValue::f32(c.rope_theta));
  if (m.tokenizer) tokenizer_to_gguf(*m.tokenizer, w);
  kernels::WeightType wt = kernels::WeightType::kF32;
  switch (type) {
    case GgmlType::kQ4_0: wt = kernels::WeightType::kQ4; break;
    case GgmlType::kQ8_0: wt = kernels::WeightType::kQ8; break;
    case GgmlType::kQ4_K: wt = kernels::WeightType::kQ4K; break;
    case GgmlType::kQ6_K: wt = kernels::WeightType::kQ6K; break;
    default: type = GgmlType::kF32; break;
  }
  auto matrix = [&](const std::string& name, const Tensor& t) {
    std::vector<float> rows(t.numel());
    for (int64_t r = 0; r < t.rows; ++r) tensor_row_f32(t, r, rows.data() + r * t.cols);
    std::string bytes(size_t(t.rows) * kernels::row_bytes(wt, size_t(t.cols)), '\0');
    kernels::quantize_rows(wt, rows.data(), size_t(t.rows), size_t(t.cols), bytes.data());
    w.add_tensor(name, uint32_t(type), {uint64_t(t.cols), uint64_t(t.rows)}, std::move(bytes));
  };
  auto vec = [&](const std::string& name, const Tensor& t) {
    w.add_tensor(name, uint32_t(GgmlType::kF32), {uint64_t(t.cols)},
                 std::string(static_cast<const char*>(t.data), t.numel() * 4));
  };
  matrix("token_embd.weight", m.tok_embd);
  for (size_t l = 0; l < m.layers.size(); ++l) {
    const LayerWeights& x = m.layers[l];
    const std::string b = "blk." + std::to_string(l) + ".";
    vec(b + "attn_norm.weight", x.attn_norm);
    matrix(b + "attn_q.weight", x.wq);
    matrix(b + "attn_k.weight", x.wk);
    matrix(b + "attn_v.weight", x.wv);
    matrix(b + "attn_output.weight", x.wo);
    vec(b + "ffn_norm.weight", x.ffn_norm);
    matrix(b + "ffn_gate.weight", x.w_gate);
    matrix(b + "ffn_up.weight", x.w_up);
    matrix(b + "ffn_down.weight", x.w_down);
  }
  vec("output_norm.weight", m.output_norm);
  if (!c.tied_classifier) matrix("output.weight", m.output);
  w.write(path);
}

}  // namespace piquant
