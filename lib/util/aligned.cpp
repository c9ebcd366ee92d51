#include "util/aligned.hpp"

#include <cstdlib>

#include "common/aligned.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace piquant {

static_assert(kBufferAlign == kernels::AlignedBytes::kDefaultAlign,
              "one cache-line alignment for weight buffers");

std::shared_ptr<uint8_t> alloc_aligned(size_t n) {
  constexpr size_t kHuge = size_t{2} << 20;
  const bool huge = n >= kHuge;
  const size_t align = huge ? kHuge : kBufferAlign;
  uint8_t* p = kernels::aligned_malloc(n, align);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  // Advisory: ignored where THP is off.
  if (huge) madvise(p, kernels::aligned_size(n, align), MADV_HUGEPAGE);
#endif
  return std::shared_ptr<uint8_t>(p, [](uint8_t* q) { std::free(q); });
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
