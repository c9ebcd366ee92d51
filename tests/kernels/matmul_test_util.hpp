#pragma once
// Shared by the matmul tests: random weights and activations, and an independent reference
// computed from the row-major (unpacked) blocks, with an error bound for float kernels.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/fp16.hpp"
#include "common/pack.hpp"
#include "matmul/matmul.hpp"

namespace piquant::test {

using kernels::BlockQ8A;
using kernels::WeightType;

/// How to fill weights / activations.
enum class Fill {
  kRandom,   ///< random quants, scales spread over 2^-8..2^2 (fp16), some zero-scale blocks
  kExtreme,  ///< all quants at the type's extremes (-8/7, -128/127, 0/15), random signs
  kExact,    ///< random integers, every scale 1.0: float sums are exact, results bit-exact
};

struct Problem {
  WeightType type;
  size_t m, n, k;
  std::vector<uint8_t> rows;    ///< row-major GGUF-style rows (or f32 / f16 values)
  std::vector<uint8_t> packed;  ///< pack(rows)
  std::vector<BlockQ8A> act;    ///< n x (k / 32) blocks (quantized types)
  std::vector<float> xf;        ///< n x k floats (f32 / f16 weights)
};

inline uint16_t random_scale(std::mt19937& rng, Fill fill) {
  if (fill == Fill::kExact) return 0x3C00;
  std::uniform_real_distribution<float> e(-8.0f, 2.0f);
  if (rng() % 16 == 0) return 0;  // zero-scale block
  return kernels::fp16_from_f32(std::exp2(e(rng)));
}

/// True for the types kept as GGUF stores them (q4_k, q5_k, q6_k, q5_0, q5_1): their random
/// blocks are random bytes with chosen scale fields.
inline bool is_gguf_block_type(WeightType t) {
  return kernels::is_kquant(t) || t == WeightType::kQ5_0 || t == WeightType::kQ5_1;
}

/// An fp16 scale for kExtreme fills: the largest finite half, the smallest subnormal, the
/// smallest normal, or 1.
inline uint16_t extreme_scale(std::mt19937& rng) {
  const uint16_t s[] = {0x7BFF, 0x0001, 0x0400, 0x3C00};
  return s[rng() % 4];
}

/// Fills one random GGUF block of type t (q4_k..q5_1) at blk: random quant bytes (all bits at
/// their extremes for kExtreme), finite fp16 scales (random spread, extremes, or 1.0 with small
/// sub-block scales for kExact so that every sum stays an exact float).
inline void fill_gguf_block(WeightType t, uint8_t* blk, Fill fill, std::mt19937& rng) {
  const size_t bb = kernels::block_bytes(t);
  for (size_t i = 0; i < bb; ++i) {
    blk[i] = static_cast<uint8_t>(rng());
    if (fill == Fill::kExtreme) blk[i] = rng() % 2 ? 0x00 : 0xFF;
  }
  auto put = [&](size_t off, uint16_t h) { std::memcpy(blk + off, &h, 2); };
  auto scale = [&]() -> uint16_t {
    if (fill == Fill::kExact) return 0x3C00;
    if (fill == Fill::kExtreme) return extreme_scale(rng);
    return random_scale(rng, fill);
  };
  switch (t) {
    case WeightType::kQ4K:
    case WeightType::kQ5K: {
      put(0, scale());
      put(2, fill == Fill::kRandom ? random_scale(rng, fill) : scale());  // dmin
      uint8_t* sc = blk + 4;
      if (fill == Fill::kExact) {  // every 6-bit scale and minimum in 0..3
        for (size_t i = 0; i < 8; ++i) sc[i] = static_cast<uint8_t>(rng() % 4);
        for (size_t i = 8; i < 12; ++i) sc[i] = static_cast<uint8_t>(rng() % 4 | (rng() % 4) << 4);
      } else if (fill == Fill::kExtreme) {  // all scales and minimums 63, or all 0
        std::memset(sc, rng() % 4 ? 0xFF : 0x00, kernels::kKScaleBytes);
      }
      break;
    }
    case WeightType::kQ6K: {
      put(offsetof(kernels::BlockQ6K, d), scale());
      auto* sc = reinterpret_cast<int8_t*>(blk + offsetof(kernels::BlockQ6K, scales));
      for (size_t i = 0; i < 16; ++i) {
        if (fill == Fill::kExact) sc[i] = static_cast<int8_t>(int(rng() % 7) - 3);
        else if (fill == Fill::kExtreme) sc[i] = rng() % 2 ? -128 : 127;
      }
      break;
    }
    case WeightType::kQ5_0: put(0, scale()); break;
    case WeightType::kQ5_1:
      put(0, scale());
      put(2, fill == Fill::kExact ? 0x3C00
             : fill == Fill::kExtreme ? static_cast<uint16_t>(extreme_scale(rng) | (rng() % 2 ? 0x8000 : 0))
                                      : kernels::fp16_from_f32(std::normal_distribution<float>(0, 0.1f)(rng)));
      break;
    default: break;
  }
}

/// Bound on the magnitude of the partial sums a kernel forms for 32-value block b32 of the GGUF
/// block at blk (before the activation scale): sub-block scale x the largest unsigned quant
/// (plus a signed offset) x sum|q_a|, plus the minimum's |m| x sum|q_a|.
inline double gguf_block_bound(WeightType t, const uint8_t* blk, size_t b32, const BlockQ8A& x) {
  auto f16 = [&](size_t off) {
    uint16_t h;
    std::memcpy(&h, blk + off, 2);
    return std::fabs(double(kernels::fp16_to_f32(h)));
  };
  double sa = 0, sa_lo = 0;
  for (size_t c = 0; c < 32; ++c) {
    sa += std::abs(x.qs[c]);
    if (c < 16) sa_lo += std::abs(x.qs[c]);
  }
  switch (t) {
    case WeightType::kQ4K:
    case WeightType::kQ5K: {
      uint8_t sc, mn;
      kernels::kquant_scale_min(b32, blk + 4, &sc, &mn);
      return (f16(0) * sc * (t == WeightType::kQ4K ? 23.0 : 47.0) + f16(2) * mn) * sa;
    }
    case WeightType::kQ6K: {
      const auto* sc = reinterpret_cast<const int8_t*>(blk + offsetof(kernels::BlockQ6K, scales));
      const double d = f16(offsetof(kernels::BlockQ6K, d));
      return d * 96.0 * (std::abs(sc[2 * b32]) * sa_lo + std::abs(sc[2 * b32 + 1]) * (sa - sa_lo));
    }
    case WeightType::kQ5_0: return f16(0) * 47.0 * sa;
    case WeightType::kQ5_1: return (f16(0) * 47.0 + f16(2)) * sa;
    default: return 0;
  }
}

inline Problem make_problem(WeightType t, size_t m, size_t n, size_t k, Fill fill, uint32_t seed) {
  std::mt19937 rng(seed);
  Problem p{t, m, n, k, {}, {}, {}, {}};
  p.rows.resize(m * kernels::row_bytes(t, k));
  const size_t bb = kernels::block_bytes(t), nb = m * k / kernels::block_values(t);
  for (size_t b = 0; b < nb; ++b) {
    if (is_gguf_block_type(t)) {
      fill_gguf_block(t, p.rows.data() + b * bb, fill, rng);
      continue;
    }
    uint8_t* blk = p.rows.data() + b * bb;
    if (t == WeightType::kF32 || t == WeightType::kF16) {
      std::normal_distribution<float> d(0.0f, 1.0f);
      for (size_t i = 0; i < 32; ++i) {
        const float v = d(rng);
        if (t == WeightType::kF32) std::memcpy(blk + 4 * i, &v, 4);
        else {
          const uint16_t h = kernels::fp16_from_f32(v);
          std::memcpy(blk + 2 * i, &h, 2);
        }
      }
      continue;
    }
    const uint16_t d = random_scale(rng, fill);
    std::memcpy(blk, &d, 2);
    size_t qoff = 2, qlen = t == WeightType::kQ8 ? 32 : 16;
    if (t == WeightType::kQ4M) {
      const uint16_t mn = fill == Fill::kExact ? 0x3C00 : kernels::fp16_from_f32(std::normal_distribution<float>(0, 0.1f)(rng));
      std::memcpy(blk + 2, &mn, 2);
      qoff = 4;
    }
    for (size_t i = 0; i < qlen; ++i) {
      uint8_t q = static_cast<uint8_t>(rng());
      if (fill == Fill::kExtreme) {
        if (t == WeightType::kQ8) q = rng() % 2 ? 0x80 : 0x7F;      // -128 / 127
        else if (t == WeightType::kQ4) q = rng() % 2 ? 0x00 : 0xFF;  // nibbles 0 / 15 = -8 / 7
        else q = rng() % 2 ? 0x00 : 0xFF;                            // 0 / 15
      }
      blk[qoff + i] = q;
    }
  }
  p.packed.resize(kernels::packed_size(t, m, k));
  kernels::pack(t, p.rows.data(), m, k, p.packed.data());
  if (kernels::is_quantized(t)) {
    p.act.resize(n * k / 32);
    if (fill == Fill::kRandom) {
      std::normal_distribution<float> d(0.0f, 1.0f);
      std::vector<float> x(k);
      for (size_t j = 0; j < n; ++j) {
        for (size_t i = 0; i < k; ++i) x[i] = d(rng) * (i % 64 < 32 ? 1.0f : 50.0f);
        if (k >= 64 && j % 3 == 1) std::fill(x.begin() + 32, x.begin() + 64, 0.0f);
        kernels::quant_q8a_f32_ref(x.data(), p.act.data() + j * k / 32, k);
      }
    } else {
      for (BlockQ8A& a : p.act) {
        a.d = fill == Fill::kExact ? 1.0f : 1e3f;  // large activations
        a.s = 0;
        for (int8_t& q : a.qs) {
          q = fill == Fill::kExtreme ? (rng() % 2 ? 127 : -127) : static_cast<int8_t>(int(rng() % 255) - 127);
          a.s += q;
        }
      }
    }
  } else {
    std::normal_distribution<float> d(0.0f, 1.0f);
    p.xf.resize(n * k);
    for (float& v : p.xf) v = d(rng);
  }
  return p;
}

/// Expected outputs [j * m + i] and the sum of |terms| of each, from the unpacked rows, in
/// double (independent of the packed layout and of the kernels' reference).
struct Expected {
  std::vector<double> value, abs_sum;
};
inline Expected reference(const Problem& p) {
  Expected e;
  e.value.assign(p.m * p.n, 0.0);
  e.abs_sum.assign(p.m * p.n, 0.0);
  std::vector<float> w(p.m * p.k);
  kernels::dequantize_rows(p.type, p.rows.data(), p.m, p.k, w.data());
  for (size_t j = 0; j < p.n; ++j) {
    for (size_t i = 0; i < p.m; ++i) {
      const float* wr = w.data() + i * p.k;
      double v = 0, a = 0;
      if (!kernels::is_quantized(p.type)) {
        for (size_t c = 0; c < p.k; ++c) {
          const double t = double(wr[c]) * double(p.xf[j * p.k + c]);
          v += t;
          a += std::fabs(t);
        }
      } else {
        for (size_t b = 0; b < p.k / 32; ++b) {
          const BlockQ8A& x = p.act[j * p.k / 32 + b];
          double t = 0, sa = 0;
          for (size_t c = 0; c < 32; ++c) {
            t += double(wr[b * 32 + c]) * x.qs[c];
            sa += std::abs(x.qs[c]);
          }
          v += t * double(x.d);
          if (is_gguf_block_type(p.type)) {
            const size_t per = kernels::block_values(p.type) / 32;
            const uint8_t* blk = p.rows.data() + (i * p.k / 32 + b) / per * kernels::block_bytes(p.type);
            a += std::fabs(double(x.d)) * gguf_block_bound(p.type, blk, b % per, x);
            continue;
          }
          // The kernels' partial sums (per SIMD lane, before the float scaling) are bounded by
          // |d_w d_a| * C * sum|q_a|: C = 255 + 128 for q8 fed as u8 (w + 128, then -128 s),
          // 15 + 8 for 4-bit nibbles with q4's -8 offset; plus q4m's |m d_a s|.
          const uint8_t* blk = p.rows.data() + (i * p.k / 32 + b) * kernels::block_bytes(p.type);
          uint16_t h;
          std::memcpy(&h, blk, 2);
          const double c = p.type == WeightType::kQ8 ? 383.0 : 23.0;
          a += std::fabs(double(kernels::fp16_to_f32(h)) * double(x.d)) * c * sa;
          if (p.type == WeightType::kQ4M) {
            std::memcpy(&h, blk + 2, 2);
            a += std::fabs(double(kernels::fp16_to_f32(h)) * double(x.d) * x.s);
          }
        }
      }
      e.value[j * p.m + i] = v;
      e.abs_sum[j * p.m + i] = a;
    }
  }
  return e;
}

inline kernels::GemmArgs args_for(const Problem& p, float* dst, size_t dst_stride) {
  kernels::GemmArgs a{};
  a.m0 = 0;
  a.m1 = p.m;
  a.n0 = 0;
  a.n1 = p.n;
  a.k = p.k;
  if (kernels::is_quantized(p.type)) {
    a.act = p.act.data();
    a.act_stride = p.k / 32 * sizeof(BlockQ8A);
  } else {
    a.act = p.xf.data();
    a.act_stride = p.k * sizeof(float);
  }
  a.wt = p.packed.data();
  a.dst = dst;
  a.dst_stride = dst_stride;
  return a;
}

}  // namespace piquant::test
