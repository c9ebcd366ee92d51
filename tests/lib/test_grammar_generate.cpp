// Validity by construction: a seeded random model (its text is noise) at temperature 1 generates
// under a JSON Schema or a GBNF grammar, and every output is checked by code independent of the
// library's grammar engine: nlohmann::json + a small schema validator below, and hand-written
// recognisers for the GBNF grammars. 200 generations each natively; under an emulator (qemu) 20,
// or PIQUANT_GRAMMAR_GENERATIONS=N.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <piquant/piquant.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <regex>

using Json = nlohmann::json;

namespace {

int generations() {
  if (const char* e = std::getenv("PIQUANT_GRAMMAR_GENERATIONS")) return std::atoi(e);
  return std::string(PIQUANT_TEST_EMULATOR).empty() ? 200 : 20;
}

std::shared_ptr<const piquant::Model> small_model() {
  piquant::SyntheticModelOptions so;
  so.config.dim = 32;
  so.config.hidden_dim = 64;
  so.config.n_layers = 1;
  so.config.n_heads = 2;
  so.config.max_seq_len = 512;
  so.seed = 7;
  static auto m = piquant::Model::synthetic(so);
  return m;
}

// Runs n generations; each must end because the grammar is complete (or at EOS where it may end).
std::vector<std::string> generate_all(const std::shared_ptr<const piquant::Grammar>& g, int n) {
  auto model = small_model();
  piquant::Session s(model, {0, 1});
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    s.reset();
    piquant::GenerateOptions o;
    o.max_tokens = 400;
    o.sampler.temperature = 1.0f;
    if (i % 2) {  // the whole distribution; even generations keep the default top-k/top-p/min-p
      o.sampler.top_k = 0;
      o.sampler.top_p = 1.0f;
      o.sampler.min_p = 0.0f;
    }
    if (i % 3 == 0) o.sampler.repeat_penalty = 1.3f;  // penalties see -inf logits too
    o.sampler.seed = 1000 + static_cast<uint64_t>(i);
    o.grammar = g;
    const auto r = s.generate("Output:", nullptr, o);
    INFO("generation " << i << ": '" << r.text << "' (" << r.generated_ids.size() << " tokens)");
    REQUIRE((r.stop == piquant::GenerateResult::StopReason::kGrammarComplete ||
             r.stop == piquant::GenerateResult::StopReason::kEndOfGeneration));
    out.push_back(r.text);
  }
  return out;
}

// --- a JSON Schema validator for the keywords the tests use ---------------------------------------

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool validate(const Json& v, const Json& s, const Json& root, std::string& why, const std::string& at = "") {
  auto no = [&](const std::string& what) {
    why = at + ": " + what;
    return false;
  };
  if (s.contains("$ref")) {
    const std::string ref = s["$ref"];
    return validate(v, root["$defs"][ref.substr(std::string("#/$defs/").size())], root, why, at);
  }
  if (s.contains("const") && v != s["const"]) return no("not the const");
  if (s.contains("enum")) {
    bool found = false;
    for (const Json& e : s["enum"]) found |= (e == v && e.type() == v.type()) || (e == v);
    if (!found) return no("not in the enum");
  }
  if (s.contains("anyOf") || s.contains("oneOf")) {
    const bool one = s.contains("oneOf");
    int matches = 0;
    std::string ignored;
    for (const Json& sub : s[one ? "oneOf" : "anyOf"]) matches += validate(v, sub, root, ignored, at);
    if (matches == 0 || (one && matches > 1)) return no("matches " + std::to_string(matches) + " alternatives");
  }
  if (s.contains("type")) {
    std::vector<std::string> types;
    if (s["type"].is_array()) {
      for (const Json& t : s["type"]) types.push_back(t);
    } else {
      types.push_back(s["type"]);
    }
    bool ok = false;
    for (const std::string& t : types) {
      ok |= (t == "object" && v.is_object()) || (t == "array" && v.is_array()) ||
            (t == "string" && v.is_string()) || (t == "number" && v.is_number()) ||
            (t == "integer" && v.is_number_integer()) || (t == "boolean" && v.is_boolean()) ||
            (t == "null" && v.is_null());
    }
    if (!ok) return no("type is not " + s["type"].dump());
  }
  if (v.is_object()) {
    for (const Json& r : s.value("required", Json::array())) {
      if (!v.contains(r.get<std::string>())) return no("missing required " + r.dump());
    }
    const Json props = s.value("properties", Json::object());
    for (const auto& [k, x] : v.items()) {
      if (props.contains(k)) {
        if (!validate(x, props[k], root, why, at + "/" + k)) return false;
      } else if (s.contains("additionalProperties") && s["additionalProperties"] == false) {
        return no("additional property " + k);
      } else if (props.size() > 0 && !s.contains("additionalProperties")) {
        return no("undeclared property " + k + " (the grammar admits only declared ones)");
      }
    }
  }
  if (v.is_array()) {
    if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>()) return no("too few items");
    if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>()) return no("too many items");
    if (s.contains("items")) {
      for (size_t i = 0; i < v.size(); ++i) {
        if (!validate(v[i], s["items"], root, why, at + "/" + std::to_string(i))) return false;
      }
    }
  }
  if (v.is_string()) {
    const std::string& str = v.get_ref<const std::string&>();
    if (s.contains("minLength") && code_points(str) < s["minLength"].get<size_t>()) return no("too short");
    if (s.contains("maxLength") && code_points(str) > s["maxLength"].get<size_t>()) return no("too long");
    if (s.contains("pattern") && !std::regex_search(str, std::regex(s["pattern"].get<std::string>()))) {
      return no("does not match the pattern");
    }
  }
  return true;
}

