// llama2.c's tokenizer.bin: int32 max_token_length, then per token: float32 score, int32 length,
// `length` bytes. Pieces hold real spaces (SentencePiece's U+2581 already replaced); ids 0, 1, 2
// are <unk>, BOS and EOS; "<0xNN>" pieces are byte fallbacks. Encoding is SentencePiece-style
// BPE: start from code points (bytes for unknown ones), merge the best-scoring adjacent pair
// until none is in the vocabulary.
#include <queue>

#include "format/mapped_file.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace piquant {
namespace {

class Llama2cTokenizer final : public Tokenizer::Impl {
 public:
  std::vector<TokenId> byte_ids = std::vector<TokenId>(256, -1);
  TokenId space_id = -1;  // the dummy prefix

  void finish() {
    index_pieces();
    kinds.assign(pieces.size(), TokenKind::kNormal);
    for (size_t i = 0; i < pieces.size(); ++i) {
      const int b = parse_byte_piece(pieces[i]);
      if (b >= 0) {
        kinds[i] = TokenKind::kByte;
        if (byte_ids[b] < 0) byte_ids[b] = static_cast<TokenId>(i);
      }
    }
    if (!pieces.empty()) kinds[0] = TokenKind::kUnknown;
    if (pieces.size() > 1) bos = 1, kinds[1] = TokenKind::kControl;
    if (pieces.size() > 2) eos = 2, kinds[2] = TokenKind::kControl;
    end_of_generation = {eos};
    add_bos_default = true;
    auto it = piece_to_id.find(" ");
    space_id = it == piece_to_id.end() ? -1 : it->second;
  }

  std::vector<TokenId> encode_text(std::string_view text, bool /*parse_special*/) const override {
    std::vector<TokenId> ids;
    if (text.empty()) return ids;
    if (space_id >= 0) ids.push_back(space_id);
    for (size_t i = 0; i < text.size();) {
      size_t n = static_cast<size_t>(utf8_len(static_cast<unsigned char>(text[i])));
      if (i + n > text.size()) n = 1;
      auto it = piece_to_id.find(std::string(text.substr(i, n)));
      if (it != piece_to_id.end()) {
        ids.push_back(it->second);
      } else {
        for (size_t j = 0; j < n; ++j) {
          const TokenId b = byte_ids[static_cast<unsigned char>(text[i + j])];
          ids.push_back(b >= 0 ? b : 0);  // <unk> when the vocabulary lacks byte fallback
        }
      }
      i += n;
    }
    merge(ids);
    return ids;
  }

  std::string token_bytes(TokenId id, TokenId prev) const override {
    const std::string& p = pieces[id];
    if (kinds[id] == TokenKind::kByte) return std::string(1, static_cast<char>(parse_byte_piece(p)));
    if (prev == bos && !p.empty() && p[0] == ' ') return p.substr(1);
    return p;
  }

  std::string name() const override { return "llama2c"; }

 private:
  // Best-first merging with a priority queue over adjacent pairs and a linked list of symbols,
  // so long texts stay near-linear (stale queue entries are skipped when popped).
  void merge(std::vector<TokenId>& ids) const {
    const size_t n = ids.size();
    if (n < 2) return;
    std::vector<int> prev(n), next(n);
    std::vector<std::string> text(n);
    std::vector<bool> alive(n, true);
    for (size_t i = 0; i < n; ++i) {
      prev[i] = static_cast<int>(i) - 1;
      next[i] = i + 1 < n ? static_cast<int>(i + 1) : -1;
      text[i] = pieces[ids[i]];
    }
    struct Cand {
      float score;
      int left, right;
      size_t len_l, len_r;
      bool operator<(const Cand& o) const {  // max-heap on score, then leftmost first
        return score < o.score || (score == o.score && left > o.left);
      }
    };
    std::priority_queue<Cand> q;
    auto push = [&](int l) {
      const int r = next[l];
      if (l < 0 || r < 0) return;
      auto it = piece_to_id.find(text[l] + text[r]);
      if (it == piece_to_id.end()) return;
      q.push({scores[it->second], l, r, text[l].size(), text[r].size()});
    };
    for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int>(i));
    while (!q.empty()) {
      const Cand c = q.top();
      q.pop();
      if (!alive[c.left] || !alive[c.right] || next[c.left] != c.right ||
          text[c.left].size() != c.len_l || text[c.right].size() != c.len_r) {
        continue;  // stale: one side was merged since this pair was queued
      }
      text[c.left] += text[c.right];
      ids[c.left] = piece_to_id.at(text[c.left]);
      alive[c.right] = false;
      next[c.left] = next[c.right];
      if (next[c.left] >= 0) prev[next[c.left]] = c.left;
      if (prev[c.left] >= 0) push(prev[c.left]);
      push(c.left);
    }
    std::vector<TokenId> out;
    for (int i = 0; i >= 0; i = next[i]) out.push_back(ids[i]);
    ids.swap(out);
  }
};

}  // namespace

std::shared_ptr<const Tokenizer::Impl> load_llama2c_tokenizer(const std::string& path,
                                                              int vocab_size) {
  MappedFile file(path);
  ByteReader r(file.data(), file.size(), path);
  auto t = std::make_shared<Llama2cTokenizer>();
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
  t->finish();
  return t;
}

std::shared_ptr<const Tokenizer::Impl> make_demo_tokenizer(int vocab_size) {
  auto t = std::make_shared<Llama2cTokenizer>();
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
  t->finish();
  for (size_t i = 0; i < t->pieces.size(); ++i) {
    if (t->pieces[i].rfind("<unused", 0) == 0) t->kinds[i] = TokenKind::kUnused;
  }
  return t;
}

}  // namespace piquant
