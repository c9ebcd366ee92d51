// GBNF text -> Grammar::Impl. The syntax is llama.cpp's (grammars/README.md there), parsed the way
// its parser does: a rule ends at a newline unless inside a group; `x*`, `x+`, `x?`, `x{m,n}` are
// rewritten into helper rules (`x*` -> `r ::= x r |`, right-recursive so the matcher's stack does
// not grow); then every reference is checked, and rules that are left-recursive or can never end
// are refused here, so the matcher never loops.
#include <algorithm>
#include <functional>
#include <map>

#include "grammar/grammar_impl.hpp"
#include "piquant/error.hpp"

namespace piquant::grammar {
namespace {

bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

class Parser {
 public:
  explicit Parser(std::string_view src) : src_(src) {}

  void parse(Grammar::Impl& g, const std::string& root_name);

 private:
  std::string_view src_;
  size_t pos_ = 0;
  std::vector<std::vector<Elem>> rules_;
  std::vector<std::string> names_;
  std::vector<size_t> where_;      // definition (or first reference) offset of each rule
  std::vector<bool> defined_;
  std::map<std::string, uint32_t, std::less<>> ids_;
  int depth_ = 0;  // open groups
  static constexpr int kMaxDepth = 200;

  std::string place(size_t at) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < src_.size(); ++i) {
      if (src_[i] == '\n') {
        ++line;
        col = 1;
      } else if ((static_cast<unsigned char>(src_[i]) & 0xC0) != 0x80) {
        ++col;
      }
    }
    return std::to_string(line) + ":" + std::to_string(col);
  }
  [[noreturn]] void fail(size_t at, const std::string& what) const {
    throw Error(ErrorCode::kInvalidArgument, "grammar " + place(at) + ": " + what);
  }
  bool at_end() const { return pos_ >= src_.size(); }
  char peek(size_t ahead = 0) const {
    return pos_ + ahead < src_.size() ? src_[pos_ + ahead] : '\0';
  }

  uint32_t symbol(std::string_view name, size_t at) {
    auto it = ids_.find(name);
    if (it != ids_.end()) return it->second;
    const uint32_t id = static_cast<uint32_t>(rules_.size());
    ids_.emplace(std::string(name), id);
    names_.emplace_back(name);
    where_.push_back(at);
    defined_.push_back(false);
    rules_.emplace_back();
    return id;
  }
  uint32_t helper(const std::string& base, size_t at) {
    std::string name;
    for (size_t n = rules_.size();; ++n) {
      name = base + "-" + std::to_string(n);
      if (ids_.find(name) == ids_.end()) break;
    }
    const uint32_t id = symbol(name, at);
    defined_[id] = true;
    return id;
  }

  void skip_space(bool newline_ok) {
    while (!at_end()) {
      const char c = peek();
      if (c == ' ' || c == '\t') {
        ++pos_;
      } else if (c == '#') {
        while (!at_end() && peek() != '\n') ++pos_;
      } else if (newline_ok && (c == '\n' || c == '\r')) {
        ++pos_;
      } else {
        break;
      }
    }
  }

  std::string_view name() {
    const size_t b = pos_;
    while (!at_end() && is_word_char(peek())) ++pos_;
    if (b == pos_) fail(b, "expected a rule name");
    return src_.substr(b, pos_ - b);
  }

