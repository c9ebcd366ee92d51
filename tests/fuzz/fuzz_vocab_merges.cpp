// libFuzzer: GPT-2 vocab.json + merges.txt (the two files separated by a NUL byte).
#include "fuzz_util.hpp"
#include "piquant/error.hpp"
#include "tokenizer/loaders.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto [vocab, merges] = piquant::fuzz::split_at_nul(data, size);
  try {
    piquant::fuzz::exercise(piquant::Tokenizer(piquant::parse_vocab_merges(vocab, merges, "fuzz")));
  } catch (const piquant::Error&) {
  }
  return 0;
}
