// Hugging Face files: tokenizer.json (model.type "BPE", byte-level or SentencePiece-style with
// byte_fallback) and GPT-2's vocab.json + merges.txt.
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "piquant/error.hpp"
#include "tokenizer/loaders.hpp"

namespace piquant {
namespace {

using nlohmann::json;

// Optional fields of a given type (a missing or mistyped field gives the fallback).
bool opt_bool(const json& j, const char* key, bool fallback) {
  if (!j.is_object() || !j.contains(key)) return fallback;
  const json& v = j.at(key);
  return v.is_boolean() ? v.get<bool>() : fallback;
}
std::string opt_str(const json& j, const char* key, const char* fallback) {
  if (!j.is_object() || !j.contains(key)) return fallback;
  const json& v = j.at(key);
  return v.is_string() ? v.get<std::string>() : std::string(fallback);
}

[[noreturn]] void fail(const std::string& source, const std::string& m) {
  throw Error(ErrorCode::kFormat, source + ": " + m);
}

json parse_json(std::string_view text, const std::string& source) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail(source, std::string("invalid JSON: ") + e.what());
  }
}

const json& member(const json& j, const char* key, const std::string& where,
                   const std::string& source) {
  if (!j.is_object() || !j.contains(key)) fail(source, where + ": missing field \"" + key + "\"");
  return j[key];
}

// Fills pieces from a {"piece": id} object; holes become unused.
void read_vocab(const json& vocab, Tokenizer::Impl& t, const std::string& source) {
  if (!vocab.is_object()) fail(source, "vocab is not an object of piece -> id");
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) fail(source, "vocab entry '" + it.key() + "' has no integer id");
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > kMaxTokenId) {
      fail(source, "vocab entry '" + it.key() + "' has id " + std::to_string(id) + " out of range");
    }
    const auto i = static_cast<size_t>(id);
    if (i >= t.pieces.size()) {
      t.pieces.resize(i + 1);
      t.kinds.resize(i + 1, TokenKind::kUnused);
    }
    if (t.kinds[i] != TokenKind::kUnused) fail(source, "vocab id " + std::to_string(id) + " repeats");
    t.pieces[i] = it.key();
    t.kinds[i] = TokenKind::kNormal;
  }
}

// Merges as "a b" strings or ["a", "b"] pairs, resolved to ids.
std::vector<std::pair<TokenId, TokenId>> read_merges(
    const json& merges, const std::unordered_map<std::string, TokenId>& ids,
    const std::string& source) {
  if (!merges.is_array()) fail(source, "merges is not an array");
  std::vector<std::pair<TokenId, TokenId>> out;
  out.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const json& m = merges[r];
    std::string a, b;
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) fail(source, "merge " + std::to_string(r) + " '" + s + "' is not 'a b'");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      fail(source, "merge " + std::to_string(r) + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    const auto ia = ids.find(a), ib = ids.find(b);
    if (ia == ids.end() || ib == ids.end()) {
      fail(source, "merge " + std::to_string(r) + " names unknown token '" +
                       (ia == ids.end() ? a : b) + "'");
    }
    out.emplace_back(ia->second, ib->second);
  }
  return out;
}

std::unordered_map<std::string, TokenId> index_of(const Tokenizer::Impl& t) {
  std::unordered_map<std::string, TokenId> m;
  m.reserve(t.pieces.size());
  for (size_t i = 0; i < t.pieces.size(); ++i) {
    if (t.kinds[i] != TokenKind::kUnused) m.emplace(t.pieces[i], static_cast<TokenId>(i));
  }
  return m;
}

// Does any object in j have "type": type?
bool has_type(const json& j, const char* type) {
  if (j.is_object()) {
    if (opt_str(j, "type", "") == type) return true;
    for (const auto& v : j) if (has_type(v, type)) return true;
  } else if (j.is_array()) {
    for (const auto& v : j) if (has_type(v, type)) return true;
  }
  return false;
}

