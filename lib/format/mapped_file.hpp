#pragma once
// A read-only memory map of a whole file (RAII), and a bounds-checked cursor over bytes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "piquant/error.hpp"

namespace piquant {

class MappedFile {
 public:
  /// Maps `path` read-only; throws Error(kIo) naming the file on failure. Empty files map to
  /// an empty view.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

/// Reads little-endian values from a byte range; every read is checked against the end and a
/// failure names `what` and the offset.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, std::string source)
      : data_(data), size_(size), source_(std::move(source)) {}

  size_t offset() const { return pos_; }
  size_t size() const { return size_; }
  size_t remaining() const { return size_ - pos_; }
  bool at_end() const { return pos_ == size_; }
  const uint8_t* data() const { return data_; }
  const std::string& source() const { return source_; }

  template <class T>
  T read(const char* what) {
    static_assert(std::is_trivially_copyable_v<T>);
    require(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  /// Returns a pointer to the next `n` bytes and skips them.
  const uint8_t* take(size_t n, const char* what) {
    require(n, what);
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  std::string_view take_string(size_t n, const char* what) {
    return {reinterpret_cast<const char*>(take(n, what)), n};
  }
  void seek(size_t pos, const char* what);
  void require(size_t n, const char* what) const;
  [[noreturn]] void fail(const std::string& message) const;

 private:
  const uint8_t* data_;
  size_t size_;
  std::string source_;
  size_t pos_ = 0;
};

/// a * b, or an Error naming `what` when the product overflows size_t.
size_t checked_mul(size_t a, size_t b, const std::string& what);
size_t checked_add(size_t a, size_t b, const std::string& what);

}  // namespace piquant
