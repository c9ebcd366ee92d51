// Writes the seed corpus of every fuzz target (small valid files made with the library's own
// writers and the test fixtures): make_seeds DIR -> DIR/<target>/<seed files>.
#include <sys/stat.h>

#include <cstdio>
#include <string>

#include "format/gguf_writer.hpp"
#include "load/llama2c_model.hpp"
#include "format/piq.hpp"
#include "format/safetensors.hpp"
#include "tokenizer/loaders.hpp"
#include "tokenizer/tokenizer_gguf.hpp"
#include "tokenizer/tokenizer_json.hpp"
#include "tokenizer/tokenizer_fixtures.hpp"

namespace {

std::string g_root;

void put(const std::string& target, const std::string& name, const std::string& bytes) {
  const std::string dir = g_root + "/" + target;
  ::mkdir(dir.c_str(), 0755);
  piquant::write_file_atomic(dir + "/" + name, bytes);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds DIR\n");
    return 2;
  }
  g_root = argv[1];
  ::mkdir(g_root.c_str(), 0755);
  using namespace piquant;
  namespace t = piquant::test;
  try {
    put("fuzz_spm_model", "tiny.model", t::tiny_spm_model());
    put("fuzz_tiktoken", "tiny.tiktoken", t::tiny_tiktoken());
    put("fuzz_llama2c_tokenizer", "tiny.bin", t::tiny_llama2c_tokenizer());
    put("fuzz_llama2c_tokenizer", "tiny.model", t::tiny_spm_model());
    put("fuzz_vocab_merges", "tiny", t::tiny_vocab_json() + std::string(1, '\0') +
                                         t::tiny_merges_txt());
    put("fuzz_tokenizer_json", "tiny.json", t::tiny_tokenizer_json());
    put("fuzz_tokenizer_json", "tiny-config.json",
        t::tiny_tokenizer_json() + std::string(1, '\0') +
            R"({"bos_token": "<|endoftext|>", "add_bos_token": true})");
    put("fuzz_encode", "en", "Hello, world! It's 2024; the hello 123456 don't  \n\n x");
    put("fuzz_encode", "ko", "안녕하세요 世界 🇰🇷👨‍👩‍👧 e\xCC\x81 <s><|user|>\xFF");

    // GGUF: the three tiny tokenizers embedded as llama.cpp writes them, plus a tensor.
    const Tokenizer spm(parse_sentencepiece_model(t::tiny_spm_model(), "spm"));
    const Tokenizer tik(parse_tiktoken(t::tiny_tiktoken(), "tiktoken"));
    const Tokenizer gpt(parse_vocab_merges(t::tiny_vocab_json(), t::tiny_merges_txt(), "gpt2"));
    put("fuzz_tokenizer_serialized", "spm.json", tokenizer_to_json(spm).dump());
    put("fuzz_tokenizer_serialized", "gpt2.json", tokenizer_to_json(gpt).dump());
    const Tokenizer l2c(load_llama2c_tokenizer(g_root + "/fuzz_llama2c_tokenizer/tiny.bin"));
    put("fuzz_tokenizer_serialized", "llama2c.json", tokenizer_to_json(l2c).dump());
    int k = 0;
    for (const Tokenizer* tok : {&spm, &tik, &gpt}) {
      GgufWriter w;
      w.add("general.architecture", GgufWriteValue::string("llama"));
      w.add("llama.context_length", GgufWriteValue::u32(64));
      tokenizer_to_gguf(*tok, w);
      w.add_tensor("token_embd.weight", 0, {4, 2}, std::string(32, '\x01'));
      put("fuzz_gguf", "tok" + std::to_string(k++) + ".gguf", w.to_bytes());
    }

    SafetensorsWriter st;
    const float v[6] = {1, 2, 3, 4, 5, 6};
    st.add_f32("a.weight", {2, 3}, v);
    st.add_f32("b.weight", {3}, v, FileDType::kF16);
    st.set_metadata("format", "pt");
    put("fuzz_safetensors", "small.safetensors", st.serialize());

    const std::string tmp = g_root + "/seed.piq";
    {
      PiqWriter w(tmp);
      w.add_tensor("a.f32", "f32", "", {2, 3}, v, sizeof(v));
      PiqMetadata meta;
      meta.config.dim = 64;
      meta.config.n_layers = 1;
      meta.config.n_heads = 4;
      meta.config.n_kv_heads = 4;
      meta.config.head_dim = 16;
      meta.config.hidden_dim = 128;
      meta.config.vocab_size = 32;
      meta.config.max_seq_len = 16;
      meta.tokenizer = tokenizer_to_json(spm);
      w.finish(meta);
    }
    put("fuzz_piq", "small.piq", read_whole_file(tmp));
    std::remove(tmp.c_str());

    ModelConfig c;
    c.dim = 16;
    c.hidden_dim = 24;
    c.n_layers = 1;
    c.n_heads = 2;
    c.n_kv_heads = 1;
    c.head_dim = 8;
    c.vocab_size = 8;
    c.max_seq_len = 4;
    for (const bool tied : {true, false}) {
      c.tied_classifier = tied;
      const std::string path = g_root + "/seed.bin";
      write_llama2c(path, random_llama2c_weights(c, 7));
      put("fuzz_llama2c_checkpoint", tied ? "tied.bin" : "untied.bin", read_whole_file(path));
      std::remove(path.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
