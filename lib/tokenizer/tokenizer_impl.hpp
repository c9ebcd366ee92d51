#pragma once
// The shared shape of every tokenizer: a vocabulary (pieces, kinds, scores, special ids) and an
// algorithm that subclasses supply (SentencePiece-style BPE by scores, byte-level BPE by ranks).
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "piquant/tokenizer.hpp"

namespace piquant {

struct Tokenizer::Impl {
  virtual ~Impl() = default;

  std::vector<std::string> pieces;  ///< as written in the vocabulary
  std::vector<TokenKind> kinds;
  std::vector<float> scores;        ///< merge priority (higher first); empty if unused
  std::unordered_map<std::string, TokenId> piece_to_id;
  TokenId bos = -1;
  TokenId eos = -1;
  std::vector<TokenId> end_of_generation;  ///< eos and end-of-turn ids
  bool add_bos_default = false;

  /// Encodes text without BOS. parse_special: match control/user-defined pieces in the text.
  virtual std::vector<TokenId> encode_text(std::string_view text, bool parse_special) const = 0;
  /// The bytes of `id` when it follows `prev`; control tokens give "".
  virtual std::string token_bytes(TokenId id, TokenId prev) const = 0;
  virtual std::string name() const = 0;

  /// Fills piece_to_id from pieces (first occurrence wins).
  void index_pieces();
  /// Throws Error(kOutOfRange) when id is not in the vocabulary.
  void check_id(TokenId id) const;
};

/// Reads a llama2.c tokenizer.bin. `vocab_size` < 0: read entries until the end of the file.
std::shared_ptr<const Tokenizer::Impl> load_llama2c_tokenizer(const std::string& path,
                                                              int vocab_size = -1);
/// A small byte-level tokenizer (BOS, EOS, 256 byte tokens, frequent English pieces) for
/// synthetic demo models; `vocab_size` >= 259.
std::shared_ptr<const Tokenizer::Impl> make_demo_tokenizer(int vocab_size);

/// Length of the UTF-8 sequence that starts with byte `c` (1 for invalid lead bytes).
inline int utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return 4;
  return 1;
}

/// Parses "<0xAB>" into 0xAB; -1 when `piece` is not of that form.
int parse_byte_piece(std::string_view piece);

}  // namespace piquant
