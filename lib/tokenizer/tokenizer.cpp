#include <cstring>

#include "format/mapped_file.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace piquant {

void Tokenizer::Impl::index_pieces() {
  piece_to_id.clear();
  piece_to_id.reserve(pieces.size());
  for (size_t i = 0; i < pieces.size(); ++i) piece_to_id.emplace(pieces[i], static_cast<TokenId>(i));
}

void Tokenizer::Impl::check_id(TokenId id) const {
  if (id < 0 || static_cast<size_t>(id) >= pieces.size()) {
    throw Error(ErrorCode::kOutOfRange, "token id " + std::to_string(id) +
                                            " is outside the vocabulary (0.." +
                                            std::to_string(pieces.size()) + ")");
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

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::load(const std::string& path) {
  return Tokenizer(load_llama2c_tokenizer(path));
}

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

TokenId Tokenizer::find(std::string_view piece) const {
  auto it = impl_->piece_to_id.find(std::string(piece));
  return it == impl_->piece_to_id.end() ? -1 : it->second;
}

size_t Tokenizer::vocab_size() const { return impl_->pieces.size(); }
TokenId Tokenizer::bos_id() const { return impl_->bos; }
TokenId Tokenizer::eos_id() const { return impl_->eos; }
std::string Tokenizer::kind_name() const { return impl_->name(); }

bool Tokenizer::is_end_of_generation(TokenId id) const {
  for (TokenId e : impl_->end_of_generation) {
    if (e == id) return true;
  }
  return false;
}

// --- TokenStream -----------------------------------------------------------------------------

TokenStream::TokenStream(Tokenizer tokenizer, DecodeOptions options)
    : tokenizer_(std::move(tokenizer)), options_(options) {}

std::string TokenStream::push(TokenId id) {
  pending_ += tokenizer_.token_bytes(id, prev_, options_);
  prev_ = id;
  // Emit everything up to the last complete UTF-8 character; keep an unfinished tail.
  size_t cut = pending_.size();
  for (size_t back = 1; back <= 4 && back <= pending_.size(); ++back) {
    const unsigned char c = static_cast<unsigned char>(pending_[pending_.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    const int need = utf8_len(c);
    if (c >= 0x80 && (c & 0xC0) == 0xC0 && need > static_cast<int>(back)) {
      cut = pending_.size() - back;  // lead byte whose sequence is not complete yet
    }
    break;
  }
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
