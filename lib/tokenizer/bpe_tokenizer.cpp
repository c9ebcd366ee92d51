// Byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM2): pre-tokenize, then merge each chunk's bytes.
// Two merge rules: a merge list in rank order (HF tokenizer.json, merges.txt, GGUF), or the
// tiktoken rule (no list: any adjacent pair whose concatenation is a token merges, the token
// with the lowest rank = id first). Ties go to the leftmost pair in both.
#include <cstdint>
#include <cstdio>

#include "piquant/error.hpp"
#include "tokenizer/bpe_merge.hpp"
#include "tokenizer/tokenizer_impl.hpp"
#include "unicode/unicode.hpp"

namespace piquant {

const std::array<char32_t, 256>& byte_to_unicode() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      t[static_cast<size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

std::string bytes_to_bpe_piece(std::string_view bytes) {
  const auto& map = byte_to_unicode();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) unicode::append_utf8(out, map[c]);
  return out;
}

std::string bpe_piece_to_bytes(std::string_view piece, bool* ok) {
  // Inverse map: code points 0..323 cover the table's range.
  static const std::array<int16_t, 324> inverse = [] {
    std::array<int16_t, 324> inv{};
    inv.fill(-1);
    const auto& map = byte_to_unicode();
    for (int b = 0; b < 256; ++b) inv[map[static_cast<size_t>(b)]] = static_cast<int16_t>(b);
    return inv;
  }();
  std::string out;
  out.reserve(piece.size());
  if (ok) *ok = true;
  for (size_t i = 0; i < piece.size();) {
    char32_t cp;
    const size_t len = unicode::decode_utf8(piece, i, &cp);
    if (cp < inverse.size() && inverse[cp] >= 0) {
      out += static_cast<char>(inverse[cp]);
    } else {
      out.append(piece.substr(i, len));  // not in the map: keep as written
      if (ok) *ok = false;
    }
    i += len;
  }
  return out;
}

void ByteLevelImpl::finish(const std::string& source) {
  Impl::finish(source);
  bytes.assign(pieces.size(), std::string());
  for (size_t i = 0; i < pieces.size(); ++i) {
    bytes[i] = kinds[i] == TokenKind::kNormal ? bpe_piece_to_bytes(pieces[i]) : pieces[i];
  }
  bytes_index_.build(&bytes, [&](size_t i) { return kinds[i] == TokenKind::kNormal; });
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    byte_ids_[static_cast<size_t>(b)] = bytes_index_.find(std::string_view(&c, 1));
    if (byte_ids_[static_cast<size_t>(b)] < 0) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "0x%02X", b);
      throw Error(ErrorCode::kFormat, source + ": byte-level vocabulary has no token for byte " +
                                          hex + " (piece '" +
                                          bytes_to_bpe_piece(std::string_view(&c, 1)) + "')");
    }
  }
  pairs_ = PairTable();
  if (!merges.empty()) {
    pairs_.reserve(merges.size());
    const auto n = static_cast<TokenId>(pieces.size());
    // A pair's priority is the rank of the first merge that makes its token. Lists with one merge
    // per token (GPT-2, HF, llama.cpp) are unchanged by this; a list holding every split of every
    // token (made from tiktoken ranks, tokenizer_to_gguf) then merges exactly as tiktoken does:
    // the lowest-ranked token first, ties to the leftmost pair whichever split forms it.
    std::vector<uint32_t> first_rank(pieces.size(), UINT32_MAX);
    for (size_t r = 0; r < merges.size(); ++r) {
      const TokenId a = merges[r].first, b = merges[r].second;
      if (a < 0 || b < 0 || a >= n || b >= n) {
        throw Error(ErrorCode::kFormat, source + ": merge " + std::to_string(r) +
                                            " names a token outside the vocabulary");
      }
      const TokenId m = bytes_index_.find(bytes[a] + bytes[b]);
      if (m < 0) {
        throw Error(ErrorCode::kFormat, source + ": merge " + std::to_string(r) + " ('" +
                                            pieces[a] + "' '" + pieces[b] +
                                            "') yields a token that is not in the vocabulary");
      }
      uint32_t& fr = first_rank[static_cast<size_t>(m)];
      if (fr == UINT32_MAX) fr = static_cast<uint32_t>(r);
      pairs_.insert(a, b, fr, m);
    }
  }
}

void ByteLevelImpl::encode_segment(std::string_view text, bool at_start,
                                   std::vector<TokenId>& out) const {
  std::string prefixed;
  if (add_prefix_space && at_start && !text.empty() && text[0] != ' ') {
    prefixed = " ";
    prefixed += text;
    text = prefixed;
  }
  std::vector<std::pair<size_t, size_t>> chunks;
  pretokenize(pre, text, chunks);
  for (const auto& c : chunks) encode_chunk(text.substr(c.first, c.second - c.first), out);
}

void ByteLevelImpl::encode_chunk(std::string_view chunk, std::vector<TokenId>& out) const {
  if (chunk.size() == 1) {
    out.push_back(byte_ids_[static_cast<unsigned char>(chunk[0])]);
    return;
  }
  if (ignore_merges || merges.empty()) {
    const TokenId whole = bytes_index_.find(chunk);
    if (whole >= 0) {
      out.push_back(whole);
      return;
    }
  }
  std::vector<MergeSymbol> syms(chunk.size());
  for (size_t i = 0; i < chunk.size(); ++i) {
    syms[i] = {static_cast<uint32_t>(i), 1, byte_ids_[static_cast<unsigned char>(chunk[i])]};
  }
  if (merges.empty()) {
    bpe_merge(syms, [&](const MergeSymbol& l, const MergeSymbol& r, double* pr, int32_t* merged) {
      const TokenId id = bytes_index_.find(chunk.substr(l.start, l.len + r.len));
      if (id < 0) return false;
      *pr = id;
      *merged = id;
      return true;
    });
  } else {
    bpe_merge(syms, [&](const MergeSymbol& l, const MergeSymbol& r, double* pr, int32_t* merged) {
      uint32_t rank;
      if (!pairs_.find(l.id, r.id, &rank, merged)) return false;
      *pr = rank;
      return true;
    });
  }
  for (const MergeSymbol& s : syms) out.push_back(s.id);
}

}  // namespace piquant
