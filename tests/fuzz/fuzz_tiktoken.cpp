// libFuzzer: tiktoken ranks (cl100k_base.tiktoken, Llama 3's tokenizer.model).
#include "fuzz_util.hpp"
#include "piquant/error.hpp"
#include "tokenizer/loaders.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)piquant::looks_like_tiktoken(bytes);
  try {
    piquant::fuzz::exercise(piquant::Tokenizer(piquant::parse_tiktoken(bytes, "fuzz")));
  } catch (const piquant::Error&) {
  }
  return 0;
}
