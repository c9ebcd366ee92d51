// Writes the seeded GQA test model of tests/mpi as a .piq file (weights in the packed layout, the
// demo tokenizer), for the piquant-run tests under mpirun: the memory check (each rank maps the
// file and touches only its slice) and the fault tests (a different file on one rank).
//   mpi_make_model OUT.piq TYPE(f32|q8|q4) SEED [big]
//   mpi_make_model OUT.gguf TYPE(f32|q8|q4|q4_k|q6_k) SEED [big]   (row-major blocks, as
//                                                                   llama.cpp writes them)
// (big: dim 1024, FFN 4096, 8 layers: 72 MiB of q4 weights, for the resident-memory check;
//  bench: TinyLlama-1.1B's widths, 8 of its 22 layers, vocab 32000: for bench/bench_mpi)
#include <cstdio>
#include <cstdlib>
#include <string>

#include <piquant/piquant.hpp>

#include "format/piq.hpp"
#include "load/piq_model.hpp"
#include "model/model_impl.hpp"
#include "model/quantize_model.hpp"
#include "tokenizer/tokenizer_json.hpp"

#include "gguf_from_model.hpp"  // (tests/mpi)

using namespace piquant;

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: mpi_make_model OUT.piq|OUT.gguf f32|q8|q4|q4_k|q6_k SEED [big]\n");
    return 2;
  }
  try {
    SyntheticModelOptions so;
    so.seed = std::strtoull(argv[3], nullptr, 10);
    so.demo_text = true;
    ModelConfig& c = so.config;
    c.dim = 384;
    c.hidden_dim = 1536;
    c.n_layers = 4;
    c.n_heads = 24;
    c.n_kv_heads = 12;
    c.head_dim = 16;
    c.vocab_size = 4096;
    c.max_seq_len = 4096;
    if (argc == 5 && std::string(argv[4]) == "big") {
      c.dim = 1024;
      c.hidden_dim = 4096;
      c.n_layers = 8;
      c.n_heads = 16;
      c.n_kv_heads = 8;
      c.head_dim = 64;
      c.max_seq_len = 512;
    }
    if (argc == 5 && std::string(argv[4]) == "bench") {
      c.dim = 2048;
      c.hidden_dim = 5632;
      c.n_layers = 8;
      c.n_heads = 32;
      c.n_kv_heads = 4;
      c.head_dim = 64;
      c.vocab_size = 32000;
      c.max_seq_len = 512;
    }
    auto m = Model::synthetic(so);
    const std::string type = argv[2], out = argv[1];
    if (out.size() > 5 && out.compare(out.size() - 5, 5, ".gguf") == 0) {
      const GgmlType g = type == "q4"     ? GgmlType::kQ4_0
                         : type == "q8"   ? GgmlType::kQ8_0
                         : type == "q4_k" ? GgmlType::kQ4_K
                         : type == "q6_k" ? GgmlType::kQ6_K
                         : type == "f32"  ? GgmlType::kF32
                                          : throw Error(ErrorCode::kInvalidArgument,
                                                        "GGUF type " + type + "?");
      write_gguf_model(m->impl(), g, out);
      return 0;
    }
    if (type != "f32") {
      QuantizeModelOptions q;
      q.type = parse_dtype(type);
      m = std::make_shared<const Model>(quantize_model(m->impl(), q));
    }
    const Model::Impl& mi = m->impl();
    PiqWriter w(argv[1]);
    auto add = [&](const Tensor& t, bool vector) {
      const bool packed = t.layout == TensorLayout::kPacked && is_quantized(t.type);
      std::vector<int64_t> shape = vector ? std::vector<int64_t>{t.cols}
                                          : std::vector<int64_t>{t.rows, t.cols};
      w.add_tensor(t.name, to_string(t.type), packed ? kPiqLayoutPacked : "", shape, t.data,
                   t.bytes());
    };
    add(mi.tok_embd, false);
    for (const LayerWeights& l : mi.layers) {
      add(l.attn_norm, true);
      for (const Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo}) add(*t, false);
      add(l.ffn_norm, true);
      for (const Tensor* t : {&l.w_gate, &l.w_up, &l.w_down}) add(*t, false);
    }
    add(mi.output_norm, true);
    add(mi.output, false);
    PiqMetadata meta;
    meta.config = mi.config;
    meta.tokenizer = tokenizer_to_json(m->tokenizer());
    w.finish(meta);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi_make_model: %s\n", e.what());
    return 1;
  }
  return 0;
}
