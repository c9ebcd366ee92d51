#pragma once
/// \file piquant/tokenizer.hpp
/// Text <-> token ids. A Tokenizer is immutable and cheap to copy (shared state).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace piquant {

using TokenId = int32_t;

struct EncodeOptions {
  /// Prepend BOS. Unset: follow the tokenizer's own convention (SentencePiece: yes, GPT-2: no).
  std::optional<bool> add_bos;
  /// Recognise special / added tokens written in the text ("<|eot_id|>") as single tokens.
  bool parse_special = false;
};

struct DecodeOptions {
  /// Show control tokens (BOS, EOS, <|eot_id|>, ...) as their text instead of skipping them.
  bool show_special = false;
};

/// What a token is, as the tokenizer file declares it.
enum class TokenKind : uint8_t { kNormal, kByte, kControl, kUserDefined, kUnknown, kUnused };

class Tokenizer {
 public:
  /// Reads a tokenizer file; the format is recognised from the content: llama2.c tokenizer.bin,
  /// SentencePiece tokenizer.model, tiktoken ranks (Llama 3's tokenizer.model), tokenizer.json
  /// (+ tokenizer_config.json beside it), vocab.json (+ merges.txt beside it), a GGUF or .piq model file,
  /// or a directory holding one of these. Throws piquant::Error naming the file and the problem.
  static Tokenizer load(const std::string& path);

  std::vector<TokenId> encode(std::string_view text, const EncodeOptions& options = {}) const;
  std::string decode(const std::vector<TokenId>& ids, const DecodeOptions& options = {}) const;

  /// The bytes one token stands for when it follows `prev` (SentencePiece drops the dummy-prefix
  /// space of the first word after BOS). May be an incomplete UTF-8 sequence: see TokenStream.
  std::string token_bytes(TokenId id, TokenId prev = -1, const DecodeOptions& options = {}) const;
  /// The token's piece as written in the vocabulary (e.g. "▁the", "<0x0A>", "Ġthe").
  const std::string& piece(TokenId id) const;
  TokenKind kind(TokenId id) const;
  /// Id of an exact piece, or -1.
  TokenId find(std::string_view piece) const;

  size_t vocab_size() const;
  TokenId bos_id() const;  ///< -1 when the vocabulary has none
  TokenId eos_id() const;  ///< -1 when the vocabulary has none
  /// End-of-generation tokens: EOS plus end-of-turn tokens such as <|eot_id|>, <|im_end|>.
  bool is_end_of_generation(TokenId id) const;
  /// "llama2c", "sentencepiece", "bpe-bytelevel", ...
  std::string kind_name() const;

  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  const Impl& impl() const { return *impl_; }
  std::shared_ptr<const Impl> impl_ptr() const { return impl_; }

 private:
  std::shared_ptr<const Impl> impl_;
};

/// Turns a stream of token ids into text pieces that are always whole UTF-8 characters:
/// bytes of a character split across tokens are held back until it is complete.
class TokenStream {
 public:
  explicit TokenStream(Tokenizer tokenizer, DecodeOptions options = {});
  /// Text that became complete with this token (possibly empty).
  std::string push(TokenId id);
  /// Whatever is still held back (an incomplete sequence at the very end, as U+FFFD).
  std::string flush();

 private:
  Tokenizer tokenizer_;
  DecodeOptions options_;
  TokenId prev_ = -1;
  std::string pending_;
};

}  // namespace piquant
