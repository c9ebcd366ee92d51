// libFuzzer: SentencePiece tokenizer.model (protobuf) parser, then encode/decode with the result.
#include "fuzz_util.hpp"
#include "piquant/error.hpp"
#include "tokenizer/loaders.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    piquant::fuzz::exercise(piquant::Tokenizer(piquant::parse_sentencepiece_model(bytes, "fuzz")));
  } catch (const piquant::Error&) {
  }
  return 0;
}
