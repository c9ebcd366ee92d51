// JSON Schema -> GBNF. One rule per schema node, named after its place; objects keep the
// declared property order (required ones must appear, optional ones may be left out), which is
// what llama.cpp's converter does too. Whitespace between tokens is llama.cpp's `space` rule
// (nothing, one space, or a newline and up to 20 spaces/tabs) so a model cannot pad forever;
// numbers have at most 16 integral and 16 fraction digits and a 2-digit exponent (a double). A \u escape never
// names a UTF-16 surrogate (most parsers reject a lone one; write the character itself instead).
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "grammar/grammar_impl.hpp"
#include "piquant/error.hpp"

namespace piquant {
namespace {

using Json = nlohmann::ordered_json;

const char* kPrimitives = R"(ws ::= | " " | "\n" [ \t]{0,20}
json-char ::= [^"\\\x7F\x00-\x1F] | [\\] (["\\/bfnrt] | "u" json-hex4)
json-hex4 ::= [0-9a-cA-CeEfF] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}
json-string ::= "\"" json-char* "\""
json-int-part ::= [0] | [1-9] [0-9]{0,15}
json-number ::= "-"? json-int-part ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?
json-integer ::= "-"? json-int-part
json-boolean ::= "true" | "false"
json-null ::= "null"
json-value ::= json-object | json-array | json-string | json-number | json-boolean | json-null
json-object ::= "{" ws ( json-string ws ":" ws json-value ws ( "," ws json-string ws ":" ws json-value ws )* )? "}"
json-array ::= "[" ws ( json-value ws ( "," ws json-value ws )* )? "]"
)";

