#pragma once
// The compiled form of a GBNF grammar, as llama.cpp lays it out: every rule is a flat run of
// elements (alternative, kAlt, alternative, ..., kEnd) in one array, so a parse position is one
// uint32 index. Repetitions are rewritten into helper rules at parse time, and each character
// class gets a precomputed ASCII bitmap so matching an ASCII byte is one bit test.
#include <cstdint>
#include <string>
#include <vector>

#include "piquant/grammar.hpp"

namespace piquant::grammar {

enum class Op : uint8_t {
  kEnd,       // end of the rule
  kAlt,       // end of an alternative; the next one follows
  kRuleRef,   // value: rule index
  kChar,      // value: code point; starts a class (may be followed by kCharAlt / kCharRngUpper)
  kCharNot,   // like kChar, negated class
  kCharRngUpper,  // value: upper end of a range started by the element before
  kCharAlt,   // value: another code point (or range start) of the same class
  kCharAny,   // '.': any code point
};

struct Elem {
  Op op;
  uint32_t value;
};

/// A character class at a position of `elems` (kChar / kCharNot / kCharAny starts one).
struct CharClass {
  uint64_t ascii[2] = {0, 0};          // membership of code points 0..127 (negation applied)
  std::vector<std::pair<uint32_t, uint32_t>> ranges;  // inclusive, as written (negation not applied)
  bool negated = false;
  bool any = false;
  uint32_t next = 0;                   // position after the class
  bool match(uint32_t cp) const {
    if (cp < 128) return (ascii[cp >> 6] >> (cp & 63)) & 1;
    if (any) return true;
    bool in = false;
    for (const auto& r : ranges) in |= (cp >= r.first && cp <= r.second);
    return in != negated;
  }
  /// Whether some code point in [lo, hi] matches (for a partial UTF-8 sequence).
  bool match_range(uint32_t lo, uint32_t hi) const {
    if (any) return true;
    if (!negated) {
      for (const auto& r : ranges) if (r.first <= hi && r.second >= lo) return true;
      return false;
    }
    for (const auto& r : ranges) if (r.first <= lo && r.second >= hi) return false;
    return true;
  }
};

}  // namespace piquant::grammar

namespace piquant {
namespace grammar {
/// Parses GBNF text into `out` (gbnf_parser.cpp); throws Error naming line:column.
void parse_gbnf(std::string_view text, const std::string& root, Grammar::Impl& out);
}  // namespace grammar

struct Grammar::Impl {
  std::string source;
  std::vector<grammar::Elem> elems;
  std::vector<uint32_t> rule_start;      // position of each rule's first element
  std::vector<std::string> rule_names;
  std::vector<int32_t> class_at;         // index into classes for a class start, else -1
  std::vector<grammar::CharClass> classes;
  uint32_t root = 0;
};

}  // namespace piquant
