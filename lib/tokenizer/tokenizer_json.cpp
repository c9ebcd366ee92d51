#include "tokenizer/tokenizer_json.hpp"

#include <cmath>
#include <cstdint>
#include <limits>

#include "piquant/error.hpp"
#include "tokenizer/tokenizer_impl.hpp"
#include "unicode/unicode.hpp"

namespace piquant {
namespace {

using nlohmann::json;
constexpr const char* kSource = "tokenizer JSON";

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    char32_t cp;
    i += unicode::decode_utf8(s, i, &cp);
    if (cp >= unicode::kInvalidBase) return false;
  }
  return true;
}

json piece_to_json(const std::string& p) {
  if (valid_utf8(p)) return p;
  static const char* kHex = "0123456789abcdef";
  std::string h;
  for (unsigned char c : p) h += kHex[c >> 4], h += kHex[c & 15];
  return json{{"hex", h}};
}

[[noreturn]] void fail(const std::string& m) {
  throw Error(ErrorCode::kFormat, std::string(kSource) + ": " + m);
}

std::string piece_from_json(const json& j, size_t i) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("hex") && j["hex"].is_string()) {
    const std::string h = j["hex"].get<std::string>();
    if (h.size() % 2 != 0) fail("piece " + std::to_string(i) + ": odd hex length");
    std::string out;
    for (size_t k = 0; k < h.size(); k += 2) {
      auto nib = [&](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        fail("piece " + std::to_string(i) + ": bad hex digit");
      };
      out += static_cast<char>(nib(h[k]) * 16 + nib(h[k + 1]));
    }
    return out;
  }
  fail("piece " + std::to_string(i) + " is neither a string nor {\"hex\": ...}");
}

const json& field(const json& j, const char* key, const char* where = "top level") {
  if (!j.is_object() || !j.contains(key)) fail(std::string(where) + ": missing field \"" + key + "\"");
  return j[key];
}

template <class T>
T get(const json& j, const char* key, const char* where = "top level") {
  const json& v = field(j, key, where);
  try {
    return v.get<T>();
  } catch (const json::exception&) {
    fail(std::string(where) + ": field \"" + key + "\" has the wrong type");
  }
}

// An integer that fits int32 (a JSON number may be 1e300 or 2^64-1; casting those is UB).
int32_t int_value(const json& v, const std::string& what) {
  if (!v.is_number_integer()) fail(what + " is not an integer");
  const bool fits = v.is_number_unsigned() ? v.get<uint64_t>() <= INT32_MAX
                                           : v.get<int64_t>() >= INT32_MIN &&
                                                 v.get<int64_t>() <= INT32_MAX;
  if (!fits) fail(what + " is out of range");
  return static_cast<int32_t>(v.get<int64_t>());
}
int32_t get_int(const json& j, const char* key) { return int_value(field(j, key), key); }

}  // namespace

json tokenizer_to_json(const Tokenizer& tokenizer) {
  const Tokenizer::Impl& t = tokenizer.impl();
  json j;
  j["format"] = "piquant-tokenizer";
  j["version"] = 1;
  j["name"] = t.name;
  json pieces = json::array();
  for (const std::string& p : t.pieces) pieces.push_back(piece_to_json(p));
  j["pieces"] = std::move(pieces);
  json kinds = json::array();
  for (TokenKind k : t.kinds) kinds.push_back(static_cast<int>(k));
  j["kinds"] = std::move(kinds);
  j["bos"] = t.bos;
  j["eos"] = t.eos;
  j["unk"] = t.unk;
  j["end_of_generation"] = t.end_of_generation;
  j["add_bos"] = t.add_bos_default;
  if (const auto* s = dynamic_cast<const SentencePieceImpl*>(&t)) {
    j["algorithm"] = "sentencepiece";
    json scores = json::array();
    for (float f : t.scores) scores.push_back(std::isinf(f) ? json(nullptr) : json(f));
    j["scores"] = std::move(scores);
    j["sentencepiece"] = {{"add_dummy_prefix", s->add_dummy_prefix},
                          {"remove_extra_whitespaces", s->remove_extra_whitespaces},
                          {"byte_fallback", s->byte_fallback},
                          {"llama2c_spaces", s->llama2c_spaces}};
  } else if (const auto* b = dynamic_cast<const ByteLevelImpl*>(&t)) {
    j["algorithm"] = "bytelevel";
    json merges = json::array();
    for (const auto& m : b->merges) merges.push_back({m.first, m.second});
    j["bytelevel"] = {{"pre", to_string(b->pre)},
                      {"ignore_merges", b->ignore_merges},
                      {"add_prefix_space", b->add_prefix_space},
                      {"merges", std::move(merges)}};
  } else {
    throw Error(ErrorCode::kInternal, "tokenizer_to_json: unknown tokenizer kind " + t.name);
  }
  return j;
}