  uint32_t hex(size_t digits, size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < digits; ++i) {
      const char c = peek();
      int d = -1;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      if (d < 0) fail(at, "escape needs " + std::to_string(digits) + " hex digits");
      v = v * 16 + static_cast<uint32_t>(d);
      ++pos_;
    }
    if (v > 0x10FFFF) fail(at, "code point beyond U+10FFFF");
    return v;
  }

  // One character of a literal or class: an escape or a UTF-8 sequence (validated).
  uint32_t character() {
    const size_t at = pos_;
    const auto c = static_cast<unsigned char>(peek());
    if (c == '\\') {
      ++pos_;
      if (at_end()) fail(at, "unfinished escape at the end of the grammar");
      const char e = peek();
      ++pos_;
      switch (e) {
        case 'x': return hex(2, at);
        case 'u': return hex(4, at);
        case 'U': return hex(8, at);
        case 't': return '\t';
        case 'r': return '\r';
        case 'n': return '\n';
        case '\\': case '"': case '[': case ']': case '-': case '^': case '.': case '/': case '\'':
          return static_cast<unsigned char>(e);
        default: fail(at, std::string("unknown escape '\\") + e + "'");
      }
    }
    if (c < 0x80) {
      ++pos_;
      return c;
    }
    int n = c >= 0xF0 && c <= 0xF4 ? 3 : c >= 0xE0 ? 2 : c >= 0xC2 && c < 0xE0 ? 1 : -1;
    if (c >= 0xF5) n = -1;
    if (n < 0) fail(at, "invalid UTF-8 byte 0x" + to_hex(c));
    uint32_t v = c & (0x3F >> n);
    for (int i = 1; i <= n; ++i) {
      const auto b = static_cast<unsigned char>(peek(static_cast<size_t>(i)));
      if ((b & 0xC0) != 0x80) fail(at, "invalid UTF-8 sequence (byte 0x" + to_hex(c) + " not followed by continuation bytes)");
      v = (v << 6) | (b & 0x3F);
    }
    const uint32_t min = n == 1 ? 0x80 : n == 2 ? 0x800 : 0x10000;
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) fail(at, "invalid UTF-8 sequence");
    pos_ += static_cast<size_t>(n) + 1;
    return v;
  }
  static std::string to_hex(unsigned c) {
    const char* d = "0123456789ABCDEF";
    return {d[(c >> 4) & 15], d[c & 15]};
  }

  void alternates(const std::string& rule_name, uint32_t id, bool nested) {
    std::vector<Elem> out;
    sequence(out, rule_name, nested);
    while (peek() == '|') {
      out.push_back({Op::kAlt, 0});
      ++pos_;
      skip_space(true);
      sequence(out, rule_name, nested);
    }
    out.push_back({Op::kEnd, 0});
    rules_[id] = std::move(out);
  }

  void sequence(std::vector<Elem>& out, const std::string& rule_name, bool nested) {
    size_t last = out.size();
    bool have_last = false;
    while (!at_end()) {
      const size_t at = pos_;
      const char c = peek();
      if (c == '"') {
        ++pos_;
        last = out.size();
        have_last = true;
        while (peek() != '"') {
          if (at_end()) fail(at, "unterminated literal (no closing '\"')");
          out.push_back({Op::kChar, character()});
        }
        ++pos_;
      } else if (c == '[') {
        ++pos_;
        last = out.size();
        have_last = true;
        Op first = Op::kChar;
        if (peek() == '^') {
          ++pos_;
          first = Op::kCharNot;
        }
        const size_t start = out.size();
        while (peek() != ']') {
          if (at_end()) fail(at, "unterminated character class (no closing ']')");
          const uint32_t lo = character();
          out.push_back({out.size() == start ? first : Op::kCharAlt, lo});
          if (peek() == '-' && peek(1) != ']' && pos_ + 1 < src_.size()) {
            ++pos_;
            const size_t hi_at = pos_;
            const uint32_t hi = character();
            if (hi < lo) fail(hi_at, "range end below its start");
            out.push_back({Op::kCharRngUpper, hi});
          }
        }
        if (out.size() == start) fail(at, "empty character class");
        ++pos_;
      } else if (c == '.') {
        ++pos_;
        last = out.size();
        have_last = true;
        out.push_back({Op::kCharAny, 0});
      } else if (is_word_char(c)) {
        const std::string_view n = name();
        // `name ::=` here means the rule ended without a newline before the next one.
        size_t p = pos_;
        while (p < src_.size() && (src_[p] == ' ' || src_[p] == '\t')) ++p;
        if (src_.substr(p, 3) == "::=") fail(at, "missing newline before rule '" + std::string(n) + "'");
        last = out.size();
        have_last = true;
        out.push_back({Op::kRuleRef, symbol(n, at)});
      } else if (c == '(') {
        ++pos_;
        skip_space(true);
        if (++depth_ > kMaxDepth) fail(at, "groups nested more than " + std::to_string(kMaxDepth) + " deep");
        const uint32_t sub = helper(rule_name, at);
        alternates(rule_name, sub, true);
        --depth_;
        if (peek() != ')') fail(at, "unclosed group (no matching ')')");
        ++pos_;
        last = out.size();
        have_last = true;
        out.push_back({Op::kRuleRef, sub});
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        if (!have_last) fail(at, std::string("'") + c + "' follows nothing it could repeat");
        ++pos_;
        int min = 0, max = -1;
        if (c == '+') min = 1;
        if (c == '?') max = 1;
        if (c == '{') {
          skip_space(false);
          min = number(at);
          skip_space(false);
          if (peek() == ',') {
            ++pos_;
            skip_space(false);
            max = peek() == '}' ? -1 : number(at);
          } else {
            max = min;
          }
          skip_space(false);
          if (peek() != '}') fail(at, "repetition: expected '}'");
          ++pos_;
          if (max >= 0 && max < min) fail(at, "repetition {m,n} with n < m");
        }
        repeat(out, last, min, max, rule_name, at);
        have_last = false;
      } else {
        break;
      }
      skip_space(nested);
    }
  }

  int number(size_t at) {
    if (!(peek() >= '0' && peek() <= '9')) fail(at, "repetition: expected a number");
    long v = 0;
    while (peek() >= '0' && peek() <= '9') {
      v = v * 10 + (peek() - '0');
      if (v > 10000) fail(at, "repetition count above 10000");
      ++pos_;
    }
    return static_cast<int>(v);
  }

  void repeat(std::vector<Elem>& out, size_t last, int min, int max, const std::string& rule_name,
              size_t at) {
    const std::vector<Elem> item(out.begin() + static_cast<long>(last), out.end());
    out.resize(last);
    if (item.empty()) return;
    for (int i = 0; i < min; ++i) out.insert(out.end(), item.begin(), item.end());
    if (max < 0) {  // r ::= item r |
      const uint32_t r = helper(rule_name, at);
      std::vector<Elem> body = item;
      body.push_back({Op::kRuleRef, r});
      body.push_back({Op::kAlt, 0});
      body.push_back({Op::kEnd, 0});
      rules_[r] = std::move(body);
      out.push_back({Op::kRuleRef, r});
      return;
    }
    // max - min optional copies, nested: r1 ::= item r2 | ; r2 ::= item r3 | ; ...
    int32_t next = -1;
    for (int i = 0; i < max - min; ++i) {
      const uint32_t r = helper(rule_name, at);
      std::vector<Elem> body = item;
      if (next >= 0) body.push_back({Op::kRuleRef, static_cast<uint32_t>(next)});
      body.push_back({Op::kAlt, 0});
      body.push_back({Op::kEnd, 0});
      rules_[r] = std::move(body);
      next = static_cast<int32_t>(r);
    }
    if (next >= 0) out.push_back({Op::kRuleRef, static_cast<uint32_t>(next)});
  }

  void check(const Grammar::Impl& g);
};