void check_schema(const std::string& schema_text, int n) {
  const Json schema = Json::parse(schema_text);
  const auto g = piquant::Grammar::from_json_schema(schema_text);
  for (const std::string& text : generate_all(g, n)) {
    INFO("schema " << schema.dump() << "\noutput '" << text << "'");
    Json v;
    REQUIRE_NOTHROW(v = Json::parse(text));
    std::string why;
    if (!validate(v, schema, schema, why)) FAIL("invalid: " + why);
  }
}

// --- independent recognisers for the GBNF grammars ---------------------------------------------

// A cursor over the text; each parse function consumes on success (no backtracking is needed:
// the grammars are deterministic with one character of look-ahead).
struct Cursor {
  const std::string& s;
  size_t i = 0;
  bool eat(const std::string& lit) {
    if (s.compare(i, lit.size(), lit) != 0) return false;
    i += lit.size();
    return true;
  }
  bool peek_in(const char* set) const { return i < s.size() && std::strchr(set, s[i]) && s[i] != '\0'; }
  size_t run(const char* set, size_t max) {
    size_t n = 0;
    while (n < max && peek_in(set)) ++i, ++n;
    return n;
  }
};

const char* kDigits = "0123456789";

// Arithmetic with one level of parentheses (a random model would nest them without end).
bool arith_expr(Cursor& c, bool inner);
bool arith_factor(Cursor& c, bool inner) {
  if (!inner && c.eat("(")) return arith_expr(c, true) && c.eat(")");
  const size_t n = c.run(kDigits, 3);
  return n >= 1;
}
bool arith_term(Cursor& c, bool inner) {
  if (!arith_factor(c, inner)) return false;
  for (int k = 0; k < 2 && c.peek_in("*/"); ++k) {
    ++c.i;
    if (!arith_factor(c, inner)) return false;
  }
  return true;
}
bool arith_expr(Cursor& c, bool inner) {
  if (!arith_term(c, inner)) return false;
  for (int k = 0; k < 3 && c.peek_in("+-"); ++k) {
    ++c.i;
    if (!arith_term(c, inner)) return false;
  }
  return true;
}
bool recognise_arith(const std::string& s) {
  Cursor c{s};
  return arith_expr(c, false) && c.i == s.size();
}

bool recognise_list(const std::string& s) {
  // "- " item, then up to 5 more "\n- " item; item: 1..12 of [a-zA-Z ].
  const char* item_chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ";
  Cursor c{s};
  if (!c.eat("- ") || c.run(item_chars, 12) == 0) return false;
  for (int k = 0; k < 5 && c.eat("\n- "); ++k) {
    if (c.run(item_chars, 12) == 0) return false;
  }
  return c.i == s.size();
}

