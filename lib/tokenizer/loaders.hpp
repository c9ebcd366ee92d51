#pragma once
// Tokenizer file parsers. Each takes the file's bytes and a `source` name for errors, checks
// everything, and returns a finished Impl. load_tokenizer_file recognises the format by content.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "tokenizer/tokenizer_impl.hpp"

namespace piquant {

/// Any supported tokenizer file: SentencePiece tokenizer.model, tiktoken ranks (Llama 3's
/// tokenizer.model), tokenizer.json, vocab.json (+ merges.txt beside it), llama2.c
/// tokenizer.bin, or a GGUF model file.
std::shared_ptr<const Tokenizer::Impl> load_tokenizer_file(const std::string& path);

/// SentencePiece ModelProto (BPE models only).
std::shared_ptr<const Tokenizer::Impl> parse_sentencepiece_model(std::string_view bytes,
                                                                 const std::string& source);
/// True when the bytes look like tiktoken ranks ("<base64> <rank>" lines).
bool looks_like_tiktoken(std::string_view bytes);
/// tiktoken ranks; special tokens and the pre-tokenizer come from the vocabulary size
/// (100256 ranks: cl100k_base; 128000: Llama 3; otherwise cl100k's regex and no specials).
std::shared_ptr<const Tokenizer::Impl> parse_tiktoken(std::string_view bytes,
                                                      const std::string& source);
/// HF tokenizer.json (model.type BPE: byte-level, or SentencePiece-style with byte_fallback).
/// `config_json`: tokenizer_config.json's text when present beside it (BOS/EOS names), or "".
std::shared_ptr<const Tokenizer::Impl> parse_tokenizer_json(std::string_view json,
                                                            std::string_view config_json,
                                                            const std::string& source);
/// GPT-2 style vocab.json + merges.txt.
std::shared_ptr<const Tokenizer::Impl> parse_vocab_merges(std::string_view vocab_json,
                                                          std::string_view merges_txt,
                                                          const std::string& source);

}  // namespace piquant
