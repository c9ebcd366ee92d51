// A converted q4 file of TinyLlama-1.1B's widths loads without copying its weights: resident
// memory right after Model::load stays far below the file size (the weights are paged in from
// the mapping only when the forward pass reads them).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <piquant/piquant.hpp>
#include <string>

#include "common/fp16.hpp"
#include "common/pack.hpp"
#include "format/piq.hpp"
#include "load/piq_model.hpp"
#include "test_util.hpp"

namespace {

using namespace piquant;

size_t rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6)) * 1024;
  }
  return 0;
}

// Writes a tensor of identical valid blocks (small scale, mixed nibbles) in the packed layout.
void add_blocks(PiqWriter& w, const std::string& name, kernels::WeightType t, int64_t rows,
                int64_t cols, bool packed) {
  const size_t bb = kernels::block_bytes(t);
  std::vector<uint8_t> block(bb);
  for (size_t i = 0; i < bb; ++i) block[i] = static_cast<uint8_t>(0x5A + 37 * i);
  const uint16_t d = kernels::fp16_from_f32(0.01f);
  std::memcpy(block.data(), &d, 2);
  if (t == kernels::WeightType::kQ4M) std::memcpy(block.data() + 2, &d, 2);
  const size_t row = kernels::row_bytes(t, static_cast<size_t>(cols));
  std::vector<uint8_t> rows_buf(row * 4);
  for (size_t i = 0; i < rows_buf.size(); i += bb)
    std::memcpy(rows_buf.data() + i, block.data(), bb);
  std::vector<uint8_t> chunk(packed ? kernels::packed_size(t, 4, static_cast<size_t>(cols))
                                    : rows_buf.size());
  if (packed)
    kernels::pack(t, rows_buf.data(), 4, static_cast<size_t>(cols), chunk.data());
  else
    chunk = rows_buf;
  w.begin_tensor(name, kernels::to_string(t), packed ? kPiqLayoutPacked : "", {rows, cols});
  for (int64_t r = 0; r < rows; r += 4) w.append(chunk.data(), chunk.size());  // rows % 4 == 0
  w.end_tensor();
}

void add_f32(PiqWriter& w, const std::string& name, int64_t n, float v) {
  std::vector<float> x(static_cast<size_t>(n), v);
  w.add_tensor(name, "f32", "", {n}, x.data(), x.size() * 4);
}

}  // namespace

TEST_CASE("a 1.1B-shaped q4 piq file loads without copying its weights", "[convert][mmap]") {
  const bool emulated = std::string(PIQUANT_TEST_EMULATOR).size() > 0;
  ModelConfig c;  // TinyLlama-1.1B's widths; fewer layers (and vocab under qemu) keep it quick
  c.dim = 2048;
  c.hidden_dim = 5632;
  c.n_layers = emulated ? 2 : 6;
  c.n_heads = 32;
  c.n_kv_heads = 4;
  c.head_dim = 64;
  c.vocab_size = emulated ? 4000 : 32000;
  c.max_seq_len = 256;
  c.tied_classifier = false;
  test::TempDir dir;
  const std::string path = dir.file("tl.piq");
  {
    PiqWriter w(path);
    using WT = kernels::WeightType;
    add_blocks(w, "token_embd.weight", WT::kQ8, c.vocab_size, c.dim, false);
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      add_f32(w, b + "attn_norm.weight", c.dim, 1.0f);
      add_blocks(w, b + "attn_q.weight", WT::kQ4, 2048, 2048, true);
      add_blocks(w, b + "attn_k.weight", WT::kQ4, 256, 2048, true);
      add_blocks(w, b + "attn_v.weight", WT::kQ4, 256, 2048, true);
      add_blocks(w, b + "attn_output.weight", WT::kQ4, 2048, 2048, true);
      add_f32(w, b + "ffn_norm.weight", c.dim, 1.0f);
      add_blocks(w, b + "ffn_gate.weight", WT::kQ4, 5632, 2048, true);
      add_blocks(w, b + "ffn_up.weight", WT::kQ4, 5632, 2048, true);
      add_blocks(w, b + "ffn_down.weight", WT::kQ4, 2048, 5632, true);
    }
    add_f32(w, "output_norm.weight", c.dim, 1.0f);
    add_blocks(w, "output.weight", WT::kQ8, c.vocab_size, c.dim, true);
    PiqMetadata meta;
    meta.config = c;
    w.finish(meta);
  }
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  const size_t file_size = static_cast<size_t>(f.tellg());
  const size_t before = rss_bytes();
  auto model = Model::load(path);
  const size_t after = rss_bytes();
  const size_t grew = after > before ? after - before : 0;
  std::printf(
      "piq mmap: file %.1f MiB, resident growth at load %.2f MiB, mapped weights %.1f MiB\n",
      file_size / 1048576.0, grew / 1048576.0, model->mapped_bytes() / 1048576.0);
  CHECK(model->mapped_bytes() > file_size * 9 / 10);
  // Copying the weights would grow resident memory by about the file size; allow 5 % of it plus
  // a fixed 8 MiB for the loader's own tables and, under qemu-user, the emulator's code cache
  // (3.6 MiB on the 64 MiB file the emulated run uses).
  CHECK(grew < file_size / 20 + (size_t(8) << 20));
  // And it runs: one token through every layer.
  Session s(model, SessionOptions{32, 2});
  const float* logits = s.eval({1});
  CHECK(std::isfinite(logits[0]));
}
