#include "tokenizer/tokenizer_gguf.hpp"

#include <cmath>
#include <limits>
#include <unordered_map>

#include "piquant/error.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace piquant {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";

TokenKind kind_from_gguf(int64_t t) {
  switch (t) {
    case 2: return TokenKind::kUnknown;
    case 3: return TokenKind::kControl;
    case 4: return TokenKind::kUserDefined;
    case 5: return TokenKind::kUnused;
    case 6: return TokenKind::kByte;
    default: return TokenKind::kNormal;
  }
}

int32_t kind_to_gguf(TokenKind k) {
  switch (k) {
    case TokenKind::kNormal: return 1;
    case TokenKind::kUnknown: return 2;
    case TokenKind::kControl: return 3;
    case TokenKind::kUserDefined: return 4;
    case TokenKind::kUnused: return 5;
    case TokenKind::kByte: return 6;
  }
  return 1;
}

const char* gguf_pre_name(PreTokenizer p) {
  switch (p) {
    case PreTokenizer::kGpt2: return "gpt-2";
    case PreTokenizer::kLlama3: return "llama-bpe";
    case PreTokenizer::kQwen2: return "qwen2";
    case PreTokenizer::kSmolLM: return "smollm";
  }
  return "default";
}

}  // namespace

Tokenizer tokenizer_from_gguf(const GgufFile& f) {
  const std::string& src = f.source();
  const std::string model = f.get_string("tokenizer.ggml.model", "");
  if (model.empty()) {
    throw Error(ErrorCode::kFormat, src + ": no tokenizer in this GGUF (missing metadata key "
                                          "tokenizer.ggml.model)");
  }
  if (model != "llama" && model != "gpt2") {
    throw Error(ErrorCode::kUnsupported, src + ": GGUF tokenizer model '" + model +
                                             "' is not supported (llama, gpt2 are)");
  }
  const auto tokens = f.get("tokenizer.ggml.tokens").to_strings(src + ": tokenizer.ggml.tokens");
  const size_t n = tokens.size();
  std::vector<int64_t> types;
  if (const GgufValue* v = f.find("tokenizer.ggml.token_type")) {
    types = v->to_ints(src + ": tokenizer.ggml.token_type");
    if (types.size() != n) {
      throw Error(ErrorCode::kFormat, src + ": tokenizer.ggml.token_type has " +
                                          std::to_string(types.size()) + " entries for " +
                                          std::to_string(n) + " tokens");
    }
  }
  auto id_key = [&](const char* key, int64_t fallback) -> TokenId {
    const GgufValue* v = f.find(key);
    if (v == nullptr) return static_cast<TokenId>(fallback);
    const int64_t id = v->to_int(src + ": " + key);
    if (id < 0 || id >= static_cast<int64_t>(n)) {
      throw Error(ErrorCode::kFormat, src + ": " + key + " = " + std::to_string(id) +
                                          " is outside the vocabulary of " + std::to_string(n));
    }
    return static_cast<TokenId>(id);
  };
  auto fill = [&](Tokenizer::Impl& t, bool spm) {
    t.pieces.reserve(n);
    for (auto s : tokens) t.pieces.emplace_back(s);
    t.kinds.resize(n, TokenKind::kNormal);
    for (size_t i = 0; i < n; ++i) {
      if (!types.empty()) t.kinds[i] = kind_from_gguf(types[i]);
      else if (spm && parse_byte_piece(t.pieces[i]) >= 0) t.kinds[i] = TokenKind::kByte;
    }
    t.bos = id_key("tokenizer.ggml.bos_token_id", spm ? 1 : -1);
    t.eos = id_key("tokenizer.ggml.eos_token_id", spm ? 2 : -1);
    t.unk = id_key("tokenizer.ggml.unknown_token_id", spm ? 0 : -1);
    if (t.bos >= static_cast<TokenId>(n)) t.bos = -1;
    if (t.eos >= static_cast<TokenId>(n)) t.eos = -1;
    if (t.unk >= static_cast<TokenId>(n)) t.unk = -1;
    t.end_of_generation = {t.eos, id_key("tokenizer.ggml.eot_token_id", -1),
                           id_key("tokenizer.ggml.eom_token_id", -1)};
    t.add_bos_default = f.get_bool("tokenizer.ggml.add_bos_token", spm);
  };
  if (model == "llama") {
    auto t = std::make_shared<SentencePieceImpl>();
    t->name = "sentencepiece";
    fill(*t, true);
    if (const GgufValue* v = f.find("tokenizer.ggml.scores")) {
      t->scores = v->to_floats(src + ": tokenizer.ggml.scores");
      if (t->scores.size() != n) {
        throw Error(ErrorCode::kFormat, src + ": tokenizer.ggml.scores has " +
                                            std::to_string(t->scores.size()) + " entries for " +
                                            std::to_string(n) + " tokens");
      }
      for (float& s : t->scores) {
        if (std::isnan(s)) s = -std::numeric_limits<float>::infinity();
      }
    }
    t->add_dummy_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", true);
    t->remove_extra_whitespaces = f.get_bool("tokenizer.ggml.remove_extra_whitespaces", false);
    t->byte_fallback = true;
    t->finish(src);
    return Tokenizer(t);
  }
  auto t = std::make_shared<ByteLevelImpl>();
  t->name = "bpe-bytelevel";
  fill(*t, false);
  t->pre = pretokenizer_from_name(f.get_string("tokenizer.ggml.pre", "default"));
  t->ignore_merges = t->pre == PreTokenizer::kLlama3;
  if (const GgufValue* v = f.find("tokenizer.ggml.merges")) {
    const auto merges = v->to_strings(src + ": tokenizer.ggml.merges");
    std::unordered_map<std::string_view, TokenId> ids;
    ids.reserve(n);
    for (size_t i = 0; i < n; ++i) ids.emplace(tokens[i], static_cast<TokenId>(i));
    t->merges.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
      const std::string_view m = merges[r];
      const size_t sp = m.find(' ', 1);
      const auto ia = sp == std::string_view::npos ? ids.end() : ids.find(m.substr(0, sp));
      const auto ib = sp == std::string_view::npos ? ids.end() : ids.find(m.substr(sp + 1));
      if (ia == ids.end() || ib == ids.end()) {
        throw Error(ErrorCode::kFormat, src + ": tokenizer.ggml.merges[" + std::to_string(r) +
                                            "] '" + std::string(m.substr(0, 100)) +
                                            "' names a token not in the vocabulary");
      }
      t->merges.emplace_back(ia->second, ib->second);
    }
  }
  t->finish(src);
  return Tokenizer(t);
}

