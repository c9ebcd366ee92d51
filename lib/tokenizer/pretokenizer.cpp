#include "tokenizer/pretokenizer.hpp"

#include "piquant/error.hpp"
#include "unicode/unicode.hpp"

namespace piquant {
namespace {

enum : uint8_t { kLetter = 1, kNumber = 2, kSpace = 4, kNewline = 8 };

// The text decoded once: code points, their classes and byte offsets (off[n] = text size).
struct Decoded {
  std::vector<char32_t> cp;
  std::vector<uint8_t> cls;
  std::vector<size_t> off;

  explicit Decoded(std::string_view s) {
    cp.reserve(s.size());
    cls.reserve(s.size());
    off.reserve(s.size() + 1);
    for (size_t i = 0; i < s.size();) {
      char32_t c;
      const size_t len = unicode::decode_utf8(s, i, &c);
      uint8_t k = 0;
      if (unicode::is_letter(c)) k = kLetter;
      else if (unicode::is_number(c)) k = kNumber;
      else if (unicode::is_whitespace(c)) k = (c == '\r' || c == '\n') ? kSpace | kNewline : kSpace;
      cp.push_back(c);
      cls.push_back(k);
      off.push_back(i);
      i += len;
    }
    off.push_back(s.size());
  }
  size_t size() const { return cp.size(); }
  bool letter(size_t i) const { return cls[i] & kLetter; }
  bool number(size_t i) const { return cls[i] & kNumber; }
  bool space(size_t i) const { return cls[i] & kSpace; }
  bool newline(size_t i) const { return cls[i] & kNewline; }
  bool other(size_t i) const { return cls[i] == 0; }  // [^\s\p{L}\p{N}]
};

char32_t fold(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c == 0x17F) return 's';  // LATIN SMALL LETTER LONG S folds to s
  return c;
}

// 's|'t|'re|'ve|'m|'ll|'d, optionally case-insensitive. Returns the end or 0 for no match.
size_t contraction(const Decoded& d, size_t i, size_t n, bool icase) {
  if (d.cp[i] != '\'' || i + 1 >= n) return 0;
  auto c = [&](size_t k) { return icase ? fold(d.cp[k]) : d.cp[k]; };
  const char32_t a = c(i + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
  if (i + 2 < n) {
    const char32_t b = c(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
  }
  return 0;
}

// \s+(?!\S)|\s+ at a whitespace position: all of the run at the end of the text, otherwise all
// but its last character (which then leads the next chunk), but at least one.
size_t whitespace_tail(const Decoded& d, size_t i, size_t n) {
  size_t k = i;
  while (k < n && d.space(k)) ++k;
  if (k == n || k - i == 1) return k;
  return k - 1;
}

size_t match_gpt2(const Decoded& d, size_t i, size_t n) {
  if (size_t e = contraction(d, i, n, false)) return e;
  const size_t j = (d.cp[i] == ' ' && i + 1 < n) ? i + 1 : i;
  // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: the optional space only when the class follows.
  for (const uint8_t want : {uint8_t{kLetter}, uint8_t{kNumber}, uint8_t{0}}) {
    auto is = [&](size_t k) { return want ? (d.cls[k] & want) != 0 : d.other(k); };
    size_t s = (j != i && is(j)) ? j : i;
    if (!is(s)) continue;
    while (s < n && is(s)) ++s;
    return s;
  }
  return whitespace_tail(d, i, n);  // d.cp[i] is whitespace here
}

size_t match_llama3(const Decoded& d, size_t i, size_t n, size_t max_digits) {
  if (size_t e = contraction(d, i, n, true)) return e;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  {
    size_t j = i;
    if (!d.letter(i) && !d.number(i) && !d.newline(i) && i + 1 < n && d.letter(i + 1)) j = i + 1;
    if (d.letter(j)) {
      while (j < n && d.letter(j)) ++j;
      return j;
    }
  }
  // \p{N}{1,3}
  if (d.number(i)) {
    size_t j = i;
    while (j < n && d.number(j) && j - i < max_digits) ++j;
    return j;
  }
  // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
  {
    size_t j = (d.cp[i] == ' ' && i + 1 < n && d.other(i + 1)) ? i + 1 : i;
    if (d.other(j)) {
      while (j < n && d.other(j)) ++j;
      while (j < n && d.newline(j)) ++j;
      return j;
    }
  }
  // \s*[\r\n]+ : up to the last newline of the whitespace run
  size_t k = i, last_nl = n;
  while (k < n && d.space(k)) {
    if (d.newline(k)) last_nl = k;
    ++k;
  }
  if (last_nl != n) return last_nl + 1;
  return whitespace_tail(d, i, n);
}

void split(PreTokenizer p, const Decoded& d, size_t begin, size_t end,
           std::vector<std::pair<size_t, size_t>>& chunks) {
  for (size_t i = begin; i < end;) {
    size_t e;
    switch (p) {
      case PreTokenizer::kLlama3: e = match_llama3(d, i, end, 3); break;
      case PreTokenizer::kQwen2: e = match_llama3(d, i, end, 1); break;
      default: e = match_gpt2(d, i, end); break;
    }
    if (e <= i) e = i + 1;  // cannot happen: every class has an alternative; stay safe
    chunks.emplace_back(d.off[i], d.off[e]);
    i = e;
  }
}

}  // namespace

const char* to_string(PreTokenizer p) {
  switch (p) {
    case PreTokenizer::kGpt2: return "gpt2";
    case PreTokenizer::kLlama3: return "llama3";
    case PreTokenizer::kQwen2: return "qwen2";
    case PreTokenizer::kSmolLM: return "smollm";
  }
  return "?";
}

PreTokenizer pretokenizer_from_name(std::string_view name) {
  if (name == "gpt2" || name == "gpt-2" || name == "default" || name == "phi-2") {
    return PreTokenizer::kGpt2;
  }
  if (name == "llama3" || name == "llama-bpe" || name == "llama-v3" || name == "cl100k" ||
      name == "smaug-bpe" || name == "dbrx") {
    return PreTokenizer::kLlama3;
  }
  if (name == "qwen2" || name == "deepseek-r1-qwen" || name == "megrez") return PreTokenizer::kQwen2;
  if (name == "smollm") return PreTokenizer::kSmolLM;
  throw Error(ErrorCode::kUnsupported,
              "pre-tokenizer '" + std::string(name) +
                  "' is not supported (known: gpt2, llama-bpe/llama3, qwen2, smollm)");
}

bool pretokenizer_from_regex(std::string_view regex, PreTokenizer* out) {
  static const char* const kLlama3Re =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  static const char* const kQwen2Re =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  static const char* const kGpt2Re =
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
  if (regex == kLlama3Re) *out = PreTokenizer::kLlama3;
  else if (regex == kQwen2Re) *out = PreTokenizer::kQwen2;
  else if (regex == kGpt2Re) *out = PreTokenizer::kGpt2;
  else return false;
  return true;
}

void pretokenize(PreTokenizer p, std::string_view text,
                 std::vector<std::pair<size_t, size_t>>& chunks) {
  const Decoded d(text);
  const size_t n = d.size();
  if (p != PreTokenizer::kSmolLM) {
    split(p, d, 0, n, chunks);
    return;
  }
  // HF Digits(individual_digits) then ByteLevel's GPT-2 regex on each piece between digits.
  size_t start = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!d.number(i)) continue;
    split(PreTokenizer::kGpt2, d, start, i, chunks);
    chunks.emplace_back(d.off[i], d.off[i + 1]);
    start = i + 1;
  }
  split(PreTokenizer::kGpt2, d, start, n, chunks);
}

}  // namespace piquant
