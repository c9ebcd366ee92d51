// The matmul references: the dumbest correct code. Each weight value is read from the packed
// layout through packed_at() (one 32-value block at a time, also for the 256-value K-quant
// super-blocks: their sub-block scales are folded into the integers), integer block sums are
// int32 (exact), and the float sums are double. Used for GEMV and GEMM alike (all tokens, all
// rows). Activations are BlockQ8A blocks of 32 for every quantized type.
#include <cstring>

#include "common/fp16.hpp"
#include "common/pack.hpp"
#include "matmul/matmul.hpp"

namespace piquant::kernels {
namespace {

struct RefBlock {
  double d = 0, m = 0;  // w[i] = d * q[i] + m (m: q4m's minimum, the K-quants' -dmin * mn)
  int32_t q[kBlock];    // integers: q8 -128..127, q4 -8..7, q4m 0..15, q5_0 -16..15, q5_1
                        // 0..31; K-quants: sub-block scale times value (exact)
};

float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

// 32-value block `sub` (0..7) of the K-quant super-block at p (GGUF layout, common/blocks.hpp).
RefBlock kquant_at(WeightType t, const uint8_t* p, size_t sub) {
  RefBlock out;
  if (t == WeightType::kQ6K) {
    const uint8_t* ql = p + offsetof(BlockQ6K, ql);
    const uint8_t* qh = p + offsetof(BlockQ6K, qh);
    const auto* sc = reinterpret_cast<const int8_t*>(p + offsetof(BlockQ6K, scales));
    out.d = f16_at(p + offsetof(BlockQ6K, d));
    for (size_t i = 0; i < kBlock; ++i) {
      const size_t v = sub * kBlock + i, h = v / 128, w = v % 128, l = w % 32, quarter = w / 32;
      const uint8_t lo = ql[64 * h + l + (quarter % 2) * 32];
      const int nib = quarter < 2 ? lo & 15 : lo >> 4;
      const int hi = (qh[32 * h + l] >> (2 * quarter)) & 3;
      out.q[i] = sc[v / 16] * ((nib | (hi << 4)) - 32);
    }
    return out;
  }
  // q4_k / q5_k: identical scales; q5_k adds a high bit per value
  const bool five = t == WeightType::kQ5K;
  const uint8_t* scales = p + 4;
  const uint8_t* qs = p + (five ? offsetof(BlockQ5K, qs) : offsetof(BlockQ4K, qs));
  uint8_t sc, mn;
  kquant_scale_min(sub, scales, &sc, &mn);
  out.d = f16_at(p);
  out.m = -double(f16_at(p + 2)) * mn;
  for (size_t i = 0; i < kBlock; ++i) {
    const uint8_t byte = qs[(sub / 2) * 32 + i];
    int q = sub % 2 == 0 ? byte & 15 : byte >> 4;
    if (five) q |= ((p[offsetof(BlockQ5K, qh) + i] >> sub) & 1) << 4;
    out.q[i] = sc * q;
  }
  return out;
}

// 32-value block b of row `row` of the packed matrix (layout: common/pack.hpp).
RefBlock packed_at(WeightType t, const uint8_t* wt, size_t row, size_t b, size_t k) {
  const size_t g = row / kRowInterleave, r = row % kRowInterleave;
  if (is_kquant(t) || t == WeightType::kQ5_0 || t == WeightType::kQ5_1) {
    // GGUF blocks unchanged, 4 rows' blocks one after the other
    const size_t per = block_values(t) / kBlock, nb = k / block_values(t), bb = block_bytes(t);
    const uint8_t* p = wt + ((g * nb + b / per) * kRowInterleave + r) * bb;
    if (is_kquant(t)) return kquant_at(t, p, b % per);
    RefBlock out;
    const bool q51 = t == WeightType::kQ5_1;
    out.d = f16_at(p);
    if (q51) out.m = f16_at(p + 2);
    uint32_t qh;
    std::memcpy(&qh, p + (q51 ? 4 : 2), 4);
    const uint8_t* qs = p + (q51 ? 8 : 6);
    for (size_t j = 0; j < 16; ++j) {
      out.q[j] = ((qs[j] & 15) | (((qh >> j) & 1) << 4)) - (q51 ? 0 : 16);
      out.q[j + 16] = ((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - (q51 ? 0 : 16);
    }
    return out;
  }
  const size_t nb = k / kBlock;
  const uint8_t* p = wt + (g * nb + b) * kRowInterleave * block_bytes(t);
  RefBlock out;
  out.d = f16_at(p + 2 * r);
  if (t == WeightType::kQ8) {
    for (size_t i = 0; i < 16; ++i) {
      out.q[i] = static_cast<int8_t>(p[8 + 16 * r + i]);
      out.q[i + 16] = static_cast<int8_t>(p[72 + 16 * r + i]);
    }
  } else {
    const size_t off = t == WeightType::kQ4M ? 16 : 8;
    if (t == WeightType::kQ4M) out.m = f16_at(p + 8 + 2 * r);
    const int bias = t == WeightType::kQ4 ? 8 : 0;
    for (size_t j = 0; j < 16; ++j) {
      out.q[j] = (p[off + 16 * r + j] & 15) - bias;
      out.q[j + 16] = (p[off + 16 * r + j] >> 4) - bias;
    }
  }
  return out;
}

void ref_q8act(WeightType t, const GemmArgs& a) {
  const auto* wt = static_cast<const uint8_t*>(a.wt);
  for (size_t n = a.n0; n < a.n1; ++n) {
    const auto* x = reinterpret_cast<const BlockQ8A*>(static_cast<const char*>(a.act) + n * a.act_stride);
    for (size_t m = a.m0; m < a.m1; ++m) {
      double acc = 0;
      for (size_t b = 0; b < a.k / kBlock; ++b) {
        const RefBlock w = packed_at(t, wt, m, b, a.k);
        int32_t dot = 0, sum = 0;
        for (size_t i = 0; i < kBlock; ++i) {
          dot += w.q[i] * x[b].qs[i];
          sum += x[b].qs[i];
        }
        acc += w.d * double(x[b].d) * dot + w.m * double(x[b].d) * sum;
      }
      a.dst[n * a.dst_stride + m] = static_cast<float>(acc);
    }
  }
}

template <bool kF16>
void ref_f32act(const GemmArgs& a) {
  for (size_t n = a.n0; n < a.n1; ++n) {
    const auto* x = reinterpret_cast<const float*>(static_cast<const char*>(a.act) + n * a.act_stride);
    for (size_t m = a.m0; m < a.m1; ++m) {
      double acc = 0;
      for (size_t i = 0; i < a.k; ++i) {
        float w;
        if (kF16) {
          uint16_t h;
          std::memcpy(&h, static_cast<const uint8_t*>(a.wt) + 2 * (m * a.k + i), 2);
          w = fp16_to_f32(h);
        } else {
          std::memcpy(&w, static_cast<const uint8_t*>(a.wt) + 4 * (m * a.k + i), 4);
        }
        acc += double(w) * double(x[i]);
      }
      a.dst[n * a.dst_stride + m] = static_cast<float>(acc);
    }
  }
}

}  // namespace

void matmul_f32_q8_q8_ref(const GemmArgs& a) { ref_q8act(WeightType::kQ8, a); }
void matmul_f32_q8_q4_ref(const GemmArgs& a) { ref_q8act(WeightType::kQ4, a); }
void matmul_f32_q8_q4m_ref(const GemmArgs& a) { ref_q8act(WeightType::kQ4M, a); }
void matmul_f32_q8_q4k_ref(const GemmArgs& a) { ref_q8act(WeightType::kQ4K, a); }
void matmul_f32_q8_q5k_ref(const GemmArgs& a) { ref_q8act(WeightType::kQ5K, a); }
void matmul_f32_q8_q6k_ref(const GemmArgs& a) { ref_q8act(WeightType::kQ6K, a); }
void matmul_f32_q8_q50_ref(const GemmArgs& a) { ref_q8act(WeightType::kQ5_0, a); }
void matmul_f32_q8_q51_ref(const GemmArgs& a) { ref_q8act(WeightType::kQ5_1, a); }
void matmul_f32_f32_f32_ref(const GemmArgs& a) { ref_f32act<false>(a); }
void matmul_f32_f32_f16_ref(const GemmArgs& a) { ref_f32act<true>(a); }

}  // namespace piquant::kernels