// GBNF literal for arbitrary bytes (the JSON text of an enum value, a key).
std::string literal(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20) {
      const char* d = "0123456789ABCDEF";
      out += "\\x";
      out += d[c >> 4];
      out += d[c & 15];
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string hex_escape(char c) {
  const char* d = "0123456789ABCDEF";
  const auto u = static_cast<unsigned char>(c);
  return std::string("\\x") + d[u >> 4] + d[u & 15];
}

std::string pointer_escape(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

class Converter {
 public:
  Converter(const Json& root, std::string root_name) : root_(root), root_name_(std::move(root_name)) {}

  std::string run() {
    const std::string top = visit(root_, "", root_name_);
    std::string out;
    if (top != root_name_) out += root_name_ + " ::= " + top + "\n";
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    return out + kPrimitives;
  }

 private:
  const Json& root_;
  std::string root_name_;
  int depth_ = 0;
  std::map<std::string, std::string> rules_;
  std::map<std::string, std::string> ref_rules_;  // "$ref" target -> rule name

  [[noreturn]] static void bad(const std::string& ptr, const std::string& what) {
    throw Error(ErrorCode::kInvalidArgument, "JSON schema at '" + (ptr.empty() ? "#" : "#" + ptr) + "': " + what);
  }
  [[noreturn]] static void unsupported(const std::string& ptr, const std::string& key) {
    throw Error(ErrorCode::kUnsupported, "JSON schema at '#" + ptr + "/" + pointer_escape(key) +
                                             "': keyword '" + key + "' is not supported");
  }

  std::string fresh(std::string hint) {
    std::string name;
    for (char c : hint) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      name += ok ? c : '-';
    }
    if (name.empty()) name = "r";
    if (name.rfind("json-", 0) == 0 || name == "ws") name = "s-" + name;
    std::string n = name;
    for (int i = 1; rules_.count(n) || n == "ws"; ++i) n = name + "-" + std::to_string(i);
    rules_[n] = "";  // reserve
    return n;
  }
  std::string add(const std::string& hint, const std::string& body) {
    const std::string n = fresh(hint);
    rules_[n] = body;
    return n;
  }

  static size_t count(const Json& s, const char* key, const std::string& ptr) {
    const Json& v = s.at(key);
    if (!v.is_number_integer() || v.get<int64_t>() < 0) bad(ptr + "/" + key, "must be a non-negative integer");
    if (v.get<int64_t>() > 10000) bad(ptr + "/" + key, "above 10000 is not supported");
    return static_cast<size_t>(v.get<int64_t>());
  }

  // The rule (or inline expression) for schema s at JSON pointer ptr.
  std::string visit(const Json& s, const std::string& ptr, const std::string& hint) {
    struct Depth {  // schemas nested without end would exhaust the stack
      int& d;
      explicit Depth(int& x) : d(++x) {}
      ~Depth() { --d; }
    } depth(depth_);
    if (depth_ > 100) bad(ptr, "schemas nested more than 100 deep");
    if (s.is_boolean()) {
      if (s.get<bool>()) return "json-value";
      bad(ptr, "the schema 'false' admits no value");
    }
    if (!s.is_object()) bad(ptr, "a schema must be an object or a boolean");
    static const std::set<std::string> kIgnored = {"title", "description", "examples", "default",
                                                   "$schema", "$id", "$comment", "format", "$defs",
                                                   "definitions", "readOnly", "writeOnly", "deprecated"};
    static const std::set<std::string> kKnown = {"type", "properties", "required", "additionalProperties",
                                                 "enum", "const", "items", "minItems", "maxItems",
                                                 "minLength", "maxLength", "pattern", "anyOf", "oneOf",
                                                 "allOf", "$ref"};
    for (const auto& [k, v] : s.items()) {
      (void)v;
      if (!kKnown.count(k) && !kIgnored.count(k)) unsupported(ptr, k);
    }
    if (s.contains("$ref")) {
      if (s.size() > 1) {
        for (const auto& [k, v] : s.items()) {
          (void)v;
          if (k != "$ref" && !kIgnored.count(k)) bad(ptr, "'$ref' beside '" + k + "' is not supported");
        }
      }
      return ref(s["$ref"], ptr + "/$ref");
    }
    if (s.contains("const")) return add(hint, literal(s["const"].dump()));
    if (s.contains("enum")) {
      const Json& e = s["enum"];
      if (!e.is_array() || e.empty()) bad(ptr + "/enum", "must be a non-empty array");
      std::string body;
      for (const Json& v : e) body += (body.empty() ? "" : " | ") + literal(v.dump());
      return add(hint, body);
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (!s.contains(key)) continue;
      const Json& a = s[key];
      if (!a.is_array() || a.empty()) bad(ptr + "/" + key, "must be a non-empty array");
      std::string body;
      for (size_t i = 0; i < a.size(); ++i) {
        body += (i ? " | " : "") + visit(a[i], ptr + "/" + key + "/" + std::to_string(i),
                                         hint + "-" + std::to_string(i));
      }
      return add(hint, body);
    }
    if (s.contains("allOf")) {
      const Json& a = s["allOf"];
      if (!a.is_array() || a.size() != 1) {
        throw Error(ErrorCode::kUnsupported, "JSON schema at '#" + ptr + "/allOf': only allOf with one schema is supported");
      }
      return visit(a[0], ptr + "/allOf/0", hint);
    }
    if (!s.contains("type")) {
      if (s.contains("properties") || s.contains("additionalProperties")) return object(s, ptr, hint);
      if (s.contains("items")) return array(s, ptr, hint);
      if (s.contains("minLength") || s.contains("maxLength") || s.contains("pattern")) return string(s, ptr, hint);
      return "json-value";
    }
    const Json& t = s["type"];
    if (t.is_array()) {
      if (t.empty()) bad(ptr + "/type", "an empty list of types admits nothing");
      std::string body;
      for (size_t i = 0; i < t.size(); ++i) {
        if (!t[i].is_string()) bad(ptr + "/type/" + std::to_string(i), "must be a type name");
        body += (i ? " | " : "") + typed(t[i].get<std::string>(), s, ptr, hint + "-" + t[i].get<std::string>());
      }
      return add(hint, body);
    }
    if (!t.is_string()) bad(ptr + "/type", "must be a type name or a list of them");
    return typed(t.get<std::string>(), s, ptr, hint);
  }

  std::string typed(const std::string& t, const Json& s, const std::string& ptr, const std::string& hint) {
    if (t == "object") return object(s, ptr, hint);
    if (t == "array") return array(s, ptr, hint);
    if (t == "string") return string(s, ptr, hint);
    if (t == "number") return "json-number";
    if (t == "integer") return "json-integer";
    if (t == "boolean") return "json-boolean";
    if (t == "null") return "json-null";
    bad(ptr + "/type", "unknown type '" + t + "'");
  }

  std::string ref(const Json& r, const std::string& ptr) {
    if (!r.is_string()) bad(ptr, "must be a string");
    const std::string target = r.get<std::string>();
    auto it = ref_rules_.find(target);
    if (it != ref_rules_.end()) return it->second;
    std::string name;
    for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
      if (target.rfind(prefix, 0) == 0) name = target.substr(std::string(prefix).size());
    }
    if (name.empty() && target != "#") bad(ptr, "'" + target + "' is not supported (only #, #/$defs/NAME and #/definitions/NAME)");
    const Json* def = &root_;
    if (!name.empty()) {
      const char* section = target.rfind("#/$defs/", 0) == 0 ? "$defs" : "definitions";
      if (!root_.contains(section) || !root_[section].is_object() || !root_[section].contains(name)) {
        bad(ptr, "'" + target + "' refers to nowhere (no such definition)");
      }
      def = &root_[section][name];
    }
    // Reserve the rule first: the definition may refer to itself (a tree).
    const std::string rule = fresh(name.empty() ? "root-ref" : "def-" + name);
    ref_rules_[target] = rule;
    const std::string def_ptr = name.empty() ? "" : target.substr(1);
    rules_[rule] = visit(*def, def_ptr, rule + "-body");
    return rule;
  }

  std::string object(const Json& s, const std::string& ptr, const std::string& hint) {
    std::vector<std::pair<std::string, std::string>> props;  // key, value rule
    std::set<std::string> required;
    if (s.contains("required")) {
      const Json& r = s["required"];
      if (!r.is_array()) bad(ptr + "/required", "must be an array of property names");
      for (size_t i = 0; i < r.size(); ++i) {
        if (!r[i].is_string()) bad(ptr + "/required/" + std::to_string(i), "must be a string");
        required.insert(r[i].get<std::string>());
      }
    }
    if (s.contains("properties")) {
      const Json& p = s["properties"];
      if (!p.is_object()) bad(ptr + "/properties", "must be an object");
      for (const auto& [k, v] : p.items()) {
        const std::string kp = ptr + "/properties/" + pointer_escape(k);
        props.push_back({k, visit(v, kp, hint + "-" + k)});
      }
    }
    for (const std::string& r : required) {
      bool found = false;
      for (const auto& p : props) found |= p.first == r;
      if (!found) bad(ptr + "/required", "'" + r + "' is required but not among the properties");
    }
    std::string extra;  // the rule of one additional member, if any are allowed
    if (s.contains("additionalProperties")) {
      const Json& a = s["additionalProperties"];
      if (!(a.is_boolean() && !a.get<bool>())) {
        const std::string value = a.is_boolean() ? "json-value" : visit(a, ptr + "/additionalProperties", hint + "-extra");
        extra = add(hint + "-extra-kv", "json-string ws \":\" ws " + value + " ws");
      }
    } else if (!s.contains("properties")) {
      return "json-object";
    }
    const size_t n = props.size();
    std::vector<std::string> kv(n);
    for (size_t i = 0; i < n; ++i) {
      kv[i] = add(hint + "-" + props[i].first + "-kv",
                  literal(Json(props[i].first).dump()) + " ws \":\" ws " + props[i].second + " ws");
    }
    // T[i]: members i.. after at least one member; F[i]: members i.. before any member.
    std::vector<std::string> T(n + 1), F(n + 1);
    T[n] = extra.empty() ? "" : "(\",\" ws " + extra + ")*";
    F[n] = extra.empty() ? "" : "(" + extra + " (\",\" ws " + extra + ")*)?";
    for (size_t i = n; i-- > 0;) {
      const bool req = required.count(props[i].first) != 0;
      const std::string t_body = req ? "\",\" ws " + kv[i] + " " + T[i + 1]
                                     : "(\",\" ws " + kv[i] + ")? " + T[i + 1];
      T[i] = add(hint + "-rest-" + std::to_string(i), t_body);
      const std::string f_body = req ? kv[i] + " " + T[i + 1]
                                     : kv[i] + " " + T[i + 1] + " | " + (F[i + 1].empty() ? "\"\"" : F[i + 1]);
      F[i] = add(hint + "-first-" + std::to_string(i), f_body);
    }
    return add(hint, "\"{\" ws " + F[0] + " \"}\"");
  }

  std::string array(const Json& s, const std::string& ptr, const std::string& hint) {
    std::string item = "json-value";
    if (s.contains("items")) item = visit(s["items"], ptr + "/items", hint + "-item");
    const size_t lo = s.contains("minItems") ? count(s, "minItems", ptr) : 0;
    const bool bounded = s.contains("maxItems");
    const size_t hi = bounded ? count(s, "maxItems", ptr) : 0;
    if (bounded && hi < lo) bad(ptr + "/maxItems", "below minItems");
    if (bounded && hi == 0) return add(hint, "\"[\" ws \"]\"");
    const std::string rest_lo = std::to_string(lo > 0 ? lo - 1 : 0);
    const std::string rest = "(\",\" ws " + item + " ws){" + rest_lo + "," +
                             (bounded ? std::to_string(hi - 1) : "") + "}";
    const std::string body = item + " ws " + rest;
    return add(hint, "\"[\" ws " + (lo == 0 ? "(" + body + ")?" : body) + " \"]\"");
  }

  std::string string(const Json& s, const std::string& ptr, const std::string& hint) {
    if (s.contains("pattern")) {
      if (s.contains("minLength") || s.contains("maxLength")) {
        bad(ptr, "'pattern' with 'minLength'/'maxLength' is not supported");
      }
      if (!s["pattern"].is_string()) bad(ptr + "/pattern", "must be a string");
      return add(hint, "\"\\\"\" " + pattern(s["pattern"].get<std::string>(), ptr + "/pattern") + " \"\\\"\"");
    }
    const size_t lo = s.contains("minLength") ? count(s, "minLength", ptr) : 0;
    const bool bounded = s.contains("maxLength");
    const size_t hi = bounded ? count(s, "maxLength", ptr) : 0;
    if (bounded && hi < lo) bad(ptr + "/maxLength", "below minLength");
    if (!bounded && lo == 0) return "json-string";
    return add(hint, "\"\\\"\" json-char{" + std::to_string(lo) + "," + (bounded ? std::to_string(hi) : "") + "} \"\\\"\"");
  }

  // A simple regular expression (the body of a JSON string) -> a GBNF expression. Literal
  // characters, escapes (\d \w \s and escaped punctuation), classes, '.', groups, '|', and the
  // quantifiers * + ? {m} {m,} {m,n}; ^ and $ at the ends (the pattern is always anchored).
  std::string pattern(const std::string& re, const std::string& ptr) {
    size_t i = 0;
    auto fail = [&](const std::string& what) -> void {
      bad(ptr, "pattern '" + re + "' at offset " + std::to_string(i) + ": " + what);
    };
    std::string p = re;
    if (!p.empty() && p.front() == '^') p.erase(0, 1);
    if (!p.empty() && p.back() == '$' && (p.size() < 2 || p[p.size() - 2] != '\\')) p.pop_back();
    // Characters a JSON string must escape are written as their escapes.
    auto lit_char = [](char c) -> std::string {
      if (c == '"') return "\"\\\\\\\"\"";        // the two bytes \"
      if (c == '\\') return "\"\\\\\\\\\"";       // the two bytes \\ .
      return literal(std::string(1, c));
    };
    std::function<std::string()> alternation;
    auto atom = [&]() -> std::string {
      const char c = p[i];
      if (c == '(') {
        ++i;
        if (p.compare(i, 2, "?:") == 0) i += 2;
        std::string inner = alternation();
        if (i >= p.size() || p[i] != ')') fail("unclosed group");
        ++i;
        return "(" + inner + ")";
      }
      if (c == '[') {
        const size_t start = i;
        ++i;
        std::string body = "[";
        bool neg = false;
        if (i < p.size() && p[i] == '^') {
          neg = true;
          body += '^';
          ++i;
        }
        while (i < p.size() && p[i] != ']') {
          if (p[i] == '\\' && i + 1 < p.size()) {
            const char e = p[i + 1];
            if (e == 'd') body += "0-9";
            else if (e == 'w') body += "a-zA-Z0-9_";
            else if (e == 's') body += " \\t\\n\\r";
            else if (e == '"' || e == '\\') fail("a quote or backslash in a class is not supported");
            else if (e == 'n') body += "\\n";
            else if (e == 't') body += "\\t";
            else body += hex_escape(e);
            i += 2;
          } else {
            if (p[i] == '"') fail("a quote or backslash in a class is not supported");
            body += p[i++];
          }
        }
        if (i >= p.size()) {
          i = start;
          fail("unterminated character class");
        }
        ++i;
        if (neg) body += "\"\\\\\\x00-\\x1F";  // a negated class never yields what JSON escapes
        return body + "]";
      }
      if (c == '.') {
        ++i;
        return "[^\"\\\\\\x00-\\x1F]";
      }
      if (c == '\\') {
        if (i + 1 >= p.size()) fail("a trailing backslash");
        const char e = p[i + 1];
        i += 2;
        if (e == 'd') return "[0-9]";
        if (e == 'w') return "[a-zA-Z0-9_]";
        if (e == 's') return "[ \\t\\n\\r]";
        if (e == 'n') return "\"\\\\n\"";
        if (e == 't') return "\"\\\\t\"";
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')) {
          fail(std::string("escape '\\") + e + "' is not supported");
        }
        return lit_char(e);
      }
      if (c == '*' || c == '+' || c == '?' || c == '{' || c == ')' || c == '|') fail("nothing to repeat");
      if (c == '^' || c == '$') fail("anchors inside the pattern are not supported");
      ++i;
      return lit_char(c);
    };
    auto sequence = [&]() -> std::string {
      std::string out;
      while (i < p.size() && p[i] != '|' && p[i] != ')') {
        std::string a = atom();
        while (i < p.size() && (p[i] == '*' || p[i] == '+' || p[i] == '?' || p[i] == '{')) {
          if (p[i] == '{') {
            const size_t close = p.find('}', i);
            if (close == std::string::npos) fail("unclosed {m,n}");
            a = "(" + a + ")" + p.substr(i, close + 1 - i);
            i = close + 1;
          } else {
            a = "(" + a + ")" + p[i++];
          }
        }
        out += (out.empty() ? "" : " ") + a;
      }
      return out.empty() ? "\"\"" : out;
    };
    alternation = [&]() -> std::string {
      std::string out = sequence();
      while (i < p.size() && p[i] == '|') {
        ++i;
        out += " | " + sequence();
      }
      return out;
    };
    std::string out = alternation();
    if (i != p.size()) fail("unexpected ')'");
    return "(" + out + ")";
  }
};

}  // namespace

