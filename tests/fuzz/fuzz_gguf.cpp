// libFuzzer: GGUF header, metadata and tensor table, then the tokenizer in its metadata.
#include "format/gguf.hpp"
#include "fuzz_util.hpp"
#include "piquant/error.hpp"
#include "tokenizer/tokenizer_gguf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const piquant::GgufFile g(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    for (const auto& kv : g.metadata()) (void)g.find(kv.key);
    uint64_t sum = 0;
    for (const auto& t : g.tensors()) {
      const uint8_t* p = g.tensor_data(t);
      if (t.n_bytes > 0) sum += p[0] + p[t.n_bytes - 1];  // in bounds, or ASan says otherwise
    }
    (void)sum;
    if (g.find("tokenizer.ggml.model") != nullptr) {
      piquant::fuzz::exercise(piquant::tokenizer_from_gguf(g));
    }
  } catch (const piquant::Error&) {
  }
  return 0;
}
