// libFuzzer: piquant's own tokenizer JSON (tokenizer_json.hpp, what .piq files embed).
#include <nlohmann/json.hpp>

#include "fuzz_util.hpp"
#include "piquant/error.hpp"
#include "tokenizer/tokenizer_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;  // not JSON: the JSON library's business, not ours
  try {
    piquant::fuzz::exercise(piquant::tokenizer_from_json(j));
  } catch (const piquant::Error&) {
  }
  return 0;
}