Tokenizer tokenizer_from_json(const json& j) {
  if (!j.is_object()) fail("not a JSON object");
  if (get<std::string>(j, "format") != "piquant-tokenizer") fail("format is not piquant-tokenizer");
  if (get_int(j, "version") != 1) fail("unsupported version");
  const std::string algo = get<std::string>(j, "algorithm");
  std::shared_ptr<Tokenizer::Impl> impl;
  if (algo == "sentencepiece") {
    auto s = std::make_shared<SentencePieceImpl>();
    const json& o = field(j, "sentencepiece");
    s->add_dummy_prefix = get<bool>(o, "add_dummy_prefix", "sentencepiece");
    s->remove_extra_whitespaces = get<bool>(o, "remove_extra_whitespaces", "sentencepiece");
    s->byte_fallback = get<bool>(o, "byte_fallback", "sentencepiece");
    s->llama2c_spaces = get<bool>(o, "llama2c_spaces", "sentencepiece");
    const json& scores = field(j, "scores");
    if (!scores.is_array()) fail("scores is not an array");
    constexpr auto kFloatMax = static_cast<double>(std::numeric_limits<float>::max());
    for (const json& v : scores) {
      if (v.is_null()) s->scores.push_back(-std::numeric_limits<float>::infinity());
      else if (v.is_number() && std::fabs(v.get<double>()) <= kFloatMax)
        s->scores.push_back(static_cast<float>(v.get<double>()));
      else fail("scores holds a non-number or a value outside float range");
    }
    impl = s;
  } else if (algo == "bytelevel") {
    auto b = std::make_shared<ByteLevelImpl>();
    const json& o = field(j, "bytelevel");
    b->pre = pretokenizer_from_name(get<std::string>(o, "pre", "bytelevel"));
    b->ignore_merges = get<bool>(o, "ignore_merges", "bytelevel");
    b->add_prefix_space = get<bool>(o, "add_prefix_space", "bytelevel");
    const json& merges = field(o, "merges", "bytelevel");
    if (!merges.is_array()) fail("bytelevel.merges is not an array");
    for (const json& m : merges) {
      if (!m.is_array() || m.size() != 2) fail("bytelevel.merges holds an entry that is not [id, id]");
      b->merges.emplace_back(int_value(m[0], "a merge id"), int_value(m[1], "a merge id"));
    }
    impl = b;
  } else {
    fail("unknown algorithm '" + algo + "'");
  }
  impl->name = get<std::string>(j, "name");
  const json& pieces = field(j, "pieces");
  const json& kinds = field(j, "kinds");
  if (!pieces.is_array() || !kinds.is_array()) fail("pieces and kinds must be arrays");
  for (size_t i = 0; i < pieces.size(); ++i) impl->pieces.push_back(piece_from_json(pieces[i], i));
  for (const json& k : kinds) {
    const int32_t kind = int_value(k, "a kind");
    if (kind < 0 || kind > 5) fail("kinds holds an invalid kind " + std::to_string(kind));
    impl->kinds.push_back(static_cast<TokenKind>(kind));
  }
  impl->bos = get_int(j, "bos");
  impl->eos = get_int(j, "eos");
  impl->unk = get_int(j, "unk");
  const json& eog = field(j, "end_of_generation");
  if (!eog.is_array()) fail("end_of_generation is not an array");
  for (const json& e : eog) impl->end_of_generation.push_back(int_value(e, "end_of_generation"));
  impl->add_bos_default = get<bool>(j, "add_bos");
  impl->finish(kSource);
  return Tokenizer(impl);
}

}  // namespace piquant
