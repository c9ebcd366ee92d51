#pragma once
// Pre-tokenizers of the byte-level BPE families, written as hand-made matchers equivalent to
// their regexes (leftmost-first alternation, with the backtracking those regexes need):
//   gpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//           ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+      (= cl100k_base)
//   qwen2:  as llama3 with \p{N} instead of \p{N}{1,3}
//   smollm: every \p{N} character on its own, then gpt2 on the text between
// \s is Unicode White_Space; \p{L}, \p{N} are general categories from UnicodeData.txt.
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace piquant {

enum class PreTokenizer { kGpt2, kLlama3, kQwen2, kSmolLM };

/// "gpt2", "llama3", "qwen2", "smollm".
const char* to_string(PreTokenizer p);
/// Accepts our names and GGUF's tokenizer.ggml.pre names (llama-bpe, gpt-2, qwen2, smollm, ...);
/// Error(kUnsupported) naming `name` otherwise.
PreTokenizer pretokenizer_from_name(std::string_view name);
/// Recognises a pre-tokenizer regex as written in tokenizer.json; false when unknown.
bool pretokenizer_from_regex(std::string_view regex, PreTokenizer* out);

/// Splits text into chunks, appended as (begin, end) byte offsets, in order, covering all
/// of text.
void pretokenize(PreTokenizer p, std::string_view text,
                 std::vector<std::pair<size_t, size_t>>& chunks);

}  // namespace piquant
