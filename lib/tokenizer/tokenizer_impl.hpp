#pragma once
// The shared shape of every tokenizer: a vocabulary (pieces, kinds, scores, special ids) plus an
// algorithm that a subclass supplies: SentencePiece-style BPE by piece scores (SentencePieceImpl,
// also used for llama2.c's tokenizer.bin) or byte-level BPE by merge ranks (ByteLevelImpl).
// Loaders fill the public fields, then call finish() to build the lookup tables.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "piquant/tokenizer.hpp"
#include "tokenizer/pretokenizer.hpp"
#include "tokenizer/str_index.hpp"

namespace piquant {

struct Tokenizer::Impl {
  virtual ~Impl() = default;

  std::string name;                 ///< kind_name(): "llama2c", "sentencepiece", "bpe-bytelevel"
  std::vector<std::string> pieces;  ///< as written in the vocabulary
  std::vector<TokenKind> kinds;
  std::vector<float> scores;        ///< SentencePiece merge priority (higher first)
  TokenId bos = -1;
  TokenId eos = -1;
  TokenId unk = -1;
  std::vector<TokenId> end_of_generation;  ///< eos and end-of-turn ids
  bool add_bos_default = false;

  // Built by finish().
  std::vector<std::string> bytes;   ///< what each token decodes to (control tokens: their piece)
  StrIndex piece_index;             ///< piece -> id (every token)

  /// Checks the vocabulary (sizes, ids in range) and builds the tables; Error(kFormat) naming
  /// `source` when inconsistent.
  virtual void finish(const std::string& source);
  /// Encodes text without BOS. Added (user-defined) tokens are always matched as whole tokens;
  /// control tokens only when parse_special.
  std::vector<TokenId> encode_text(std::string_view text, bool parse_special) const;
  /// The bytes of `id` when it follows `prev` (-1 at the start).
  virtual std::string token_bytes(TokenId id, TokenId /*prev*/) const { return bytes[id]; }
  /// Throws Error(kOutOfRange) when id is not in the vocabulary.
  void check_id(TokenId id) const;
  TokenId find_piece(std::string_view p) const { return piece_index.find(p); }

 protected:
  /// Encodes a run of plain text; `at_start`: at the start of the text or right after a special
  /// token (where SentencePiece adds its dummy prefix).
  virtual void encode_segment(std::string_view text, bool at_start,
                              std::vector<TokenId>& out) const = 0;

 private:
  std::array<std::vector<TokenId>, 256> special_by_byte_;  // matchable tokens by first byte
};

/// SentencePiece BPE: symbols start as characters and the adjacent pair whose concatenation is
/// the highest-scoring piece is merged until none is; leftovers fall back to <0xNN> byte tokens.
struct SentencePieceImpl final : Tokenizer::Impl {
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = false;
  bool byte_fallback = true;
  bool llama2c_spaces = false;  ///< pieces hold ' ' instead of U+2581 (llama2.c tokenizer.bin)

  void finish(const std::string& source) override;
  std::string token_bytes(TokenId id, TokenId prev) const override;

 protected:
  void encode_segment(std::string_view text, bool at_start,
                      std::vector<TokenId>& out) const override;

 private:
  std::array<TokenId, 256> byte_ids_{};
};

/// Byte-level BPE (GPT-2 family): a pre-tokenizer splits the text into chunks; each chunk's bytes
/// are merged pairwise by merge rank. Pieces are stored in GPT-2's byte-to-unicode form.
struct ByteLevelImpl final : Tokenizer::Impl {
  PreTokenizer pre = PreTokenizer::kGpt2;
  bool ignore_merges = false;     ///< a chunk that is a whole token is emitted as it is
  bool add_prefix_space = false;  ///< HF ByteLevel add_prefix_space
  /// Merge list in rank order. Empty: tiktoken rule, any adjacent pair whose concatenation is a
  /// token merges, lowest id (= rank) first.
  std::vector<std::pair<TokenId, TokenId>> merges;

  void finish(const std::string& source) override;

 protected:
  void encode_segment(std::string_view text, bool at_start,
                      std::vector<TokenId>& out) const override;

 private:
  void encode_chunk(std::string_view chunk, std::vector<TokenId>& out) const;
  StrIndex bytes_index_;  // decoded bytes -> id (normal tokens)
  PairTable pairs_;
  std::array<TokenId, 256> byte_ids_{};
};

/// Largest token id a file may name (4M: 16x the largest vocabulary in use, Gemma's 256k). Ids
/// beyond it are corruption, refused before they size any table.
constexpr int64_t kMaxTokenId = int64_t{1} << 22;

/// GPT-2's reversible byte <-> printable code point map ("Ġ" is the space byte).
const std::array<char32_t, 256>& byte_to_unicode();
/// A byte string in byte-to-unicode form, and back (-1 in *bad when a code point is not in the
/// map: then it is kept as its UTF-8 bytes).
std::string bytes_to_bpe_piece(std::string_view bytes);
std::string bpe_piece_to_bytes(std::string_view piece, bool* ok = nullptr);

/// Reads a llama2.c tokenizer.bin. `vocab_size` < 0: read entries until the end of the file.
std::shared_ptr<const Tokenizer::Impl> load_llama2c_tokenizer(const std::string& path,
                                                              int vocab_size = -1);
/// A small byte-level tokenizer (BOS, EOS, 256 byte tokens, frequent English pieces) for
/// synthetic demo models; `vocab_size` >= 259.
std::shared_ptr<const Tokenizer::Impl> make_demo_tokenizer(int vocab_size);

/// Parses "<0xAB>" into 0xAB; -1 when `piece` is not of that form.
int parse_byte_piece(std::string_view piece);

/// Length of the UTF-8 sequence that starts with byte `c` (1 for invalid lead bytes).
inline int utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return 4;
  return 1;
}

}  // namespace piquant
