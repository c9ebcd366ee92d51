#pragma once
// The packed weight layout: what the matmul kernels read, and byte for byte what a .piq file
// stores (so loading is an mmap). Quantized types interleave the blocks of kRowInterleave
// consecutive output rows; f32/f16 stay row-major. See docs/formats.md for pictures.
//
//   q4  group g (rows 4g..4g+3), K-block b, at ((g * K/32) + b) * 72 bytes:
//       d0 d1 d2 d3 (fp16) | qs row0 (16 B) | qs row1 | qs row2 | qs row3          = 4 x BlockQ4
//   q4m d0..d3 | m0..m3 (fp16) | qs row0..row3 (16 B each)                          = 4 x BlockQ4M
//   q8  d0..d3 | row0 qs[0:16] row1 qs[0:16] row2 .. row3 | row0 qs[16:32] .. row3  = 4 x BlockQ8
//
//   q4_k, q5_k, q6_k (super-blocks of 256 values) and q5_0, q5_1 (blocks of 32): group g,
//       (super-)block b at ((g * nblocks) + b) * 4 * sizeof(Block), nblocks = K / block_values:
//       the 4 rows' GGUF blocks one after the other, bytes unchanged
//       q4_k  row0 BlockQ4K (144 B) | row1 | row2 | row3                          = 576 B
//       q5_k  4 x BlockQ5K (176 B) = 704 B;  q6_k  4 x BlockQ6K (210 B) = 840 B
//       q5_0  4 x BlockQ5_0 (22 B) = 88 B;   q5_1  4 x BlockQ5_1 (24 B) = 96 B
//       (no fp16 field is aligned in general: kernels load the scales unaligned).
//
// M that is not a multiple of 4 is padded with zero blocks (all bytes 0: d = m = 0) up to the
// next multiple; those rows compute 0 and are never written. K must be a multiple of
// block_values(t): 32, or 256 for the K-quants.
#include <cstddef>
#include <cstdint>

#include "common/quant.hpp"

namespace piquant::kernels {

/// Rows whose blocks are interleaved in the packed quantized layouts.
constexpr size_t kRowInterleave = 4;

/// Bytes of one packed group block (kRowInterleave rows x one K-block of block_values(T)
/// values: 32, or 256 for the K-quants) of the quantized type T: the stride the matmul kernels
/// step by.
template <WeightType T>
constexpr size_t kGroupBytes =
    kRowInterleave * (T == WeightType::kQ8    ? sizeof(BlockQ8)
                      : T == WeightType::kQ4M ? sizeof(BlockQ4M)
                      : T == WeightType::kQ4K ? sizeof(BlockQ4K)
                      : T == WeightType::kQ5K ? sizeof(BlockQ5K)
                      : T == WeightType::kQ6K ? sizeof(BlockQ6K)
                      : T == WeightType::kQ5_0 ? sizeof(BlockQ5_0)
                      : T == WeightType::kQ5_1 ? sizeof(BlockQ5_1)
                                              : sizeof(BlockQ4));
static_assert(kGroupBytes<WeightType::kQ4K> == 576 && kGroupBytes<WeightType::kQ6K> == 840 &&
              kGroupBytes<WeightType::kQ5_0> == 88, "packed K-quant group sizes");

/// Row alignment of the packed layout of t: 4 for quantized types, 1 for f32/f16.
inline size_t row_interleave(WeightType t) { return is_quantized(t) ? kRowInterleave : 1; }
/// Bytes of the packed m x k matrix of type t (k % block_values(t) == 0), padding included.
size_t packed_size(WeightType t, size_t m, size_t k);
/// Row-major GGUF-style rows (row_bytes(t, k) each) -> packed layout (packed_size bytes).
void pack(WeightType t, const void* rows, size_t m, size_t k, void* packed);
/// Packed layout -> row-major rows (padding dropped). unpack(pack(x)) == x byte for byte.
void unpack(WeightType t, const void* packed, size_t m, size_t k, void* rows);

}  // namespace piquant::kernels
