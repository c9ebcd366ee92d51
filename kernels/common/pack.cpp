#include "common/pack.hpp"

#include <cstring>

namespace piquant::kernels {
namespace {

// Copies one K-block of the 4 rows of a group between the row-major blocks (blk[r], nullptr
// for padding rows) and the packed group block `p`, in the direction `to_packed`.
template <bool kToPacked>
void move_group_block(WeightType t, uint8_t* const blk[kRowInterleave], uint8_t* p) {
  auto mv = [](uint8_t* packed, uint8_t* row, size_t n) {
    if (kToPacked) {
      if (row) std::memcpy(packed, row, n);
      else std::memset(packed, 0, n);
    } else if (row) {
      std::memcpy(row, packed, n);
    }
  };
  for (size_t r = 0; r < kRowInterleave; ++r) {
    uint8_t* b = blk[r];
    switch (t) {
      case WeightType::kQ8:  // d | qs[0:16] of rows 0..3 | qs[16:32] of rows 0..3
        mv(p + 2 * r, b ? b + offsetof(BlockQ8, d) : nullptr, 2);
        mv(p + 8 + 16 * r, b ? b + offsetof(BlockQ8, qs) : nullptr, 16);
        mv(p + 72 + 16 * r, b ? b + offsetof(BlockQ8, qs) + 16 : nullptr, 16);
        break;
      case WeightType::kQ4:  // d | qs of rows 0..3
        mv(p + 2 * r, b ? b + offsetof(BlockQ4, d) : nullptr, 2);
        mv(p + 8 + 16 * r, b ? b + offsetof(BlockQ4, qs) : nullptr, 16);
        break;
      case WeightType::kQ4M:  // d | m | qs of rows 0..3
        mv(p + 2 * r, b ? b + offsetof(BlockQ4M, d) : nullptr, 2);
        mv(p + 8 + 2 * r, b ? b + offsetof(BlockQ4M, m) : nullptr, 2);
        mv(p + 16 + 16 * r, b ? b + offsetof(BlockQ4M, qs) : nullptr, 16);
        break;
      default:  // q4_k, q5_k, q6_k, q5_0, q5_1: the 4 rows' GGUF blocks one after the other
        mv(p + r * block_bytes(t), b, block_bytes(t));
        break;
    }
  }
}

template <bool kToPacked>
void convert(WeightType t, uint8_t* rows, size_t m, size_t k, uint8_t* packed) {
  if (!is_quantized(t)) {
    if (kToPacked) std::memcpy(packed, rows, m * row_bytes(t, k));
    else std::memcpy(rows, packed, m * row_bytes(t, k));
    return;
  }
  const size_t nb = k / block_values(t), bb = block_bytes(t), rb = row_bytes(t, k);
  const size_t groups = (m + kRowInterleave - 1) / kRowInterleave;
  for (size_t g = 0; g < groups; ++g) {
    for (size_t b = 0; b < nb; ++b) {
      uint8_t* blk[kRowInterleave];
      for (size_t r = 0; r < kRowInterleave; ++r) {
        const size_t row = g * kRowInterleave + r;
        blk[r] = row < m ? rows + row * rb + b * bb : nullptr;
      }
      move_group_block<kToPacked>(t, blk, packed + (g * nb + b) * kRowInterleave * bb);
    }
  }
}

}  // namespace

size_t packed_size(WeightType t, size_t m, size_t k) {
  const size_t il = row_interleave(t);
  return (m + il - 1) / il * il * row_bytes(t, k);
}

void pack(WeightType t, const void* rows, size_t m, size_t k, void* packed) {
  convert<true>(t, static_cast<uint8_t*>(const_cast<void*>(rows)), m, k,
                static_cast<uint8_t*>(packed));
}

void unpack(WeightType t, const void* packed, size_t m, size_t k, void* rows) {
  convert<false>(t, static_cast<uint8_t*>(rows), m, k,
                 static_cast<uint8_t*>(const_cast<void*>(packed)));
}

}  // namespace piquant::kernels
