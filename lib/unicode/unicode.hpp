#pragma once
// Unicode for the tokenizers: general categories of every code point (a range table generated
// at build time from UnicodeData.txt, looked up by binary search), the White_Space property,
// and UTF-8 decoding that never fails (an invalid byte decodes as itself, category C).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace piquant::unicode {

/// Major general category: Letter, Mark, Number, Punctuation, Symbol, Separator, Other.
enum class Category : uint8_t { kC, kL, kM, kN, kP, kS, kZ };

/// The code point's major general category (unassigned and invalid: kC).
Category category(char32_t cp);
inline bool is_letter(char32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return category(cp) == Category::kL;
}
inline bool is_number(char32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return category(cp) == Category::kN;
}
inline bool is_mark(char32_t cp) { return cp >= 0x300 && category(cp) == Category::kM; }
/// The White_Space property (what \s means in Unicode regex engines).
bool is_whitespace(char32_t cp);

/// A code point not produced by valid UTF-8: marks an invalid byte (the byte is in the low bits).
constexpr char32_t kInvalidBase = 0x110000;

/// Decodes the UTF-8 sequence at s[i] (i < s.size()). Returns its length in bytes (>= 1) and
/// stores the code point; an invalid or truncated sequence yields length 1 and
/// kInvalidBase + byte.
size_t decode_utf8(std::string_view s, size_t i, char32_t* cp);
/// Appends the UTF-8 encoding of cp (< 0x110000).
void append_utf8(std::string& out, char32_t cp);
/// Length of the longest prefix of s that ends on a whole UTF-8 character boundary, counting an
/// invalid byte as a whole character but holding back a valid sequence that is still incomplete.
size_t complete_utf8_prefix(std::string_view s);

}  // namespace piquant::unicode
