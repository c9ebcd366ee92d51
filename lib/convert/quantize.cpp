#include "convert/quantize.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/fp16.hpp"
#include "piquant/error.hpp"
#include "threads/thread_pool.hpp"

namespace piquant {
namespace {

namespace k = kernels;
constexpr size_t B = k::kBlock;

float fp16_round(float x) { return k::fp16_to_f32(k::fp16_from_f32(x)); }

// Symmetric blocks: x ~= d * q, q in [qmin, qmax]. Rounds q for a given stored scale d and
// returns the weighted error.
double sym_quant(const float* x, const float* w, float d, int qmin, int qmax, int* q) {
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  double e = 0;
  for (size_t i = 0; i < B; ++i) {
    const int v = std::clamp(static_cast<int>(std::lround(x[i] * id)), qmin, qmax);
    q[i] = v;
    const double r = double(x[i]) - double(d) * v;
    e += double(w[i]) * r * r;
  }
  return e;
}

// Improves (d, q) in place; returns the final error. `d` is fp16-representable on entry.
void sym_search(const float* x, const float* w, int qmin, int qmax, float lo_ratio, float step,
                int steps, float* d, int* q) {
  int cur[B], best_q[B];
  std::memcpy(best_q, q, sizeof best_q);
  double best = 0;
  for (size_t i = 0; i < B; ++i) {
    const double r = double(x[i]) - double(*d) * q[i];
    best += double(w[i]) * r * r;
  }
  float best_d = *d;
  float amax = 0.0f, max = 0.0f;
  for (size_t i = 0; i < B; ++i) {
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), max = x[i];
  }
  if (amax == 0.0f) return;
  for (int base : {qmin, qmax}) {
    for (int s = 0; s < steps; ++s) {
      const float ratio = lo_ratio + step * static_cast<float>(s);
      const float d0 = fp16_round(max / static_cast<float>(base) * ratio);
      if (d0 == 0.0f || !std::isfinite(d0)) continue;
      sym_quant(x, w, d0, qmin, qmax, cur);
      // Least-squares scale for these integers, stored as fp16, then re-round the integers.
      double sxq = 0, sqq = 0;
      for (size_t i = 0; i < B; ++i) {
        sxq += double(w[i]) * double(x[i]) * cur[i];
        sqq += double(w[i]) * cur[i] * cur[i];
      }
      if (sqq <= 0) continue;
      const float d1 = fp16_round(static_cast<float>(sxq / sqq));
      if (d1 == 0.0f || !std::isfinite(d1)) continue;
      const double e = sym_quant(x, w, d1, qmin, qmax, cur);
      if (e < best) {
        best = e;
        best_d = d1;
        std::memcpy(best_q, cur, sizeof best_q);
      }
    }
  }
  *d = best_d;
  std::memcpy(q, best_q, sizeof best_q);
}

// Asymmetric blocks: x ~= d * q + m, q in [0, 15].
double asym_quant(const float* x, const float* w, float d, float m, int* q) {
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  double e = 0;
  for (size_t i = 0; i < B; ++i) {
    const int v = std::clamp(static_cast<int>(std::lround((x[i] - m) * id)), 0, 15);
    q[i] = v;
    const double r = double(x[i]) - (double(d) * v + double(m));
    e += double(w[i]) * r * r;
  }
  return e;
}

void asym_search(const float* x, const float* w, float* d, float* m, int* q) {
  int cur[B], best_q[B];
  std::memcpy(best_q, q, sizeof best_q);
  double best = 0;
  for (size_t i = 0; i < B; ++i) {
    const double r = double(x[i]) - (double(*d) * q[i] + double(*m));
    best += double(w[i]) * r * r;
  }
  float best_d = *d, best_m = *m;
  float lo = x[0], hi = x[0];
  for (size_t i = 1; i < B; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
  const float range = hi - lo;
  if (!(range > 0.0f)) return;
  static const float kClip[] = {0.0f, 0.02f, 0.05f, 0.09f, 0.14f};
  for (float a : kClip) {
    for (float b : kClip) {
      const float lo1 = lo + a * range, hi1 = hi - b * range;
      float dd = fp16_round((hi1 - lo1) / 15.0f), mm = fp16_round(lo1);
      if (!(dd > 0.0f)) continue;
      asym_quant(x, w, dd, mm, cur);
      for (int iter = 0; iter < 2; ++iter) {
        double s0 = 0, s1 = 0, s2 = 0, sx = 0, sxq = 0;
        for (size_t i = 0; i < B; ++i) {
          s0 += double(w[i]);
          s1 += double(w[i]) * cur[i];
          s2 += double(w[i]) * cur[i] * cur[i];
          sx += double(w[i]) * double(x[i]);
          sxq += double(w[i]) * double(x[i]) * cur[i];
        }
        const double det = s2 * s0 - s1 * s1;
        if (!(det > 1e-12 * s2 * s0)) break;
        const float d1 = fp16_round(static_cast<float>((sxq * s0 - sx * s1) / det));
        const float m1 = fp16_round(static_cast<float>((s2 * sx - s1 * sxq) / det));
        if (!(d1 > 0.0f) || !std::isfinite(m1)) break;
        dd = d1, mm = m1;
        asym_quant(x, w, dd, mm, cur);
      }
      const double e = asym_quant(x, w, dd, mm, cur);
      if (e < best) {
        best = e;
        best_d = dd;
        best_m = mm;
        std::memcpy(best_q, cur, sizeof best_q);
      }
    }
  }
  *d = best_d;
  *m = best_m;
  std::memcpy(q, best_q, sizeof best_q);
}

// One row: RTN (the kernels' quantizer) first, then the search per block.
void quantize_row_search(k::WeightType t, const float* x, const float* imp, size_t cols,
                         uint8_t* dst) {
  k::quantize_rows(t, x, 1, cols, dst);
  float ones[B];
  std::fill(ones, ones + B, 1.0f);
  int q[B];
  for (size_t b = 0; b < cols / B; ++b) {
    const float* xb = x + b * B;
    const float* wb = imp ? imp + b * B : ones;
    if (t == k::WeightType::kQ8) {
      auto* blk = reinterpret_cast<k::BlockQ8*>(dst) + b;
      float d = k::fp16_to_f32(blk->d);
      for (size_t i = 0; i < B; ++i) q[i] = blk->qs[i];
      sym_search(xb, wb, -127, 127, 0.90f, 0.01f, 13, &d, q);
      blk->d = k::fp16_from_f32(d);
      for (size_t i = 0; i < B; ++i) blk->qs[i] = static_cast<int8_t>(q[i]);
    } else if (t == k::WeightType::kQ4) {
      auto* blk = reinterpret_cast<k::BlockQ4*>(dst) + b;
      float d = k::fp16_to_f32(blk->d);
      for (size_t j = 0; j < B / 2; ++j) {
        q[j] = (blk->qs[j] & 15) - 8;
        q[j + 16] = (blk->qs[j] >> 4) - 8;
      }
      sym_search(xb, wb, -8, 7, 0.70f, 0.02f, 23, &d, q);
      blk->d = k::fp16_from_f32(d);
      for (size_t j = 0; j < B / 2; ++j) {
        blk->qs[j] = static_cast<uint8_t>((q[j] + 8) | ((q[j + 16] + 8) << 4));
      }
    } else if (t == k::WeightType::kQ4M) {
      auto* blk = reinterpret_cast<k::BlockQ4M*>(dst) + b;
      float d = k::fp16_to_f32(blk->d), m = k::fp16_to_f32(blk->m);
      for (size_t j = 0; j < B / 2; ++j) {
        q[j] = blk->qs[j] & 15;
        q[j + 16] = blk->qs[j] >> 4;
      }
      asym_search(xb, wb, &d, &m, q);
      blk->d = k::fp16_from_f32(d);
      blk->m = k::fp16_from_f32(m);
      for (size_t j = 0; j < B / 2; ++j) {
        blk->qs[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
      }
    }
  }
}

}  // namespace

void quantize_matrix(k::WeightType t, const float* w, size_t rows, size_t cols,
                     const QuantizeOptions& o, void* dst, ThreadPool* pool) {
  if (k::is_quantized(t) && cols % B != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "quantize_matrix: " + std::to_string(cols) + " columns is not a multiple of 32");
  }
  const size_t rb = t == k::WeightType::kF32   ? cols * 4
                    : t == k::WeightType::kF16 ? cols * 2
                                               : k::row_bytes(t, cols);
  auto* out = static_cast<uint8_t*>(dst);
  auto run = [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      const float* x = w + r * cols;
      if (!k::is_quantized(t)) {
        if (t == k::WeightType::kF32) {
          std::memcpy(out + r * rb, x, cols * 4);
        } else {
          auto* h = reinterpret_cast<uint16_t*>(out + r * rb);
          for (size_t c = 0; c < cols; ++c) h[c] = k::fp16_from_f32(x[c]);
        }
      } else if (!o.search) {
        k::quantize_rows(t, x, 1, cols, out + r * rb);
      } else {
        quantize_row_search(t, x, o.importance, cols, out + r * rb);
      }
    }
  };
  if (pool != nullptr && rows >= 8)
    pool->parallel_for(rows, 1, run);
  else
    run(0, rows);
}

