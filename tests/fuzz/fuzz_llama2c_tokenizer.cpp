// libFuzzer: llama2.c tokenizer.bin, read from a file as the library does, and through the
// generic loader (which also tells the formats apart by content).
#include "fuzz_util.hpp"
#include "piquant/error.hpp"
#include "tokenizer/loaders.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const piquant::fuzz::MemFile f(data, size);
  try {
    piquant::fuzz::exercise(piquant::Tokenizer(piquant::load_llama2c_tokenizer(f.path())));
  } catch (const piquant::Error&) {
  }
  try {
    piquant::fuzz::exercise(piquant::Tokenizer::load(f.path()));
  } catch (const piquant::Error&) {
  }
  return 0;
}