void tokenizer_to_gguf(const Tokenizer& tokenizer, GgufWriter& w) {
  const Tokenizer::Impl& t = tokenizer.impl();
  const auto* spm = dynamic_cast<const SentencePieceImpl*>(&t);
  const auto* bpe = dynamic_cast<const ByteLevelImpl*>(&t);
  std::vector<std::string> pieces = t.pieces;
  std::vector<int32_t> types;
  for (TokenKind k : t.kinds) types.push_back(kind_to_gguf(k));
  if (spm) {
    w.add("tokenizer.ggml.model", GgufWriteValue::string("llama"));
    if (spm->llama2c_spaces) {  // GGUF pieces use U+2581 for spaces
      for (size_t i = 0; i < pieces.size(); ++i) {
        if (t.kinds[i] != TokenKind::kNormal && t.kinds[i] != TokenKind::kUserDefined) continue;
        std::string out;
        for (char c : pieces[i]) c == ' ' ? void(out += kSpaceMark) : void(out += c);
        pieces[i] = out;
      }
    }
    w.add("tokenizer.ggml.tokens", GgufWriteValue::strings(pieces));
    w.add("tokenizer.ggml.scores", GgufWriteValue::floats(t.scores));
    w.add("tokenizer.ggml.token_type", GgufWriteValue::int32s(types));
    w.add("tokenizer.ggml.add_space_prefix", GgufWriteValue::boolean(spm->add_dummy_prefix));
    w.add("tokenizer.ggml.remove_extra_whitespaces",
          GgufWriteValue::boolean(spm->remove_extra_whitespaces));
  } else if (bpe) {
    w.add("tokenizer.ggml.model", GgufWriteValue::string("gpt2"));
    w.add("tokenizer.ggml.pre", GgufWriteValue::string(gguf_pre_name(bpe->pre)));
    w.add("tokenizer.ggml.tokens", GgufWriteValue::strings(pieces));
    w.add("tokenizer.ggml.token_type", GgufWriteValue::int32s(types));
    std::vector<std::string> merges;
    if (!bpe->merges.empty()) {
      for (const auto& m : bpe->merges) merges.push_back(pieces[m.first] + " " + pieces[m.second]);
    } else {
      // tiktoken ranks: every split of a token into two tokens, in the order of the token's rank
      // (the reader gives all splits of one token the same priority: tiktoken's rule exactly).
      // Each byte is one code point of the piece, so splitting the piece at code point
      // boundaries splits its bytes.
      for (size_t i = 0; i < pieces.size(); ++i) {
        if (t.kinds[i] != TokenKind::kNormal) continue;
        const std::string_view p = pieces[i];
        for (size_t k = 1; k < p.size(); ++k) {
          if ((static_cast<unsigned char>(p[k]) & 0xC0) == 0x80) continue;  // mid code point
          const TokenId l = t.find_piece(p.substr(0, k));
          const TokenId r = t.find_piece(p.substr(k));
          if (l >= 0 && r >= 0 && t.kinds[l] == TokenKind::kNormal &&
              t.kinds[r] == TokenKind::kNormal) {
            std::string m;
            m.reserve(p.size() + 1);
            m.append(p.substr(0, k)).append(" ").append(p.substr(k));
            merges.push_back(std::move(m));
          }
        }
      }
    }
    w.add("tokenizer.ggml.merges", GgufWriteValue::strings(merges));
  } else {
    throw Error(ErrorCode::kInternal, "tokenizer_to_gguf: unknown tokenizer kind " + t.name);
  }
  if (t.bos >= 0) w.add("tokenizer.ggml.bos_token_id", GgufWriteValue::u32(static_cast<uint32_t>(t.bos)));
  if (t.eos >= 0) w.add("tokenizer.ggml.eos_token_id", GgufWriteValue::u32(static_cast<uint32_t>(t.eos)));
  if (t.unk >= 0) w.add("tokenizer.ggml.unknown_token_id", GgufWriteValue::u32(static_cast<uint32_t>(t.unk)));
  const char* eog_keys[] = {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"};
  size_t k = 0;
  for (TokenId e : t.end_of_generation) {
    if (e != t.eos && k < 2) w.add(eog_keys[k++], GgufWriteValue::u32(static_cast<uint32_t>(e)));
  }
  w.add("tokenizer.ggml.add_bos_token", GgufWriteValue::boolean(t.add_bos_default));
}

}  // namespace piquant
