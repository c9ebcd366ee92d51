// The matmul references: the dumbest correct code. Each weight value is read from the packed
// layout through packed_at() (one block at a time), integer block sums are int32 (exact), and
// the float sums are double. Used for GEMV and GEMM alike (all tokens, all rows).
#include <cstring>

#include "common/fp16.hpp"
#include "common/pack.hpp"
#include "matmul/matmul.hpp"

namespace piquant::kernels {
namespace {

struct RefBlock {
  float d = 0, m = 0;   // scale and minimum (q4m)
  int32_t q[kBlock];    // integer values: q8 -128..127, q4 -8..7, q4m 0..15
};

// Block b of row `row` of the packed matrix (layout: common/pack.hpp).
RefBlock packed_at(WeightType t, const uint8_t* wt, size_t row, size_t b, size_t k) {
  const size_t nb = k / kBlock, g = row / kRowInterleave, r = row % kRowInterleave;
  const uint8_t* p = wt + (g * nb + b) * kRowInterleave * block_bytes(t);
  RefBlock out;
  uint16_t h;
  std::memcpy(&h, p + 2 * r, 2);
  out.d = fp16_to_f32(h);
  if (t == WeightType::kQ8) {
    for (size_t i = 0; i < 16; ++i) {
      out.q[i] = static_cast<int8_t>(p[8 + 16 * r + i]);
      out.q[i + 16] = static_cast<int8_t>(p[72 + 16 * r + i]);
    }
  } else {
    const size_t off = t == WeightType::kQ4M ? 16 : 8;
    if (t == WeightType::kQ4M) {
      std::memcpy(&h, p + 8 + 2 * r, 2);
      out.m = fp16_to_f32(h);
    }
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
        acc += double(w.d) * double(x[b].d) * dot + double(w.m) * double(x[b].d) * sum;
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
void matmul_f32_f32_f32_ref(const GemmArgs& a) { ref_f32act<false>(a); }
void matmul_f32_f32_f16_ref(const GemmArgs& a) { ref_f32act<true>(a); }

}  // namespace piquant::kernels