void quantize_matrix_kquant(k::KQuant t, const float* w, size_t rows, size_t cols,
                            const QuantizeOptions& o, void* dst, ThreadPool* pool) {
  const size_t nv = k::kquant_block_values(t);
  if (cols % nv != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                std::string("quantize ") + k::to_string(t) + ": rows of " + std::to_string(cols) +
                    " values are not a multiple of the " + std::to_string(nv) +
                    "-value block" + (nv == k::kSuperBlock ? " (a K-quant super-block)" : ""));
  }
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < cols; ++c) {
      if (!std::isfinite(w[r * cols + c])) {
        throw Error(ErrorCode::kInvalidArgument,
                    std::string("quantize ") + k::to_string(t) + ": value at row " +
                        std::to_string(r) + ", column " + std::to_string(c) + " is not finite");
      }
    }
  }
  const size_t rb = k::kquant_row_bytes(t, cols);
  auto* out = static_cast<uint8_t*>(dst);
  k::KQuantOptions ko;
  ko.search = o.search;
  ko.importance = o.importance;
  auto run = [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) k::quantize_row_kquant(t, w + r * cols, out + r * rb, cols, ko);
  };
  if (pool != nullptr && rows >= 8)
    pool->parallel_for(rows, 1, run);
  else
    run(0, rows);
}

