#pragma once
// The attention oracle for the tests: plain loops, materialized scores, double precision, over
// the K/V values as stored (dequantized exactly), so a test measures the kernel's arithmetic and
// not the KV format's rounding (tested on its own). Also the error bound the tests allow.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "attention/kv_format.hpp"

namespace piquant::test {

using kernels::KvType;

/// One kv head's rows [0, n) in a KV format, plus their exact values as double.
struct KvRows {
  KvType type = KvType::kF32;
  size_t hd = 0, n = 0;
  std::vector<float> f32, scales;
  std::vector<uint16_t> f16;
  std::vector<int8_t> q8;
  std::vector<double> deq;  // n x hd

  const void* data() const {
    return type == KvType::kF32   ? static_cast<const void*>(f32.data())
           : type == KvType::kF16 ? static_cast<const void*>(f16.data())
                                  : static_cast<const void*>(q8.data());
  }
  const float* scale_data() const { return scales.data(); }

  /// Stores row t from floats, in the format, and records the exact stored values.
  void set_row(size_t t, const float* x) {
    if (type == KvType::kF32) {
      std::copy(x, x + hd, f32.begin() + t * hd);
      for (size_t j = 0; j < hd; ++j) deq[t * hd + j] = static_cast<double>(x[j]);
    } else if (type == KvType::kF16) {
      for (size_t j = 0; j < hd; ++j) {
        f16[t * hd + j] = kernels::f32_to_f16_scalar(x[j]);
        deq[t * hd + j] = static_cast<double>(kernels::f16_to_f32_scalar(f16[t * hd + j]));
      }
    } else {
      const size_t nb = kernels::kv_q8_blocks(hd);
      kernels::kv_quantize_q8_row(q8.data() + t * hd, scales.data() + t * nb, x, hd);
      for (size_t j = 0; j < hd; ++j) {
        deq[t * hd + j] =
            static_cast<double>(scales[t * nb + j / kernels::kKvQ8Block]) * q8[t * hd + j];
      }
    }
  }
};

/// n rows of N(0, amp^2) values in `type`; the storage is exactly n rows (ASan sees overreads).
inline KvRows make_kv_rows(KvType type, size_t hd, size_t n, std::mt19937& rng, float amp) {
  KvRows r;
  r.type = type;
  r.hd = hd;
  r.n = n;
  r.deq.resize(n * hd);
  if (type == KvType::kF32) r.f32.resize(n * hd);
  if (type == KvType::kF16) r.f16.resize(n * hd);
  if (type == KvType::kQ8) {
    r.q8.resize(n * hd);
    r.scales.resize(n * kernels::kv_q8_blocks(hd));
  }
  std::normal_distribution<float> nd(0.0f, amp);
  std::vector<float> row(hd);
  for (size_t t = 0; t < n; ++t) {
    for (float& x : row) x = nd(rng);
    r.set_row(t, row.data());
  }
  return r;
}

/// out[hd] = softmax(scale * K q) V over rows [0, n_kv), in double; also returns the error bound
/// `tol[j]` the float kernels must meet, derived as follows (u = 2^-24, float unit roundoff):
///  - score t: a dot product of hd float products; rounding error ~ sqrt(hd) u scale sum|q_i k_i|
///    (Higham's probabilistic bound for a sum of hd terms; the worst case is hd u). Let d be
///    the largest over t.
///  - a score error d perturbs each softmax weight by a factor exp(+-d) ~ 1 +- d; exp itself adds
///    ~4u (xsimd and libm are within 2 ulp). The output moves by at most 2 (d + 4u) max|v_j|.
///  - the weighted sum over n_kv values (and the normalizer) in float: ~ sqrt(n_kv) u sum w|v_j|.
///  - the q8/f16 tile conversion rounds d*q once more: u |v_j| per term.
/// tol = 4 x (the sum): the factor 4 covers the probabilistic bounds' constants.
inline void attention_oracle(const float* q, const KvRows& k, const KvRows& v, size_t n_kv,
                             float scale, std::vector<double>& out, std::vector<double>& tol) {
  const size_t hd = k.hd;
  const double u = std::ldexp(1.0, -24);
  std::vector<double> s(n_kv);
  double mx = -1e300, d = 0.0;
  for (size_t t = 0; t < n_kv; ++t) {
    double dot = 0.0, mag = 0.0;
    for (size_t j = 0; j < hd; ++j) {
      dot += static_cast<double>(q[j]) * k.deq[t * hd + j];
      mag += std::fabs(static_cast<double>(q[j]) * k.deq[t * hd + j]);
    }
    s[t] = dot * static_cast<double>(scale);
    d = std::max(d, (std::sqrt(static_cast<double>(hd)) + 2.0) * u * mag *
                        std::fabs(static_cast<double>(scale)));
    mx = std::max(mx, s[t]);
  }
  double sum = 0.0;
  for (size_t t = 0; t < n_kv; ++t) sum += s[t] = std::exp(s[t] - mx);
  out.assign(hd, 0.0);
  tol.assign(hd, 0.0);
  std::vector<double> wabs(hd, 0.0), vmax(hd, 0.0);
  for (size_t t = 0; t < n_kv; ++t) {
    const double w = s[t] / sum;
    for (size_t j = 0; j < hd; ++j) {
      const double vj = v.deq[t * hd + j];
      out[j] += w * vj;
      wabs[j] += w * std::fabs(vj);
      vmax[j] = std::max(vmax[j], std::fabs(vj));
    }
  }
  const double sq = std::sqrt(static_cast<double>(n_kv)) + 2.0;
  for (size_t j = 0; j < hd; ++j) {
    tol[j] = 4.0 * (2.0 * (d + 4.0 * u) * vmax[j] + sq * u * wabs[j] + u * vmax[j]) + 1e-30;
  }
}

}  // namespace piquant::test