static std::string schema_to_gbnf(std::string_view schema_json, const std::string& root_name) {
  Json schema;
  try {
    schema = Json::parse(schema_json);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(ErrorCode::kInvalidArgument, std::string("JSON schema is not valid JSON: ") + e.what());
  }
  return Converter(schema, root_name).run();
}

std::string json_schema_to_gbnf(std::string_view schema_json) { return schema_to_gbnf(schema_json, "root"); }

std::shared_ptr<const Grammar> grammar_from_response_format(std::string_view response_format_json) {
  Json rf;
  try {
    rf = Json::parse(response_format_json);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(ErrorCode::kInvalidArgument, std::string("response_format is not valid JSON: ") + e.what());
  }
  if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string()) {
    throw Error(ErrorCode::kInvalidArgument, "response_format: needs a \"type\" string");
  }
  const std::string type = rf["type"].get<std::string>();
  if (type == "text") return nullptr;
  if (type == "json_object") return Grammar::json_object();
  if (type == "json_schema") {
    if (!rf.contains("json_schema") || !rf["json_schema"].is_object()) {
      throw Error(ErrorCode::kInvalidArgument, "response_format: \"json_schema\" object missing");
    }
    const Json& js = rf["json_schema"];
    if (!js.contains("schema")) return Grammar::json_object();
    return Grammar::from_json_schema(js["schema"].dump());
  }
  throw Error(ErrorCode::kInvalidArgument, "response_format: unknown type '" + type + "'");
}