void Parser::parse(Grammar::Impl& g, const std::string& root_name) {
  skip_space(true);
  while (!at_end()) {
    const size_t at = pos_;
    const std::string n(name());
    skip_space(false);
    if (src_.substr(pos_, 3) != "::=") fail(pos_, "expected '::=' after rule name '" + n + "'");
    pos_ += 3;
    skip_space(true);
    const uint32_t id = symbol(n, at);
    if (defined_[id]) fail(at, "rule '" + n + "' is defined twice");
    defined_[id] = true;
    where_[id] = at;
    alternates(n, id, false);
    if (!at_end() && peek() != '\n' && peek() != '\r') {
      fail(pos_, std::string("unexpected '") + peek() + "'");
    }
    skip_space(true);
  }
  for (size_t i = 0; i < rules_.size(); ++i) {
    if (!defined_[i]) fail(where_[i], "undefined rule '" + names_[i] + "'");
  }
  auto root = ids_.find(root_name);
  if (root == ids_.end()) {
    throw Error(ErrorCode::kInvalidArgument, "grammar: no rule named '" + root_name + "' to start from");
  }
  // Flatten.
  g.source = std::string(src_);
  g.root = root->second;
  g.rule_names = names_;
  for (const auto& r : rules_) {
    g.rule_start.push_back(static_cast<uint32_t>(g.elems.size()));
    g.elems.insert(g.elems.end(), r.begin(), r.end());
  }
  g.class_at.assign(g.elems.size(), -1);
  for (size_t p = 0; p < g.elems.size(); ++p) {
    const Op op = g.elems[p].op;
    if (op != Op::kChar && op != Op::kCharNot && op != Op::kCharAny) continue;
    CharClass cc;
    cc.any = op == Op::kCharAny;
    cc.negated = op == Op::kCharNot;
    size_t q = p;
    if (!cc.any) {
      cc.ranges.push_back({g.elems[p].value, g.elems[p].value});
      for (q = p + 1; q < g.elems.size(); ++q) {
        if (g.elems[q].op == Op::kCharRngUpper) cc.ranges.back().second = g.elems[q].value;
        else if (g.elems[q].op == Op::kCharAlt) cc.ranges.push_back({g.elems[q].value, g.elems[q].value});
        else break;
      }
    } else {
      q = p + 1;
    }
    cc.next = static_cast<uint32_t>(q);
    for (uint32_t c = 0; c < 128; ++c) {
      bool in = cc.any;
      for (const auto& r : cc.ranges) in |= (c >= r.first && c <= r.second);
      if (!cc.any && cc.negated) in = !in;
      if (in) cc.ascii[c >> 6] |= uint64_t{1} << (c & 63);
    }
    g.class_at[p] = static_cast<int32_t>(g.classes.size());
    g.classes.push_back(std::move(cc));
  }
  check(g);
}

