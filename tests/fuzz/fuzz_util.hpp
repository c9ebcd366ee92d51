#pragma once
// Shared by the libFuzzer targets: bytes as a file (for APIs that take paths) and a workout for
// any tokenizer a parser accepted (encode/decode/stream must never crash, whatever the vocabulary).
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <piquant/tokenizer.hpp>
#include <string>
#include <string_view>

namespace piquant::fuzz {

/// The fuzz input as an anonymous in-memory file, reachable by path (/proc/self/fd/N).
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    fd_ = ::memfd_create("piquant-fuzz", 0);
    if (fd_ < 0) {
      std::perror("memfd_create");
      __builtin_trap();
    }
    for (size_t off = 0; off < size;) {
      const ssize_t w = ::write(fd_, data + off, size - off);
      if (w <= 0) __builtin_trap();
      off += static_cast<size_t>(w);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

/// Splits the input at the first NUL byte (two files in one input, e.g. vocab.json + merges.txt).
inline std::pair<std::string_view, std::string_view> split_at_nul(const uint8_t* data,
                                                                  size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const size_t z = all.find('\0');
  if (z == std::string_view::npos) return {all, std::string_view()};
  return {all.substr(0, z), all.substr(z + 1)};
}

/// Encodes and decodes a few awkward texts with every option; nothing here may throw or crash.
inline void exercise(const Tokenizer& t) {
  static const char* const kTexts[] = {
      "Hello, world! It's 2024.\n\n  x",
      "안녕하세요 世界 🇰🇷👨‍👩‍👧 e\xCC\x81",
      "<s></s><unk><|endoftext|><|eot_id|><|user|>",
      "\xFF\xC3(\xE2\x82",
      "",
  };
  for (const char* text : kTexts) {
    for (const bool special : {false, true}) {
      EncodeOptions eo;
      eo.parse_special = special;
      const auto ids = t.encode(text, eo);
      (void)t.decode(ids);
      (void)t.decode(ids, DecodeOptions{true});
      TokenStream s(t);
      for (TokenId id : ids) (void)s.push(id);
      (void)s.flush();
    }
  }
  const auto n = static_cast<TokenId>(t.vocab_size());
  for (TokenId id : {TokenId{0}, n - 1, t.bos_id(), t.eos_id()}) {
    if (id < 0 || id >= n) continue;
    (void)t.piece(id);
    (void)t.kind(id);
    (void)t.find(t.piece(id));
    (void)t.is_end_of_generation(id);
    (void)t.token_bytes(id, n - 1);
  }
}

}  // namespace piquant::fuzz
