// libFuzzer: .piq container (prelude, JSON header, tensor table, metadata).
#include "format/piq.hpp"
#include "piquant/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)piquant::parse_piq(data, size, "fuzz");
  } catch (const piquant::Error&) {
  }
  return 0;
}
