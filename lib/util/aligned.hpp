#pragma once
// Big weight buffers for the kernels: 64-byte aligned (one cache line; the packed groups start
// on a line), and on Linux backed by transparent huge pages where the kernel allows it (THP in
// madvise mode), so streaming hundreds of MB of weights per decoded token does not take a TLB
// miss every 4 KB. Tensors are carved out of large blocks (WeightArena) so that small tensors
// share huge pages instead of each rounding up to its own.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace piquant {

/// Alignment of every buffer from alloc_aligned() and WeightArena.
constexpr size_t kBufferAlign = 64;

/// n bytes (uninitialized), aligned to kBufferAlign; buffers of 2 MB and more start on a 2 MB
/// boundary and are advised for huge pages. Freed when the last shared_ptr goes. Throws
/// std::bad_alloc.
std::shared_ptr<uint8_t> alloc_aligned(size_t n);

/// Hands out kBufferAlign-aligned pieces of huge-page-advised blocks (kBlockBytes, or one
/// block for a bigger request). Each block is appended to `owner` when it is made, so the
/// pieces live as long as the owner's entries. Pages of a block that are never written stay
/// virtual, so the unused tail of the last block costs no memory.
class WeightArena {
 public:
  static constexpr size_t kBlockBytes = size_t{64} << 20;

  explicit WeightArena(std::vector<std::shared_ptr<const void>>& owner) : owner_(owner) {}
  uint8_t* alloc(size_t n);

 private:
  std::vector<std::shared_ptr<const void>>& owner_;
  uint8_t* next_ = nullptr;
  size_t left_ = 0;
};

}  // namespace piquant