std::shared_ptr<const Grammar> grammar_from_tools(std::string_view tools_json, const ToolCallFormat& format,
                                                  const std::string& only_function) {
  Json tools;
  try {
    tools = Json::parse(tools_json);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(ErrorCode::kInvalidArgument, std::string("tools are not valid JSON: ") + e.what());
  }
  if (!tools.is_array() || tools.empty()) throw Error(ErrorCode::kInvalidArgument, "tools: expected a non-empty array");
  // One schema: anyOf over {"name": const, "<arguments_key>": parameters}, both required.
  Json any = Json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const Json& t = tools[i];
    const std::string where = "tools[" + std::to_string(i) + "]";
    if (!t.is_object() || !t.contains("function") || !t["function"].is_object()) {
      throw Error(ErrorCode::kInvalidArgument, where + ": expected {\"type\": \"function\", \"function\": {...}}");
    }
    const Json& f = t["function"];
    if (!f.contains("name") || !f["name"].is_string()) throw Error(ErrorCode::kInvalidArgument, where + ".function: needs a \"name\"");
    const std::string name = f["name"].get<std::string>();
    if (!only_function.empty() && name != only_function) continue;
    Json params = f.contains("parameters") ? f["parameters"] : Json{{"type", "object"}};
    Json call = {{"type", "object"},
                 {"properties", {{"name", {{"const", name}}}, {format.arguments_key, params}}},
                 {"required", {"name", format.arguments_key}}};
    any.push_back(call);
  }
  if (any.empty()) throw Error(ErrorCode::kInvalidArgument, "tools: no function named '" + only_function + "'");
  std::string gbnf;
  try {
    gbnf = schema_to_gbnf(Json{{"anyOf", any}}.dump(), "call");
  } catch (const Error& e) {
    throw Error(e.code(), std::string("tools (the parameters of a function): ") + e.what());
  }
  // The call between the template's prefix and suffix.
  return Grammar::parse("root ::= " + literal(format.prefix) + " call " + literal(format.suffix) + "\n" + gbnf);
}

}  // namespace piquant
