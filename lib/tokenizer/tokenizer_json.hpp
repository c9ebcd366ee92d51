#pragma once
// A tokenizer as JSON, for containers that embed it (the .piq converter): everything needed to
// rebuild it exactly. Layout:
//   {"format": "piquant-tokenizer", "version": 1, "algorithm": "sentencepiece" | "bytelevel",
//    "name", "pieces": [...], "kinds": [0..5 as TokenKind], "scores": [...] (sentencepiece),
//    "bos", "eos", "unk", "end_of_generation": [...], "add_bos",
//    "sentencepiece": {"add_dummy_prefix", "remove_extra_whitespaces", "byte_fallback",
//                      "llama2c_spaces"},
//    "bytelevel": {"pre", "ignore_merges", "add_prefix_space", "merges": [[a, b], ...]}}
// A piece that is not valid UTF-8 is written as {"hex": "..."}.
#include <nlohmann/json.hpp>

#include "piquant/tokenizer.hpp"

namespace piquant {

nlohmann::json tokenizer_to_json(const Tokenizer& tokenizer);
/// Error(kFormat) naming the field when the JSON is incomplete or inconsistent.
Tokenizer tokenizer_from_json(const nlohmann::json& j);

}  // namespace piquant
