#include "util/aligned.hpp"

#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace piquant {

std::shared_ptr<uint8_t> alloc_aligned(size_t n) {
  // Buffers of at least a few huge pages start on a 2 MB boundary so THP can back all of them.
  constexpr size_t kHuge = size_t{2} << 20;
  const bool huge = n >= 4 * kHuge;
  const size_t align = huge ? kHuge : kBufferAlign;
  const size_t size = (n + align - 1) / align * align;  // aligned_alloc wants a multiple
  void* p = std::aligned_alloc(align, size == 0 ? align : size);
  if (p == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (huge) madvise(p, size, MADV_HUGEPAGE);  // advisory: ignored where THP is off
#endif
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); });
}

}  // namespace piquant
