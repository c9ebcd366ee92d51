// libFuzzer: safetensors header parser and tensor bounds.
#include "format/safetensors.hpp"
#include "piquant/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)piquant::parse_safetensors(data, size, "fuzz");
  } catch (const piquant::Error&) {
  }
  return 0;
}
