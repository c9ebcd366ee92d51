#pragma once
// Attention over the KV cache: one query token, the query heads of one kv head (grouped-query
// attention), online softmax (flash-attention style) over tiles of kAttnTile positions, so no
// score row of context length is ever built and K/V stream through the cache once per group.
//
//   for each tile of 32 positions [t0, t1):
//     K tile -> f32 (convert f16 / dequantize q8; f32 used in place)
//     s[h][t] = scale * q_h . k_t                    for every query head h of the group
//     m' = max(m, max_t s), c = exp(m - m'), p = exp(s - m')
//     l = c l + sum p;   acc_h = c acc_h + sum_t p[h][t] v_t      (V tile converted likewise)
//   out_h = acc_h / l
//
// Causality is the caller's: a query at position p passes n_kv = p + 1. The arithmetic of a
// query head depends only on (q_h, n_kv, the cache contents): not on n_q, how heads are
// grouped or which thread runs it, so results are identical for any thread count.
#include <cstddef>
#include <cstdint>

#include "attention/kv_format.hpp"
#include "common/cpu.hpp"

namespace piquant::kernels {

constexpr size_t kAttnTile = 32;         ///< positions per online-softmax step
constexpr size_t kAttnMaxHeadDim = 256;  ///< largest head_dim any variant accepts
constexpr size_t kAttnMaxGroup = 8;      ///< query heads processed together (more: looped)

struct AttnArgs {
  const float* q;  ///< n_q query heads of head_dim floats, q_stride floats apart
  size_t q_stride;
  float* out;  ///< n_q output heads, out_stride floats apart
  size_t out_stride;
  size_t n_q;            ///< >= 1
  size_t head_dim;       ///< see AttnKernel::head_dim_multiple
  size_t n_kv;           ///< attend to positions [0, n_kv); >= 1
  const void* k;         ///< the kv head's K plane: row t at k + t * kv_row_bytes(type, head_dim)
  const void* v;         ///< the kv head's V plane, same layout
  const float* k_scale;  ///< q8 only: kv_q8_blocks(head_dim) scales per row, row after row
  const float* v_scale;
  float scale;  ///< softmax scale, usually 1 / sqrt(head_dim)
};

struct AttnKernel {
  const char* name;  ///< "attn_f32_f16_avx2": file, function, test and bench label
  CpuFeature needs;
  KvType kv;
  size_t head_dim_multiple;  ///< head_dim must be a multiple of this (ref: 1)
  void (*run)(const AttnArgs&);
};

/// Every compiled variant, best first (ref last); `count` gets the number of entries.
const AttnKernel* attn_kernels(size_t* count);
/// The first variant for `kv` and `head_dim` whose feature is in `enabled`
/// (default: cpu_info().enabled, i.e. honouring PIQUANT_ISA). nullptr if head_dim is 0 or
/// above kAttnMaxHeadDim.
const AttnKernel* attn_select(KvType kv, size_t head_dim);
const AttnKernel* attn_select(KvType kv, size_t head_dim, uint32_t enabled);

// The variants (one function per name; see registry.cpp for availability).
void attn_f32_f32_ref(const AttnArgs& a);
void attn_f32_f16_ref(const AttnArgs& a);
void attn_f32_q8_ref(const AttnArgs& a);
#if defined(__aarch64__)
void attn_f32_f32_neon(const AttnArgs& a);
void attn_f32_f16_neon(const AttnArgs& a);
void attn_f32_q8_neon(const AttnArgs& a);
#endif
#if defined(__x86_64__)
void attn_f32_f32_avx2(const AttnArgs& a);
void attn_f32_f16_avx2(const AttnArgs& a);
void attn_f32_q8_avx2(const AttnArgs& a);
void attn_f32_f32_avx512(const AttnArgs& a);
void attn_f32_f16_avx512(const AttnArgs& a);
void attn_f32_q8_avx512(const AttnArgs& a);
void attn_f32_f32_sse4_2(const AttnArgs& a);
void attn_f32_f16_sse4_2(const AttnArgs& a);
void attn_f32_q8_sse4_2(const AttnArgs& a);
#endif

}  // namespace piquant::kernels
