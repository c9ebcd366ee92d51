#pragma once
// The matmul tile drivers, shared by every ISA file (matmul_avx2.cpp, matmul_avx512vnni.cpp,
// matmul_neon*.{cpp,hpp}): how a call's rows [m0, m1) and tokens [n0, n1) are cut into register
// tiles, how the token tail (fewer than a full tile) becomes a tile of a compile-time width, and
// how a tile's rows outside [m0, m1) are left unstored. Each ISA file keeps only its tile bodies
// (the loads, dot products and float sequence) and passes them in as functors; the drivers add
// no arithmetic, so results are the bits the per-ISA copies gave (docs/kernels.md).
//
// Every driver and every functor given to one is inlined (PIQUANT_TILE_INLINE, always_inline):
// after inlining, an ISA file's GEMM is the loop nest it wrote out by hand before, so the tile
// bodies compile as before (bench/mca.py's table within +-2 %; left to GCC's own inlining
// choices, the lambdas moved it by up to 20 % either way).
//
// Everything here has internal linkage on purpose: each ISA file is compiled with its own -m
// flags, and a template instantiated with the same arguments in two of them would be one weak
// symbol, so the linker could hand the AVX2 file the AVX-512 copy (an illegal instruction on an
// AVX2-only CPU). In an unnamed namespace every file keeps its own.
#include <cstddef>
#include <type_traits>

#include "common/quant.hpp"
#include "matmul/matmul.hpp"

/// On every driver here and on the lambdas the ISA files pass them: `[&](...) PIQUANT_TILE_INLINE`.
#define PIQUANT_TILE_INLINE __attribute__((always_inline))

namespace piquant::kernels {
namespace {  // NOLINT(google-build-namespaces): see above
namespace tiles {

/// A tile width known at compile time: drivers call the tile functors with Tokens<nt>{}, and
/// the functor reads it back as decltype(nt)::value.
template <int N>
using Tokens = std::integral_constant<int, N>;

/// Token pointers of a tile: act[t] = token n + t's activations from block b0 on, out[t] = its
/// output row, for t < count.
PIQUANT_TILE_INLINE inline void token_ptrs(const GemmArgs& a, size_t n, int count, size_t b0,
                                           const BlockQ8A** act, float** out) {
  for (int t = 0; t < count; ++t) {
    act[t] = reinterpret_cast<const BlockQ8A*>(static_cast<const char*>(a.act) +
                                               (n + static_cast<size_t>(t)) * a.act_stride) + b0;
    out[t] = a.dst + (n + static_cast<size_t>(t)) * a.dst_stride;
  }
}

/// As token_ptrs for a tile of `width` tokens of which only the first `count` exist: the
/// padding tokens repeat token n (computed by a fixed-width tile, never stored).
PIQUANT_TILE_INLINE inline void token_ptrs_padded(const GemmArgs& a, size_t n, int count,
                                                  int width, const BlockQ8A** act, float** out) {
  for (int t = 0; t < width; ++t) {
    const size_t tn = n + static_cast<size_t>(t < count ? t : 0);
    act[t] = reinterpret_cast<const BlockQ8A*>(static_cast<const char*>(a.act) + tn * a.act_stride);
    out[t] = a.dst + tn * a.dst_stride;
  }
}

/// f(Tokens<count>{}) for a count in [1, Max] known only at run time (0 or above Max: nothing).
template <int Max, class F>
PIQUANT_TILE_INLINE inline void dispatch_count(size_t count, F&& f) {
  if constexpr (Max > 0) {
    if (count == static_cast<size_t>(Max)) {
      f(Tokens<Max>{});
    } else {
      dispatch_count<Max - 1>(count, f);
    }
  }
}

/// Tokens [n0, n1) in tiles of NT, then one tail tile of the NT - 1 .. 1 tokens left:
/// f(Tokens<nt>{}, n) per tile, n its first token.
template <int NT, class F>
PIQUANT_TILE_INLINE inline void token_tiles(size_t n0, size_t n1, F&& f) {
  size_t n = n0;
  for (; n + NT <= n1; n += NT) f(Tokens<NT>{}, n);
  dispatch_count<NT - 1>(n1 - n, [&](auto nt) PIQUANT_TILE_INLINE { f(nt, n); });
}

/// One tile of NT tokens (from token n, activations from block b0): f(act, out) with the
/// tile's token pointers (const BlockQ8A* const*, float* const*).
template <int NT, class F>
PIQUANT_TILE_INLINE inline void with_tokens(const GemmArgs& a, size_t n, size_t b0, F&& f) {
  const BlockQ8A* act[NT];
  float* out[NT];
  token_ptrs(a, n, NT, b0, act, out);
  f(static_cast<const BlockQ8A* const*>(act), static_cast<float* const*>(out));
}

/// The row groups of one tile of NT tokens: f(act, out, row) for every group of
/// kRowInterleave rows from the group boundary at or below a.m0 up to a.m1 (a tile body
/// stores only the rows inside [a.m0, a.m1)).
template <int NT, class F>
PIQUANT_TILE_INLINE inline void group_rows(const GemmArgs& a, size_t n, F&& f) {
  with_tokens<NT>(a, n, 0, [&](const BlockQ8A* const* act, float* const* out) PIQUANT_TILE_INLINE {
    for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += kRowInterleave) {
      f(act, out, row);
    }
  });
}

/// Row slices of `step` rows (a multiple of kRowInterleave) from the group boundary at or below
/// a.m0: f(r), r = a with m0 / m1 clipped to the slice.
template <class F>
PIQUANT_TILE_INLINE inline void row_slices(const GemmArgs& a, size_t step, F&& f) {
  for (size_t row = a.m0 - a.m0 % kRowInterleave; row < a.m1; row += step) {
    GemmArgs r = a;
    r.m0 = row > a.m0 ? row : a.m0;
    r.m1 = row + step < a.m1 ? row + step : a.m1;
    f(static_cast<const GemmArgs&>(r));
  }
}

/// The GEMV driver: every token alone, f(a, Tokens<1>{}, n).
template <class F>
PIQUANT_TILE_INLINE inline void gemv(const GemmArgs& a, F&& f) {
  for (size_t n = a.n0; n < a.n1; ++n) f(a, Tokens<1>{}, n);
}

/// The GEMM driver: row slices of `rows` rows, and over each slice the token tiles of NT (then
/// the tail tile): f(slice, Tokens<nt>{}, n). The slice's weights stay in L1/L2 while the token
/// tiles pass over them.
template <int NT, class F>
PIQUANT_TILE_INLINE inline void gemm(const GemmArgs& a, size_t rows, F&& f) {
  row_slices(a, rows, [&](const GemmArgs& r) PIQUANT_TILE_INLINE {
    token_tiles<NT>(a.n0, a.n1, [&](auto nt, size_t n) PIQUANT_TILE_INLINE { f(r, nt, n); });
  });
}

}  // namespace tiles
}  // namespace
}  // namespace piquant::kernels
