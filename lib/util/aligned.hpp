#pragma once
// Big weight buffers for the kernels: 64-byte aligned (one cache line, one zmm load per group
// block), and on Linux backed by transparent huge pages where the kernel allows it (madvise), so
// streaming hundreds of MB of weights per decoded token does not miss the TLB every 4 KB.
#include <cstddef>
#include <cstdint>
#include <memory>

namespace piquant {

/// Alignment of every buffer from alloc_aligned().
constexpr size_t kBufferAlign = 64;

/// n bytes (uninitialized), aligned to kBufferAlign, huge-page backed when n is large (Linux
/// THP in madvise mode). Freed when the last shared_ptr goes. Throws std::bad_alloc.
std::shared_ptr<uint8_t> alloc_aligned(size_t n);

}  // namespace piquant
