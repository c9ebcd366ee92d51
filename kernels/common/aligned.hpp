#pragma once
// AlignedBytes: an owned, zero-initialized byte buffer whose start is aligned to a cache line
// (64 bytes by default). Packed weight groups are 72 (q4) / 136 (q8) bytes, so with a 64-byte
// aligned base the kernels' loads split cache lines in a fixed, predictable pattern and the
// hardware prefetchers see whole lines; a std::vector<uint8_t> is only 16-byte aligned, which
// measured ~1.2x slower for the q4 GEMV (docs/kernels.md). Used for OwnedQuantWeight and any
// runtime buffer the matmul kernels stream through. Header-only; the kernels themselves never
// allocate (the runtime owns these buffers).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace piquant::kernels {

/// Bytes `n` rounds up to: whole `align` units (at least one), so a kernel's full-vector load of
/// the last group stays inside the allocation.
inline size_t aligned_size(size_t n, size_t align) {
  return n == 0 ? align : (n + align - 1) / align * align;
}

/// The tree's one aligned allocation (AlignedBytes here, alloc_aligned / WeightArena in
/// lib/util/aligned.hpp): aligned_size(n, align) uninitialized bytes aligned to `align` (a power
/// of two >= sizeof(void*)); release with std::free. Throws std::bad_alloc.
inline uint8_t* aligned_malloc(size_t n, size_t align) {
  void* p = nullptr;
  if (posix_memalign(&p, align, aligned_size(n, align)) != 0 || p == nullptr) {
    throw std::bad_alloc();
  }
  return static_cast<uint8_t*>(p);
}

class AlignedBytes {
 public:
  static constexpr size_t kDefaultAlign = 64;

  AlignedBytes() = default;
  /// n zero bytes aligned to `align` (a power of two >= sizeof(void*)). Throws std::bad_alloc.
  explicit AlignedBytes(size_t n, size_t align = kDefaultAlign) { resize(n, align); }
  ~AlignedBytes() { std::free(data_); }
  AlignedBytes(const AlignedBytes&) = delete;
  AlignedBytes& operator=(const AlignedBytes&) = delete;
  AlignedBytes(AlignedBytes&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  AlignedBytes& operator=(AlignedBytes&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }

  /// Reallocates to n zero bytes (old contents are dropped, not copied).
  void resize(size_t n, size_t align = kDefaultAlign) {
    std::free(data_);
    data_ = nullptr;
    size_ = 0;
    if (n == 0) return;
    data_ = aligned_malloc(n, align);
    std::memset(data_, 0, aligned_size(n, align));
    size_ = n;
  }

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  uint8_t& operator[](size_t i) { return data_[i]; }
  const uint8_t& operator[](size_t i) const { return data_[i]; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace piquant::kernels