bool recognise_commands(const std::string& s) {
  Cursor c{s};
  auto cmd = [&]() {
    if (c.eat("move ")) {
      if (!c.eat("forward") && !c.eat("back")) return false;
      if (!c.eat(" ") || !c.peek_in("123456789")) return false;
      ++c.i;
      c.run(kDigits, 2);
      return true;
    }
    if (c.eat("turn ")) return c.eat("left") || c.eat("right");
    if (c.eat("grip ")) return c.eat("open") || c.eat("close");
    if (c.eat("say \"")) {
      c.run("abcdefghijklmnopqrstuvwxyz ", 10);
      return c.eat("\"");
    }
    return false;
  };
  if (!cmd()) return false;
  for (int k = 0; k < 3 && c.eat(";"); ++k) {
    c.eat(" ");
    if (!cmd()) return false;
  }
  return c.i == s.size();
}

bool recognise_json(const std::string& s) {
  try {
    return Json::parse(s).is_object();
  } catch (const std::exception&) {
    return false;
  }
}

// Words of one script each: [a-zäöüß]{1,6} | [가-힣]{1,3} | [α-ω]{1,5} | one of U+1F600..U+1F60F;
// up to 5 words separated by one space, then ".".
bool recognise_utf8_words(const std::string& s) {
  std::vector<char32_t> cps;
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const int n = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    if (i + static_cast<size_t>(n) > s.size()) return false;
    char32_t cp = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
    for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    cps.push_back(cp);
    i += static_cast<size_t>(n);
  }
  auto latin = [](char32_t c) { return (c >= 'a' && c <= 'z') || c == U'ä' || c == U'ö' || c == U'ü' || c == U'ß'; };
  auto hangul = [](char32_t c) { return c >= U'가' && c <= U'힣'; };
  auto greek = [](char32_t c) { return c >= U'α' && c <= U'ω'; };
  auto emoji = [](char32_t c) { return c >= 0x1F600 && c <= 0x1F60F; };
  size_t i = 0, words = 0;
  while (true) {
    const size_t start = i;
    for (auto [cls, max] : std::vector<std::pair<std::function<bool(char32_t)>, size_t>>{
             {latin, 6}, {hangul, 3}, {greek, 5}, {emoji, 1}}) {
      if (i < cps.size() && cls(cps[i])) {
        while (i < cps.size() && i - start < max && cls(cps[i])) ++i;
        break;
      }
    }
    if (i == start) return false;
    ++words;
    if (i < cps.size() && cps[i] == U'.') return i + 1 == cps.size() && words <= 5;
    if (i >= cps.size() || cps[i] != U' ') return false;
    ++i;
  }
}

void check_gbnf(const std::string& gbnf, const std::function<bool(const std::string&)>& recognise, int n) {
  const auto g = piquant::Grammar::parse(gbnf);
  for (const std::string& text : generate_all(g, n)) {
    INFO("output '" << text << "'");
    CHECK(recognise(text));
  }
}

}  // namespace

TEST_CASE("schema-constrained generations all parse and validate", "[grammar][e2e]") {
  const int n = generations();
  const char* schemas[] = {
      // A robot command: enum, numbers, no extra keys.
      R"({"type": "object", "properties": {"action": {"enum": ["move", "turn", "stop"]},
          "speed": {"type": "number"}, "duration_ms": {"type": "integer"}},
          "required": ["action", "speed"], "additionalProperties": false})",
      // Nested objects with bounded strings and a pattern.
      R"({"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
          "address": {"type": "object", "properties": {"street": {"type": "string", "minLength": 1, "maxLength": 6},
          "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}, "required": ["street", "zip"]}},
          "required": ["name", "address"]})",
      // An array with bounds.
      R"({"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 5})",
      // Mixed enum.
      R"({"enum": ["red", "green", 1, null, true, {"a": [1, 2]}]})",
      // anyOf of three shapes.
      R"({"anyOf": [{"type": "string", "maxLength": 5}, {"type": "integer"},
          {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}]})",
      // Strings with exact and bounded lengths (Unicode code points).
      R"({"type": "object", "properties": {"code": {"type": "string", "minLength": 3, "maxLength": 3},
          "note": {"type": "string", "maxLength": 6}}, "required": ["code"], "additionalProperties": false})",
      // Numbers in an array.
      R"({"type": "array", "items": {"type": "number"}, "maxItems": 4})",
      // booleans, null, const.
      R"({"type": "object", "properties": {"ok": {"type": "boolean"}, "nothing": {"type": "null"},
          "version": {"const": 2}}, "required": ["ok", "version"]})",
      // $ref to $defs: a small recursive tree.
      R"({"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
          "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}}, "required": ["v"],
          "additionalProperties": false}}, "$ref": "#/$defs/node"})",
      // oneOf and a list of types.
      R"({"type": "object", "properties": {"id": {"type": ["integer", "null"]},
          "value": {"oneOf": [{"type": "boolean"}, {"type": "string", "pattern": "^[a-z]{0,4}$"}]}},
          "required": ["id", "value"]})",
      // A pattern alone.
      R"({"type": "string", "pattern": "^[A-Z]{2}-[0-9]{2,4}(-x)?$"})",
  };
  for (const char* schema : schemas) check_schema(schema, n);
}

