#include "util/aligned.hpp"

#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace piquant {

std::shared_ptr<uint8_t> alloc_aligned(size_t n) {
  constexpr size_t kHuge = size_t{2} << 20;
  const bool huge = n >= kHuge;
  const size_t align = huge ? kHuge : kBufferAlign;
  const size_t size = n == 0 ? align : (n + align - 1) / align * align;  // a multiple, as
                                                                         // aligned_alloc wants
  void* p = std::aligned_alloc(align, size);
  if (p == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (huge) madvise(p, size, MADV_HUGEPAGE);  // advisory: ignored where THP is off
#endif
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); });
}

uint8_t* WeightArena::alloc(size_t n) {
  n = (n + kBufferAlign - 1) / kBufferAlign * kBufferAlign;
  if (n > left_) {
    const size_t size = n > kBlockBytes ? n : kBlockBytes;
    std::shared_ptr<uint8_t> block = alloc_aligned(size);
    next_ = block.get();
    left_ = size;
    owner_.push_back(std::move(block));
  }
  uint8_t* p = next_;
  next_ += n;
  left_ -= n;
  return p;
}

}  // namespace piquant
