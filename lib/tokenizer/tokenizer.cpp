// Tokenizer::Impl's shared parts (checks, tables, special-token matching) and the public API.
#include <algorithm>

#include "format/mapped_file.hpp"
#include "tokenizer/loaders.hpp"
#include "tokenizer/tokenizer_impl.hpp"
#include "unicode/unicode.hpp"

namespace piquant {

void Tokenizer::Impl::finish(const std::string& source) {
  const size_t n = pieces.size();
  auto fail = [&](const std::string& m) { throw Error(ErrorCode::kFormat, source + ": " + m); };
  if (n == 0) fail("the vocabulary is empty");
  if (n > static_cast<size_t>(INT32_MAX)) fail("the vocabulary is too large");
  if (kinds.size() != n) fail("token kinds count " + std::to_string(kinds.size()) +
                              " differs from the vocabulary size " + std::to_string(n));
  if (!scores.empty() && scores.size() != n) {
    fail("scores count " + std::to_string(scores.size()) + " differs from the vocabulary size " +
         std::to_string(n));
  }
  auto check = [&](TokenId id, const char* what) {
    if (id < -1 || id >= static_cast<TokenId>(n)) {
      fail(std::string(what) + " id " + std::to_string(id) + " is outside the vocabulary (0.." +
           std::to_string(n - 1) + ")");
    }
  };
  check(bos, "BOS");
  check(eos, "EOS");
  check(unk, "unknown-token");
  for (TokenId e : end_of_generation) check(e, "end-of-generation");
  end_of_generation.erase(std::remove(end_of_generation.begin(), end_of_generation.end(), -1),
                          end_of_generation.end());
  piece_index.build(&pieces, [&](size_t i) {
    return !pieces[i].empty() || kinds[i] != TokenKind::kUnused;
  });
  for (auto& v : special_by_byte_) v.clear();
  std::vector<TokenId> special;
  for (size_t i = 0; i < n; ++i) {
    if ((kinds[i] == TokenKind::kControl || kinds[i] == TokenKind::kUserDefined) &&
        !pieces[i].empty()) {
      special.push_back(static_cast<TokenId>(i));
    }
  }
  // Longest first, so "<|a|>x" beats its prefix "<|a|>".
  std::stable_sort(special.begin(), special.end(), [&](TokenId a, TokenId b) {
    return pieces[a].size() > pieces[b].size();
  });
  for (TokenId id : special) {
    special_by_byte_[static_cast<unsigned char>(pieces[id][0])].push_back(id);
  }
}

std::vector<TokenId> Tokenizer::Impl::encode_text(std::string_view text, bool parse_special) const {
  std::vector<TokenId> out;
  size_t seg = 0;
  bool at_start = true;
  for (size_t i = 0; i < text.size();) {
    const auto& cands = special_by_byte_[static_cast<unsigned char>(text[i])];
    TokenId hit = -1;
    for (TokenId id : cands) {
      if (!parse_special && kinds[id] == TokenKind::kControl) continue;
      const std::string& p = pieces[id];
      if (text.compare(i, p.size(), p) == 0) {
        hit = id;
        break;
      }
    }
    if (hit < 0) {
      ++i;
      continue;
    }
    if (i > seg) encode_segment(text.substr(seg, i - seg), at_start, out);
    out.push_back(hit);
    i += pieces[hit].size();
    seg = i;
    // After a control token the text starts afresh (SentencePiece's dummy prefix again, as
    // llama.cpp does); a user-defined piece sits inside the text, as in sentencepiece.
    at_start = kinds[hit] == TokenKind::kControl;
  }
  if (seg < text.size()) encode_segment(text.substr(seg), at_start, out);
  return out;
}

void Tokenizer::Impl::check_id(TokenId id) const {
  if (id < 0 || static_cast<size_t>(id) >= pieces.size()) {
    throw Error(ErrorCode::kOutOfRange, "token id " + std::to_string(id) +
                                            " is outside the vocabulary (0.." +
                                            std::to_string(pieces.size() - 1) + ")");
  }
}

int parse_byte_piece(std::string_view p) {
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else return -1;
  }
  return v;
}

// --- public API --------------------------------------------------------------------------------

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::load(const std::string& path) { return Tokenizer(load_tokenizer_file(path)); }

std::vector<TokenId> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<TokenId> ids;
  const bool bos = options.add_bos.value_or(impl_->add_bos_default);
  if (bos && impl_->bos >= 0) ids.push_back(impl_->bos);
  std::vector<TokenId> body = impl_->encode_text(text, options.parse_special);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

std::string Tokenizer::token_bytes(TokenId id, TokenId prev, const DecodeOptions& options) const {
  impl_->check_id(id);
  if (prev >= static_cast<TokenId>(impl_->pieces.size())) prev = -1;
  const TokenKind k = impl_->kinds[id];
  if (k == TokenKind::kControl || k == TokenKind::kUnused) {
    return options.show_special ? impl_->pieces[id] : std::string();
  }
  return impl_->token_bytes(id, prev);
}

std::string Tokenizer::decode(const std::vector<TokenId>& ids, const DecodeOptions& options) const {
  std::string out;
  TokenId prev = -1;
  for (TokenId id : ids) {
    out += token_bytes(id, prev, options);
    prev = id;
  }
  return out;
}

const std::string& Tokenizer::piece(TokenId id) const {
  impl_->check_id(id);
  return impl_->pieces[id];
}

TokenKind Tokenizer::kind(TokenId id) const {
  impl_->check_id(id);
  return impl_->kinds[id];
}

TokenId Tokenizer::find(std::string_view piece) const { return impl_->find_piece(piece); }

size_t Tokenizer::vocab_size() const { return impl_->pieces.size(); }
TokenId Tokenizer::bos_id() const { return impl_->bos; }
TokenId Tokenizer::eos_id() const { return impl_->eos; }
std::string Tokenizer::kind_name() const { return impl_->name; }

bool Tokenizer::is_end_of_generation(TokenId id) const {
  return std::find(impl_->end_of_generation.begin(), impl_->end_of_generation.end(), id) !=
         impl_->end_of_generation.end();
}

// --- TokenStream -------------------------------------------------------------------------------

TokenStream::TokenStream(Tokenizer tokenizer, DecodeOptions options)
    : tokenizer_(std::move(tokenizer)), options_(options) {}

std::string TokenStream::push(TokenId id) {
  pending_ += tokenizer_.token_bytes(id, prev_, options_);
  prev_ = id;
  // Emit everything up to the last complete UTF-8 character; keep an unfinished tail.
  const size_t cut = unicode::complete_utf8_prefix(pending_);
  std::string out = pending_.substr(0, cut);
  pending_.erase(0, cut);
  return out;
}

std::string TokenStream::flush() {
  std::string out;
  if (!pending_.empty()) out = "\xEF\xBF\xBD";  // U+FFFD for a sequence that never completed
  pending_.clear();
  return out;
}

}  // namespace piquant
