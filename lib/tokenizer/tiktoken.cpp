// tiktoken rank files (cl100k_base.tiktoken, Llama 3's tokenizer.model): one "<base64 bytes>
// <rank>" line per token. The file carries no regex and no special tokens; they are supplied
// here from the vocabulary size: 100256 ranks are cl100k_base, 128000 are Llama 3.
#include "piquant/error.hpp"
#include "tokenizer/loaders.hpp"

namespace piquant {
namespace {

int b64(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Decodes standard base64 (with '=' padding); false on bad input.
bool base64_decode(std::string_view s, std::string* out) {
  out->clear();
  if (s.empty() || s.size() % 4 != 0) return false;
  for (size_t i = 0; i < s.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if (c == '=' && i + 4 == s.size() && k >= 2) {
        v[k] = 0;
        ++pad;
      } else {
        if (pad) return false;
        v[k] = b64(c);
        if (v[k] < 0) return false;
      }
    }
    const uint32_t x = (static_cast<uint32_t>(v[0]) << 18) | (static_cast<uint32_t>(v[1]) << 12) |
                       (static_cast<uint32_t>(v[2]) << 6) | static_cast<uint32_t>(v[3]);
    out->push_back(static_cast<char>(x >> 16));
    if (pad < 2) out->push_back(static_cast<char>((x >> 8) & 0xFF));
    if (pad < 1) out->push_back(static_cast<char>(x & 0xFF));
  }
  return true;
}

void add_special(ByteLevelImpl& t, TokenId id, const std::string& text) {
  const size_t need = static_cast<size_t>(id) + 1;
  if (t.pieces.size() < need) {
    t.pieces.resize(need);
    t.kinds.resize(need, TokenKind::kUnused);
  }
  t.pieces[static_cast<size_t>(id)] = text;
  t.kinds[static_cast<size_t>(id)] = TokenKind::kControl;
}

}  // namespace

bool looks_like_tiktoken(std::string_view bytes) {
  const size_t nl = bytes.find('\n');
  const std::string_view line = bytes.substr(0, nl);
  const size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 0 || sp + 1 >= line.size()) return false;
  for (size_t i = 0; i < sp; ++i) {
    if (b64(static_cast<unsigned char>(line[i])) < 0 && line[i] != '=') return false;
  }
  for (size_t i = sp + 1; i < line.size(); ++i) {
    if ((line[i] < '0' || line[i] > '9') && line[i] != '\r') return false;
  }
  return true;
}

std::shared_ptr<const Tokenizer::Impl> parse_tiktoken(std::string_view text,
                                                      const std::string& source) {
  auto t = std::make_shared<ByteLevelImpl>();
  t->name = "bpe-bytelevel";
  t->pre = PreTokenizer::kLlama3;
  size_t line_no = 0;
  std::string tok;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    auto fail = [&](const std::string& m) {
      throw Error(ErrorCode::kFormat, source + ": tiktoken line " + std::to_string(line_no) +
                                          ": " + m);
    };
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos) fail("expected '<base64> <rank>'");
    if (!base64_decode(line.substr(0, sp), &tok) || tok.empty()) fail("invalid base64 token");
    const std::string_view num = line.substr(sp + 1);
    if (num.empty() || num.size() > 9) fail("invalid rank");
    uint32_t rank = 0;
    for (char c : num) {
      if (c < '0' || c > '9') fail("invalid rank '" + std::string(num) + "'");
      rank = rank * 10 + static_cast<uint32_t>(c - '0');
    }
    if (rank > kMaxTokenId) {
      fail("rank " + std::to_string(rank) + " is implausibly large (> " +
           std::to_string(kMaxTokenId) + ")");
    }
    if (rank >= t->pieces.size()) {
      t->pieces.resize(rank + 1);
      t->kinds.resize(rank + 1, TokenKind::kUnused);
    }
    if (t->kinds[rank] != TokenKind::kUnused) fail("rank " + std::to_string(rank) + " repeats");
    t->pieces[rank] = bytes_to_bpe_piece(tok);
    t->kinds[rank] = TokenKind::kNormal;
  }
  if (t->pieces.empty()) throw Error(ErrorCode::kFormat, source + ": tiktoken file has no ranks");
  const size_t n = t->pieces.size();
  if (n == 100256) {  // cl100k_base
    add_special(*t, 100257, "<|endoftext|>");
    add_special(*t, 100258, "<|fim_prefix|>");
    add_special(*t, 100259, "<|fim_middle|>");
    add_special(*t, 100260, "<|fim_suffix|>");
    add_special(*t, 100276, "<|endofprompt|>");
    t->eos = 100257;
    t->end_of_generation = {100257};
  } else if (n == 128000) {  // Llama 3 / 3.1 / 3.2 (the 3.1 names; the ids are the same)
    const char* named[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                           "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
                           "<|reserved_special_token_2|>", "<|start_header_id|>",
                           "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"};
    TokenId id = 128000;
    for (const char* s : named) add_special(*t, id++, s);
    for (int r = 3; id < 128256; ++r) {
      add_special(*t, id++, "<|reserved_special_token_" + std::to_string(r) + "|>");
    }
    t->bos = 128000;
    t->eos = 128001;
    t->end_of_generation = {128001, 128009, 128008};  // end_of_text, eot, eom
    t->add_bos_default = true;
  }
  t->ignore_merges = true;
  t->finish(source);
  return t;
}

}  // namespace piquant