// Refuses grammars the matcher could loop on: left recursion (a rule reaching itself without
// consuming a character) and rules with no finite derivation.
void Parser::check(const Grammar::Impl& g) {
  const size_t n = rules_.size();
  // Alternatives of rule r as [begin, end) element ranges.
  auto alts = [&](size_t r) {
    std::vector<std::pair<size_t, size_t>> a;
    size_t b = 0;
    for (size_t i = 0; i < rules_[r].size(); ++i) {
      const Op op = rules_[r][i].op;
      if (op == Op::kAlt || op == Op::kEnd) {
        a.push_back({b, i});
        b = i + 1;
      }
    }
    return a;
  };
  auto is_char = [](Op op) { return op != Op::kRuleRef; };
  std::vector<bool> nullable(n, false), productive(n, false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      for (auto [b, e] : alts(r)) {
        bool all_null = true, all_prod = true;
        for (size_t i = b; i < e; ++i) {
          const Elem& el = rules_[r][i];
          if (el.op == Op::kCharRngUpper || el.op == Op::kCharAlt) continue;
          if (is_char(el.op)) {
            all_null = false;
          } else {
            all_null = all_null && nullable[el.value];
            all_prod = all_prod && productive[el.value];
          }
        }
        if (all_null && !nullable[r]) nullable[r] = changed = true;
        if (all_prod && !productive[r]) productive[r] = changed = true;
      }
    }
  }
  for (size_t r = 0; r < n; ++r) {
    if (!productive[r]) {
      fail(where_[r], "rule '" + names_[r] + "' can never end: each alternative refers back to it");
    }
  }
  // Left-reference edges: r -> s when s can be reached before any character is consumed.
  std::vector<std::vector<uint32_t>> left(n);
  for (size_t r = 0; r < n; ++r) {
    for (auto [b, e] : alts(r)) {
      for (size_t i = b; i < e; ++i) {
        const Elem& el = rules_[r][i];
        if (el.op == Op::kCharRngUpper || el.op == Op::kCharAlt) continue;
        if (is_char(el.op)) break;
        left[r].push_back(el.value);
        if (!nullable[el.value]) break;
      }
    }
  }
  std::vector<int> state(n, 0);  // 0 new, 1 on the path, 2 done
  std::vector<uint32_t> path;
  std::function<void(uint32_t)> visit = [&](uint32_t r) {
    state[r] = 1;
    path.push_back(r);
    for (uint32_t s : left[r]) {
      if (state[s] == 1) {
        std::string cycle;
        auto it = std::find(path.begin(), path.end(), s);
        for (; it != path.end(); ++it) cycle += names_[*it] + " -> ";
        fail(where_[s], "left recursion: " + cycle + names_[s] +
                            " (the rule can reach itself without matching a character)");
      }
      if (state[s] == 0) visit(s);
    }
    path.pop_back();
    state[r] = 2;
  };
  for (uint32_t r = 0; r < n; ++r) if (state[r] == 0) visit(r);
  (void)g;
}

}  // namespace

void parse_gbnf(std::string_view text, const std::string& root, Grammar::Impl& out) {
  Parser(text).parse(out, root);
}

}  // namespace piquant::grammar