PreTokenizer pre_from_json(const json& pre, const std::string& source, bool* prefix_space) {
  if (!pre.is_object()) fail(source, "byte-level tokenizer.json has no pre_tokenizer");
  const std::string type = opt_str(pre, "type", "");
  if (type == "ByteLevel") {
    *prefix_space = opt_bool(pre, "add_prefix_space", false);
    if (!opt_bool(pre, "use_regex", true)) fail(source, "ByteLevel pre_tokenizer without a regex");
    return PreTokenizer::kGpt2;
  }
  if (type == "Sequence" && pre.contains("pretokenizers") && pre["pretokenizers"].is_array()) {
    bool digits = false;
    for (const json& p : pre["pretokenizers"]) {
      const std::string t = p.is_object() ? opt_str(p, "type", "") : "";
      if (t == "Split" && p.contains("pattern") && p["pattern"].is_object() &&
          p["pattern"].contains("Regex") && p["pattern"]["Regex"].is_string()) {
        const std::string re = p["pattern"]["Regex"].get<std::string>();
        PreTokenizer out;
        if (pretokenizer_from_regex(re, &out)) return out;
        throw Error(ErrorCode::kUnsupported, source + ": pre-tokenizer regex is not one piquant "
                                                      "knows (gpt2, llama3, qwen2): " + re);
      }
      if (t == "Digits" && opt_bool(p, "individual_digits", false)) digits = true;
      if (t == "ByteLevel" && opt_bool(p, "use_regex", true)) {
        *prefix_space = opt_bool(p, "add_prefix_space", false);
        return digits ? PreTokenizer::kSmolLM : PreTokenizer::kGpt2;
      }
    }
  }
  throw Error(ErrorCode::kUnsupported, source + ": pre_tokenizer '" + pre.dump().substr(0, 200) +
                                           "' is not supported");
}

std::string token_name(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"];
  return "";
}

// BOS/EOS/end-of-turn from tokenizer_config.json, the post-processor template, or known names.
void special_ids(Tokenizer::Impl& t, const json& root, const json& config) {
  auto find = [&](const std::string& s) -> TokenId {
    const TokenId id = s.empty() ? -1 : t.find_piece(s);
    return id;
  };
  if (config.is_object()) {
    if (config.contains("bos_token")) t.bos = find(token_name(config["bos_token"]));
    if (config.contains("eos_token")) t.eos = find(token_name(config["eos_token"]));
    if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean()) {
      t.add_bos_default = config["add_bos_token"].get<bool>();
    }
  }
  const json* pp = root.contains("post_processor") ? &root["post_processor"] : nullptr;
  if (pp && pp->is_object() && opt_str(*pp, "type", "") == "TemplateProcessing" &&
      pp->contains("single") && (*pp)["single"].is_array() && !(*pp)["single"].empty()) {
    const json& first = (*pp)["single"][0];
    if (first.is_object() && first.contains("SpecialToken") && first["SpecialToken"].is_object()) {
      const TokenId id = find(opt_str(first["SpecialToken"], "id", ""));
      if (id >= 0) {
        if (t.bos < 0) t.bos = id;
        if (!config.is_object() || !config.contains("add_bos_token")) t.add_bos_default = true;
      }
    }
  }
  if (t.bos < 0) {
    for (const char* s : {"<|begin_of_text|>", "<s>"}) if (t.bos < 0) t.bos = find(s);
  }
  if (t.eos < 0) {
    for (const char* s : {"<|end_of_text|>", "<|endoftext|>", "</s>", "<|im_end|>"}) {
      if (t.eos < 0) t.eos = find(s);
    }
  }
  t.end_of_generation = {t.eos};
  for (const char* s : {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|endoftext|>", "<end_of_turn>"}) {
    const TokenId id = find(s);
    if (id >= 0 && id != t.eos && t.kinds[id] == TokenKind::kControl) t.end_of_generation.push_back(id);
  }
}

void add_tokens(Tokenizer::Impl& t, const json& root, const std::string& source) {
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return;
  const json& added = root["added_tokens"];
  if (!added.is_array()) fail(source, "added_tokens is not an array");
  for (size_t k = 0; k < added.size(); ++k) {
    const json& a = added[k];
    const std::string where = "added_tokens[" + std::to_string(k) + "]";
    const json& jid = member(a, "id", where, source);
    const json& content = member(a, "content", where, source);
    if (!jid.is_number_integer() || !content.is_string()) fail(source, where + ": bad id or content");
    const int64_t id = jid.get<int64_t>();
    if (id < 0 || id > kMaxTokenId) {
      fail(source, where + ": id " + std::to_string(id) + " out of range (0.." +
                       std::to_string(kMaxTokenId) + ")");
    }
    const auto i = static_cast<size_t>(id);
    if (i >= t.pieces.size()) {
      t.pieces.resize(i + 1);
      t.kinds.resize(i + 1, TokenKind::kUnused);
    }
    t.pieces[i] = content.get<std::string>();
    t.kinds[i] = opt_bool(a, "special", false) ? TokenKind::kControl : TokenKind::kUserDefined;
  }
}

}  // namespace

