#pragma once
// Small tokenizer files built in memory for the tests (and the fuzz seed corpus): a SentencePiece
// protobuf, a llama2.c tokenizer.bin, a tiktoken ranks file, GPT-2 vocab.json + merges.txt and a
// tokenizer.json, all over the same tiny vocabularies whose encodings can be worked out by hand.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "tokenizer/tokenizer_impl.hpp"

namespace piquant::test {

// --- protobuf wire format ----------------------------------------------------------------------
inline void pb_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
inline void pb_key(std::string& out, uint32_t field, int wire) {
  pb_varint(out, (static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire));
}
inline void pb_bytes(std::string& out, uint32_t field, const std::string& s) {
  pb_key(out, field, 2);
  pb_varint(out, s.size());
  out += s;
}
inline void pb_uint(std::string& out, uint32_t field, uint64_t v) {
  pb_key(out, field, 0);
  pb_varint(out, v);
}
inline void pb_float(std::string& out, uint32_t field, float f) {
  pb_key(out, field, 5);
  char b[4];
  std::memcpy(b, &f, 4);
  out.append(b, 4);
}

struct SpmPiece {
  std::string piece;
  float score;
  int type;  // NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5 BYTE=6
};

/// The tiny SentencePiece vocabulary: <unk> <s> </s>, 256 byte pieces (ids 3..258), then
///   259 ▁  260 h  261 e  262 l  263 o  264 ll  265 ▁h  266 he  267 llo  268 ▁he  269 ▁hello
///   270 <|user|> (user-defined)
inline std::vector<SpmPiece> tiny_spm_pieces() {
  std::vector<SpmPiece> p = {{"<unk>", 0, 2}, {"<s>", 0, 3}, {"</s>", 0, 3}};
  char buf[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    p.push_back({buf, 0, 6});
  }
  const char* normal[] = {"\xE2\x96\x81", "h", "e", "l", "o", "ll", "\xE2\x96\x81h", "he", "llo",
                          "\xE2\x96\x81he", "\xE2\x96\x81hello"};
  float score = -1;
  for (const char* s : normal) p.push_back({s, score--, 1});
  p.push_back({"<|user|>", 0, 4});
  return p;
}

/// tokenizer.model bytes for tiny_spm_pieces (BPE, byte fallback, dummy prefix).
inline std::string tiny_spm_model() {
  std::string m;
  for (const SpmPiece& p : tiny_spm_pieces()) {
    std::string sp;
    pb_bytes(sp, 1, p.piece);
    pb_float(sp, 2, p.score);
    pb_uint(sp, 3, static_cast<uint64_t>(p.type));
    pb_bytes(m, 1, sp);
  }
  std::string trainer;
  pb_uint(trainer, 3, 2);   // model_type BPE
  pb_uint(trainer, 35, 1);  // byte_fallback
  pb_uint(trainer, 40, 0);  // unk_id
  pb_uint(trainer, 41, 1);  // bos_id
  pb_uint(trainer, 42, 2);  // eos_id
  pb_bytes(m, 2, trainer);
  std::string norm;
  pb_bytes(norm, 1, "identity");
  pb_uint(norm, 3, 1);  // add_dummy_prefix
  pb_uint(norm, 4, 0);  // remove_extra_whitespaces
  pb_bytes(m, 3, norm);
  return m;
}

/// A llama2.c tokenizer.bin: <unk> <s> </s>, 256 byte pieces, then
///   259 " "  260 "h"  261 "i"  262 " h"  263 "hi"  264 " hi"
inline std::string tiny_llama2c_tokenizer() {
  std::vector<std::pair<std::string, float>> v = {{"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}};
  char buf[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    v.emplace_back(buf, 0);
  }
  v.insert(v.end(), {{" ", -1}, {"h", -2}, {"i", -3}, {" h", -4}, {"hi", -5}, {" hi", -6}});
  std::string out;
  auto put = [&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
  const int32_t max_len = 8;
  put(&max_len, 4);
  for (const auto& [s, score] : v) {
    const auto len = static_cast<int32_t>(s.size());
    put(&score, 4);
    put(&len, 4);
    out += s;
  }
  return out;
}

inline std::string base64(const std::string& in) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t x = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (i + 1 < in.size()) x |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    if (i + 2 < in.size()) x |= static_cast<unsigned char>(in[i + 2]);
    out += k[(x >> 18) & 63];
    out += k[(x >> 12) & 63];
    out += i + 1 < in.size() ? k[(x >> 6) & 63] : '=';
    out += i + 2 < in.size() ? k[x & 63] : '=';
  }
  return out;
}

/// tiktoken ranks: the 256 bytes (rank = byte), then 256 "he" 257 "ll" 258 "llo" 259 "hello"
/// 260 " hello".
inline std::string tiny_tiktoken() {
  std::string out;
  for (int b = 0; b < 256; ++b) out += base64(std::string(1, static_cast<char>(b))) + " " + std::to_string(b) + "\n";
  int r = 256;
  for (const char* s : {"he", "ll", "llo", "hello", " hello"}) out += base64(s) + " " + std::to_string(r++) + "\n";
  return out;
}

/// GPT-2 style vocab.json: byte b has id b; then 256 "Ġt" 257 "he" 258 "Ġthe" 259 "lo" 260 "llo"
/// 261 <|endoftext|>.
inline std::string tiny_vocab_json() {
  std::string out = "{";
  for (int b = 0; b < 256; ++b) {
    std::string p = bytes_to_bpe_piece(std::string(1, static_cast<char>(b)));
    if (p == "\"" || p == "\\") p = "\\" + p;
    out += "\"" + p + "\": " + std::to_string(b) + ", ";
  }
  out += "\"\xC4\xA0t\": 256, \"he\": 257, \"\xC4\xA0the\": 258, \"lo\": 259, \"llo\": 260, "
         "\"<|endoftext|>\": 261}";
  return out;
}
inline std::string tiny_merges_txt() {
  return "#version: 0.2\n\xC4\xA0 t\nh e\n\xC4\xA0t he\nl o\nl lo\n";
}

/// tokenizer.json over the same vocabulary, Llama 3 style (Split regex + ByteLevel, added tokens).
inline std::string tiny_tokenizer_json() {
  std::string merges = "[\"\xC4\xA0 t\", \"h e\", \"\xC4\xA0t he\", \"l o\", \"l lo\"]";
  std::string vocab = tiny_vocab_json();
  vocab = vocab.substr(0, vocab.rfind(','));  // drop <|endoftext|>: it is an added token here
  vocab += "}";
  return std::string(R"({"version": "1.0", "added_tokens": [)") +
         R"({"id": 261, "content": "<|endoftext|>", "special": true}],)" +
         R"("normalizer": null, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [)" +
         R"({"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},)" +
         R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},)" +
         R"("decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", "ignore_merges": false, "vocab": )" +
         vocab + ", \"merges\": " + merges + "}}";
}

}  // namespace piquant::test
