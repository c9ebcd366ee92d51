#pragma once
// Tokenizers stored in GGUF metadata (tokenizer.ggml.*), read and written the way llama.cpp
// does: model "llama" (SentencePiece BPE: tokens, scores, token_type) or "gpt2" (byte-level BPE:
// tokens, token_type, merges, pre).
#include "format/gguf.hpp"
#include "format/gguf_writer.hpp"
#include "piquant/tokenizer.hpp"

namespace piquant {

/// The tokenizer embedded in an open GGUF file; Error(kFormat) naming the key when it is
/// missing or inconsistent, Error(kUnsupported) for other tokenizer models (bert, t5, ...).
Tokenizer tokenizer_from_gguf(const GgufFile& file);
/// Adds tokenizer.ggml.* keys describing `tokenizer` (a tiktoken-style vocabulary gets a merge
/// list generated from its ranks).
void tokenizer_to_gguf(const Tokenizer& tokenizer, GgufWriter& writer);

}  // namespace piquant
