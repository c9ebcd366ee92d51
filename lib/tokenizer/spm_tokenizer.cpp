// SentencePiece BPE (Llama 2, TinyLlama, Mistral) and llama2.c's tokenizer.bin, which is the same
// algorithm over pieces that hold real spaces instead of U+2581.
//
// Encoding, as sentencepiece's bpe_model.cc: the text is normalized (dummy-prefix space, spaces
// written as U+2581), split into characters, and the adjacent pair whose concatenation is the
// highest-scoring normal piece merges until no pair is a piece; ties go to the leftmost pair.
// Symbols that are not pieces become <0xNN> byte tokens (byte fallback) or <unk>.
#include <cmath>
#include <cstdio>
#include <limits>

#include "format/mapped_file.hpp"
#include "tokenizer/bpe_merge.hpp"
#include "tokenizer/tokenizer_impl.hpp"
#include "unicode/unicode.hpp"

namespace piquant {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

bool mergeable(TokenKind k) { return k == TokenKind::kNormal || k == TokenKind::kUserDefined; }

}  // namespace

void SentencePieceImpl::finish(const std::string& source) {
  if (scores.empty()) scores.assign(pieces.size(), 0.0f);
  // A NaN score would break the merge heap's ordering: such a piece never merges, like -inf.
  for (float& s : scores) {
    if (std::isnan(s)) s = -std::numeric_limits<float>::infinity();
  }
  Impl::finish(source);
  byte_ids_.fill(-1);
  bytes.assign(pieces.size(), std::string());
  for (size_t i = 0; i < pieces.size(); ++i) {
    const std::string& p = pieces[i];
    switch (kinds[i]) {
      case TokenKind::kByte: {
        const int b = parse_byte_piece(p);
        if (b < 0) {
          throw Error(ErrorCode::kFormat, source + ": byte token " + std::to_string(i) + " '" + p +
                                              "' is not of the form <0xNN>");
        }
        if (byte_ids_[static_cast<size_t>(b)] < 0) byte_ids_[static_cast<size_t>(b)] = static_cast<TokenId>(i);
        bytes[i] = std::string(1, static_cast<char>(b));
        break;
      }
      case TokenKind::kControl: case TokenKind::kUnused: bytes[i] = p; break;
      default: {
        if (llama2c_spaces) {
          bytes[i] = p;
          break;
        }
        std::string& out = bytes[i];
        for (size_t k = 0; k < p.size();) {
          if (p.compare(k, kSpaceMark.size(), kSpaceMark) == 0) {
            out += ' ';
            k += kSpaceMark.size();
          } else {
            out += p[k++];
          }
        }
      }
    }
  }
}

std::string SentencePieceImpl::token_bytes(TokenId id, TokenId prev) const {
  const std::string& b = bytes[id];
  const bool at_start = prev < 0 || kinds[prev] == TokenKind::kControl;
  if (add_dummy_prefix && at_start && kinds[id] != TokenKind::kByte && !b.empty() && b[0] == ' ') {
    return b.substr(1);  // the dummy prefix the encoder added
  }
  return b;
}

void SentencePieceImpl::encode_segment(std::string_view text, bool at_start,
                                       std::vector<TokenId>& out) const {
  std::string norm;
  norm.reserve(text.size() + 8);
  const std::string_view space = llama2c_spaces ? std::string_view(" ") : kSpaceMark;
  if (remove_extra_whitespaces) {
    // Drop leading and trailing spaces and squeeze inner runs to one.
    std::string squeezed;
    bool pending_space = false;
    for (char c : text) {
      if (c == ' ') {
        pending_space = !squeezed.empty();
        continue;
      }
      if (pending_space) squeezed += ' ';
      pending_space = false;
      squeezed += c;
    }
    if (squeezed.empty()) return;
    if (add_dummy_prefix && at_start) norm += space;
    for (char c : squeezed) c == ' ' ? void(norm += space) : void(norm += c);
  } else {
    if (text.empty()) return;
    if (add_dummy_prefix && at_start) norm += space;
    for (char c : text) c == ' ' ? void(norm += space) : void(norm += c);
  }

  std::vector<MergeSymbol> syms;
  syms.reserve(norm.size());
  for (size_t i = 0; i < norm.size();) {
    char32_t cp;
    const size_t len = unicode::decode_utf8(norm, i, &cp);
    const TokenId id = piece_index.find(std::string_view(norm).substr(i, len));
    syms.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(len),
                    id >= 0 && mergeable(kinds[id]) ? id : -1});
    i += len;
  }
  bpe_merge(syms, [&](const MergeSymbol& l, const MergeSymbol& r, double* pr, int32_t* merged) {
    const TokenId id = piece_index.find(std::string_view(norm).substr(l.start, l.len + r.len));
    if (id < 0 || !mergeable(kinds[id]) || std::isinf(scores[id])) return false;
    *pr = -static_cast<double>(scores[id]);
    *merged = id;
    return true;
  });
  for (const MergeSymbol& s : syms) {
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    bool all_bytes = byte_fallback;
    for (uint32_t k = 0; all_bytes && k < s.len; ++k) {
      all_bytes = byte_ids_[static_cast<unsigned char>(norm[s.start + k])] >= 0;
    }
    if (all_bytes) {
      for (uint32_t k = 0; k < s.len; ++k) {
        out.push_back(byte_ids_[static_cast<unsigned char>(norm[s.start + k])]);
      }
    } else if (unk >= 0) {
      out.push_back(unk);
    }
    // No byte fallback and no <unk>: the character cannot be represented and is dropped.
  }
}

