// libFuzzer: llama2.c checkpoint reader (header, sizes, weight offsets against the file size).
#include "load/llama2c_model.hpp"
#include "format/mapped_file.hpp"
#include "fuzz_util.hpp"
#include "model/model_impl.hpp"
#include "piquant/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const piquant::fuzz::MemFile f(data, size);
  try {
    (void)piquant::looks_like_llama2c(data, size);
    auto file = std::make_shared<const piquant::MappedFile>(f.path());
    (void)piquant::load_llama2c(file);
  } catch (const piquant::Error&) {
  }
  return 0;
}