double relative_rms_error(k::WeightType t, const float* w, const void* rows_q, size_t rows,
                          size_t cols) {
  std::vector<float> deq(cols);
  const size_t rb = t == k::WeightType::kF32   ? cols * 4
                    : t == k::WeightType::kF16 ? cols * 2
                                               : k::row_bytes(t, cols);
  double err = 0, ref = 0;
  for (size_t r = 0; r < rows; ++r) {
    const uint8_t* src = static_cast<const uint8_t*>(rows_q) + r * rb;
    if (t == k::WeightType::kF32) {
      std::memcpy(deq.data(), src, cols * 4);
    } else if (t == k::WeightType::kF16) {
      for (size_t c = 0; c < cols; ++c) {
        uint16_t h;
        std::memcpy(&h, src + 2 * c, 2);
        deq[c] = k::fp16_to_f32(h);
      }
    } else {
      k::dequantize_rows(t, src, 1, cols, deq.data());
    }
    for (size_t c = 0; c < cols; ++c) {
      const double x = double(w[r * cols + c]);
      const double e = x - double(deq[c]);
      err += e * e;
      ref += x * x;
    }
  }
  return ref > 0 ? std::sqrt(err / ref) : 0.0;
}

double relative_rms_error_kquant(k::KQuant t, const float* w, const void* rows_q, size_t rows,
                                 size_t cols) {
  std::vector<float> deq(cols);
  const size_t rb = k::kquant_row_bytes(t, cols);
  double err = 0, ref = 0;
  for (size_t r = 0; r < rows; ++r) {
    k::dequantize_row_kquant(t, static_cast<const uint8_t*>(rows_q) + r * rb, deq.data(), cols);
    for (size_t c = 0; c < cols; ++c) {
      const double x = double(w[r * cols + c]);
      const double e = x - double(deq[c]);
      err += e * e;
      ref += x * x;
    }
  }
  return ref > 0 ? std::sqrt(err / ref) : 0.0;
}

}  // namespace piquant