// --- llama2.c tokenizer.bin ------------------------------------------------------------------
// int32 max_token_length, then per token: float32 score, int32 length, `length` bytes. Pieces
// hold real spaces; ids 0, 1, 2 are <unk>, BOS and EOS; "<0xNN>" pieces are byte fallbacks.

namespace {

std::shared_ptr<SentencePieceImpl> make_llama2c() {
  auto t = std::make_shared<SentencePieceImpl>();
  t->name = "llama2c";
  t->llama2c_spaces = true;
  t->add_bos_default = true;
  return t;
}

void finish_llama2c(SentencePieceImpl& t, const std::string& source, bool demo = false) {
  t.kinds.assign(t.pieces.size(), TokenKind::kNormal);
  for (size_t i = 0; i < t.pieces.size(); ++i) {
    if (parse_byte_piece(t.pieces[i]) >= 0) t.kinds[i] = TokenKind::kByte;
    if (demo && t.pieces[i].rfind("<unused", 0) == 0) t.kinds[i] = TokenKind::kUnused;
  }
  t.kinds[0] = TokenKind::kUnknown;
  t.kinds[1] = t.kinds[2] = TokenKind::kControl;
  t.unk = 0;
  t.bos = 1;
  t.eos = 2;
  t.end_of_generation = {2};
  t.finish(source);
}

}  // namespace

std::shared_ptr<const Tokenizer::Impl> load_llama2c_tokenizer(const std::string& path,
                                                              int vocab_size) {
  MappedFile file(path);
  ByteReader r(file.data(), file.size(), path);
  auto t = make_llama2c();
  const int32_t max_len = r.read<int32_t>("tokenizer.bin max_token_length");
  if (max_len <= 0 || max_len > (1 << 16)) {
    r.fail("tokenizer.bin max_token_length " + std::to_string(max_len) +
           " is out of range (1..65536): not a llama2.c tokenizer?");
  }
  for (int i = 0; vocab_size < 0 ? !r.at_end() : i < vocab_size; ++i) {
    const std::string what = "token " + std::to_string(i);
    const float score = r.read<float>(what.c_str());
    const int32_t len = r.read<int32_t>(what.c_str());
    if (len < 0 || len > max_len) {
      r.fail(what + ": length " + std::to_string(len) + " outside 0..max_token_length (" +
             std::to_string(max_len) + ")");
    }
    t->scores.push_back(score);
    t->pieces.emplace_back(r.take_string(static_cast<size_t>(len), what.c_str()));
  }
  if (t->pieces.size() < 3) r.fail("tokenizer.bin holds " + std::to_string(t->pieces.size()) +
                                   " tokens; at least <unk>, BOS and EOS are needed");
  finish_llama2c(*t, path);
  return t;
}

std::shared_ptr<const Tokenizer::Impl> make_demo_tokenizer(int vocab_size) {
  auto t = make_llama2c();
  t->pieces = {"<unk>", "<s>", "</s>"};
  t->scores = {0, 0, 0};
  char buf[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    t->pieces.emplace_back(buf);
    t->scores.push_back(0);
  }
  // Printable ASCII, then common English pieces, so demo output is readable-ish.
  for (char c = ' '; c <= '~'; ++c) t->pieces.emplace_back(1, c), t->scores.push_back(-1);
  const char* words[] = {" the", " and", " a", " to", " of", " in", " is", " it", " you", " that",
                         " he", " was", " for", " on", " are", " with", " as", " I", " his",
                         " they", " be", " at", " one", " have", " this", " from", "ing", "ed",
                         "er", "es", "th", "he", "in", "an", "re", "on", " t", " s", " w"};
  for (const char* w : words) t->pieces.emplace_back(w), t->scores.push_back(-2);
  while (static_cast<int>(t->pieces.size()) < vocab_size) {
    t->pieces.push_back("<unused" + std::to_string(t->pieces.size()) + ">");
    t->scores.push_back(-1e9f);
  }
  t->pieces.resize(static_cast<size_t>(vocab_size));
  t->scores.resize(static_cast<size_t>(vocab_size));
  finish_llama2c(*t, "demo tokenizer", true);
  return t;
}

}  // namespace piquant