TEST_CASE("tool-call grammars produce calls whose arguments validate", "[grammar][e2e]") {
  const std::string tools = R"([
    {"type": "function", "function": {"name": "move", "parameters": {"type": "object",
      "properties": {"direction": {"enum": ["left", "right"]}, "cm": {"type": "integer"}},
      "required": ["direction", "cm"]}}},
    {"type": "function", "function": {"name": "say", "parameters": {"type": "object",
      "properties": {"text": {"type": "string", "maxLength": 10}}, "required": ["text"]}}}])";
  piquant::ToolCallFormat qwen;
  qwen.prefix = "<tool_call>\n";
  qwen.suffix = "\n</tool_call>";
  const auto g = piquant::grammar_from_tools(tools, qwen);
  const Json declared = Json::parse(tools);
  int seen_move = 0, seen_say = 0;
  for (const std::string& text : generate_all(g, std::max(generations() / 4, 50))) {
    INFO("output '" << text << "'");
    REQUIRE(text.rfind(qwen.prefix, 0) == 0);
    REQUIRE(text.size() >= qwen.prefix.size() + qwen.suffix.size());
    REQUIRE(text.compare(text.size() - qwen.suffix.size(), qwen.suffix.size(), qwen.suffix) == 0);
    const Json call = Json::parse(text.substr(qwen.prefix.size(), text.size() - qwen.prefix.size() - qwen.suffix.size()));
    const std::string name = call.at("name");
    const Json& params = declared[name == "move" ? 0 : 1]["function"]["parameters"];
    std::string why;
    if (!validate(call.at("arguments"), params, params, why)) FAIL("invalid arguments: " + why);
    (name == "move" ? seen_move : seen_say)++;
  }
  CHECK(seen_move > 0);
  CHECK(seen_say > 0);
}

TEST_CASE("gbnf-constrained generations are accepted by independent recognisers", "[grammar][e2e]") {
  const int n = generations();
  check_gbnf(R"G(
root ::= expr
expr ::= term (("+" | "-") term){0,3}
term ::= factor (("*" | "/") factor){0,2}
factor ::= [0-9]{1,3} | "(" inner ")"
inner ::= iterm (("+" | "-") iterm){0,3}
iterm ::= [0-9]{1,3} (("*" | "/") [0-9]{1,3}){0,2}
)G", recognise_arith, n);
  check_gbnf(R"G(
root ::= "- " item ("\n- " item){0,5}
item ::= [a-zA-Z ]{1,12}
)G", recognise_list, n);
  check_gbnf(R"G(
root ::= cmd (";" " "? cmd){0,3}
cmd ::= "move " ("forward" | "back") " " [1-9] [0-9]{0,2} | "turn " ("left" | "right") |
        "grip " ("open" | "close") | "say \"" [a-z ]{0,10} "\""
)G", recognise_commands, n);
  check_gbnf(R"G(
root ::= object
value ::= object1 | array1 | scalar
object ::= "{" ws ( string ws ":" ws value ws ("," ws string ws ":" ws value ws){0,3} )? "}"
array1 ::= "[" ws ( scalar ws ("," ws scalar ws){0,3} )? "]"
object1 ::= "{" ws ( string ws ":" ws scalar ws ("," ws string ws ":" ws scalar ws){0,3} )? "}"
scalar ::= string | number | "true" | "false" | "null"
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-cA-C] [0-9a-fA-F]{3}) ){0,10} "\""
number ::= "-"? ([0-9] | [1-9] [0-9]{1,5}) ("." [0-9]{1,4})?
ws ::= [ \t\n]{0,2}
)G", recognise_json, n);
  check_gbnf(R"G(
root ::= word (" " word){0,4} "."
word ::= [a-zäöüß]{1,6} | [가-힣]{1,3} | [α-ω]{1,5} | [😀-😏]
)G", recognise_utf8_words, n);
}