std::shared_ptr<const Tokenizer::Impl> parse_tokenizer_json(std::string_view text,
                                                            std::string_view config_text,
                                                            const std::string& source) {
  const json root = parse_json(text, source);
  const json config = config_text.empty() ? json() : parse_json(config_text, source + " (config)");
  const json& model = member(root, "model", "tokenizer.json", source);
  const std::string type = model.is_object() ? opt_str(model, "type", "BPE") : "";
  if (type != "BPE") {
    throw Error(ErrorCode::kUnsupported, source + ": tokenizer model type '" + type +
                                             "' is not supported (only BPE)");
  }
  const json& vocab = member(model, "vocab", "model", source);
  const json& merges = member(model, "merges", "model", source);
  const json pre = root.contains("pre_tokenizer") ? root["pre_tokenizer"] : json();
  const json norm = root.contains("normalizer") ? root["normalizer"] : json();
  const bool byte_level = has_type(pre, "ByteLevel") ||
                          (root.contains("decoder") && has_type(root["decoder"], "ByteLevel"));
  const bool byte_fallback = model.is_object() && opt_bool(model, "byte_fallback", false);
  const bool metaspace = has_type(pre, "Metaspace");
  const bool prepend = has_type(norm, "Prepend");

  if (byte_level) {
    auto t = std::make_shared<ByteLevelImpl>();
    t->name = "bpe-bytelevel";
    read_vocab(vocab, *t, source);
    const auto ids = index_of(*t);
    t->merges = read_merges(merges, ids, source);
    t->ignore_merges = opt_bool(model, "ignore_merges", false);
    t->pre = pre_from_json(pre, source, &t->add_prefix_space);
    add_tokens(*t, root, source);
    t->finish(source);  // builds the piece index special_ids uses
    special_ids(*t, root, config);
    t->finish(source);
    return t;
  }
  if (byte_fallback || metaspace || prepend) {
    // SentencePiece-style BPE. Scores come from the merge ranks: a piece made by merge r scores
    // -r, so the score order is the merge order; pieces no merge makes never merge into.
    auto t = std::make_shared<SentencePieceImpl>();
    t->name = "sentencepiece";
    read_vocab(vocab, *t, source);
    const auto ids = index_of(*t);
    const auto pairs = read_merges(merges, ids, source);
    t->scores.assign(t->pieces.size(), -std::numeric_limits<float>::infinity());
    for (size_t r = 0; r < pairs.size(); ++r) {
      const std::string joined = t->pieces[pairs[r].first] + t->pieces[pairs[r].second];
      const auto it = ids.find(joined);
      if (it == ids.end()) {
        fail(source, "merge " + std::to_string(r) + " yields '" + joined + "', not in the vocab");
      }
      float& s = t->scores[it->second];
      if (std::isinf(s)) s = -static_cast<float>(r);
    }
    t->byte_fallback = byte_fallback;
    for (size_t i = 0; i < t->pieces.size(); ++i) {
      if (byte_fallback && t->kinds[i] == TokenKind::kNormal && parse_byte_piece(t->pieces[i]) >= 0) {
        t->kinds[i] = TokenKind::kByte;
      }
    }
    if (metaspace) {
      // Metaspace(prepend_scheme: first|always|never, or legacy add_prefix_space).
      const std::string scheme = pre.is_object() ? opt_str(pre, "prepend_scheme", "") : "";
      t->add_dummy_prefix = scheme.empty() ? (pre.is_object() && opt_bool(pre, "add_prefix_space", true))
                                           : scheme != "never";
    } else {
      t->add_dummy_prefix = prepend;
    }
    t->remove_extra_whitespaces = false;
    add_tokens(*t, root, source);
    const std::string unk = model.contains("unk_token") ? token_name(model["unk_token"]) : "";
    t->finish(source);
    t->unk = unk.empty() ? -1 : t->find_piece(unk);
    if (t->unk >= 0) t->kinds[t->unk] = TokenKind::kUnknown;
    special_ids(*t, root, config);
    t->finish(source);
    return t;
  }
  throw Error(ErrorCode::kUnsupported,
              source + ": BPE tokenizer.json that is neither byte-level nor SentencePiece-style "
                       "(no ByteLevel pre-tokenizer, no byte_fallback/Metaspace)");
}

std::shared_ptr<const Tokenizer::Impl> parse_vocab_merges(std::string_view vocab_json,
                                                          std::string_view merges_txt,
                                                          const std::string& source) {
  const json vocab = parse_json(vocab_json, source);
  auto t = std::make_shared<ByteLevelImpl>();
  t->name = "bpe-bytelevel";
  t->pre = PreTokenizer::kGpt2;
  read_vocab(vocab, *t, source);
  const auto ids = index_of(*t);
  json merges = json::array();
  size_t line_no = 0;
  for (size_t pos = 0; pos < merges_txt.size();) {
    size_t nl = merges_txt.find('\n', pos);
    if (nl == std::string_view::npos) nl = merges_txt.size();
    std::string line(merges_txt.substr(pos, nl - pos));
    pos = nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    merges.push_back(line);
  }
  t->merges = read_merges(merges, ids, source + " (merges.txt)");
  const auto eot = ids.find("<|endoftext|>");
  if (eot != ids.end()) {
    t->kinds[eot->second] = TokenKind::kControl;
    t->eos = eot->second;
    t->end_of_generation = {eot->second};
  }
  t->finish(source);
  return t;
}

}  // namespace piquant
