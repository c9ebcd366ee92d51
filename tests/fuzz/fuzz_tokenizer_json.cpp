// libFuzzer: HF tokenizer.json parser (+ tokenizer_config.json after a NUL byte).
#include "fuzz_util.hpp"
#include "piquant/error.hpp"
#include "tokenizer/loaders.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto [json, config] = piquant::fuzz::split_at_nul(data, size);
  try {
    piquant::fuzz::exercise(piquant::Tokenizer(piquant::parse_tokenizer_json(json, config, "fuzz")));
  } catch (const piquant::Error&) {
  }
  return 0;
}
