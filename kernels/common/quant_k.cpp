#include "common/quant_k.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/blocks.hpp"
#include "common/fp16.hpp"

namespace piquant::kernels {
namespace {

constexpr size_t SB = kSuperBlock;

float fp16r(float x) { return fp16_to_f32(fp16_from_f32(x)); }
int nearest(float v) { return static_cast<int>(std::lrintf(v)); }
void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// ---- value fits ----------------------------------------------------------------------------
// "asym": val = s * q - m, q in [0, nmax] (Q4_K / Q5_K sub-blocks: s = d * sc, m = dmin * mc).
// Rounds q for (s, m) and returns the weighted error; the float operations are ggml's.
double asym_err(const float* x, const float* w, int n, float s, float m, int nmax, uint8_t* q) {
  double e = 0;
  const float is = s != 0.0f ? 1.0f / s : 0.0f;
  for (int i = 0; i < n; ++i) {
    const int v = s != 0.0f ? std::clamp(nearest((x[i] + m) * is), 0, nmax) : 0;
    if (q) q[i] = static_cast<uint8_t>(v);
    const double r = double(x[i]) - double(s * static_cast<float>(v) - m);
    e += double(w[i]) * r * r;
  }
  return e;
}

// Weighted least squares of x ~= s * q + b for fixed integers q; b <= 0 (a K-quant minimum is
// subtracted and unsigned). Returns false when degenerate.
bool ls_asym(const float* x, const float* w, int n, const uint8_t* q, float* s, float* m) {
  double s0 = 0, s1 = 0, s2 = 0, sx = 0, sxq = 0;
  for (int i = 0; i < n; ++i) {
    const double wi = w[i], qi = q[i];
    s0 += wi, s1 += wi * qi, s2 += wi * qi * qi, sx += wi * double(x[i]), sxq += wi * double(x[i]) * qi;
  }
  if (!(s2 > 0)) return false;
  const double det = s0 * s2 - s1 * s1;
  double sc, b;
  if (det > 1e-12 * s0 * s2) {
    sc = (s0 * sxq - s1 * sx) / det;
    b = (s2 * sx - s1 * sxq) / det;
  } else {
    sc = sxq / s2, b = 0;
  }
  if (b > 0) b = 0, sc = sxq / s2;
  if (!(sc > 0) || !std::isfinite(sc) || !std::isfinite(b)) return false;
  *s = static_cast<float>(sc);
  *m = static_cast<float>(-b);
  return true;
}

// The best float (s, m) of one sub-block: the range [min(0, min x), max x] mapped onto a grid
// of slightly narrower / wider integer ranges, each refit twice by least squares.
void fit_asym(const float* x, const float* w, int n, int nmax, float* s_out, float* m_out) {
  float lo = 0.0f, hi = x[0];
  for (int i = 0; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
  if (!(hi > lo)) {  // constant (<= 0) or empty range
    *s_out = 0.0f, *m_out = -lo;
    return;
  }
  uint8_t q[32];
  float best_s = (hi - lo) / static_cast<float>(nmax), best_m = -lo;
  double best = asym_err(x, w, n, best_s, best_m, nmax, nullptr);
  for (int step = 0; step <= 20; ++step) {
    const float iscale = (static_cast<float>(nmax) - 1.0f + 0.1f * static_cast<float>(step)) / (hi - lo);
    for (int i = 0; i < n; ++i) q[i] = static_cast<uint8_t>(std::clamp(nearest((x[i] - lo) * iscale), 0, nmax));
    float s, m;
    for (int it = 0; it < 2; ++it) {
      if (!ls_asym(x, w, n, q, &s, &m)) break;
      const double e = asym_err(x, w, n, s, m, nmax, q);
      if (e < best) best = e, best_s = s, best_m = m;
    }
  }
  *s_out = best_s, *m_out = best_m;
}

// "sym": val = s * q, q in [qmin, qmax]; s may be negative (the largest magnitude may map to
// qmin, which has one more level).
double sym_err(const float* x, const float* w, int n, float s, int qmin, int qmax, int8_t* q) {
  double e = 0;
  const float is = s != 0.0f ? 1.0f / s : 0.0f;
  for (int i = 0; i < n; ++i) {
    const int v = std::clamp(nearest(x[i] * is), qmin, qmax);
    if (q) q[i] = static_cast<int8_t>(v);
    const double r = double(x[i]) - double(s * static_cast<float>(v));
    e += double(w[i]) * r * r;
  }
  return e;
}

// The best scale of one symmetric block: the largest-magnitude value mapped onto a grid of
// fractions of qmin and of qmax, each refit by least squares (round: fp16-rounds the scale, as
// Q5_0 stores it).
float fit_sym(const float* x, const float* w, int n, int qmin, int qmax, float start,
              bool round16) {
  float amax = 0.0f, v = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), v = x[i];
  }
  if (amax == 0.0f) return 0.0f;
  int8_t q[32];
  float best_s = start;
  double best = sym_err(x, w, n, start, qmin, qmax, nullptr);
  for (int base : {qmin, qmax}) {
    for (int step = 0; step <= 16; ++step) {
      const float ratio = 0.80f + 0.02f * static_cast<float>(step);
      float s = v / static_cast<float>(base) * ratio;
      if (round16) s = fp16r(s);
      if (s == 0.0f || !std::isfinite(s)) continue;
      sym_err(x, w, n, s, qmin, qmax, q);
      double sxq = 0, sqq = 0;
      for (int i = 0; i < n; ++i) sxq += double(w[i]) * double(x[i]) * q[i], sqq += double(w[i]) * q[i] * q[i];
      if (!(sqq > 0)) continue;
      float s1 = static_cast<float>(sxq / sqq);
      if (round16) s1 = fp16r(s1);
      if (s1 == 0.0f || !std::isfinite(s1)) continue;
      const double e = sym_err(x, w, n, s1, qmin, qmax, nullptr);
      if (e < best) best = e, best_s = s1;
    }
  }
  return best_s;
}

double weighted_err(const float* x, const float* w, const float* y, size_t n) {
  double e = 0;
  for (size_t i = 0; i < n; ++i) {
    const double r = double(x[i]) - double(y[i]);
    e += double(w[i]) * r * r;
  }
  return e;
}

// ---- Q4_K / Q5_K -----------------------------------------------------------------------------
struct KBlock {  // one super-block before packing
  float d = 0, dmin = 0;
  uint8_t sc[8] = {}, mn[8] = {};
  uint8_t q[SB] = {};
};

void pack_scales(const KBlock& b, uint8_t* s12) {
  std::memset(s12, 0, 12);
  for (int j = 0; j < 8; ++j) {
    const uint8_t ls = b.sc[j], lm = b.mn[j];
    if (j < 4) {
      s12[j] = ls;
      s12[j + 4] = lm;
    } else {
      s12[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      s12[j - 4] = static_cast<uint8_t>(s12[j - 4] | ((ls >> 4) << 6));
      s12[j] = static_cast<uint8_t>(s12[j] | ((lm >> 4) << 6));
    }
  }
}

void pack_k(const KBlock& b, bool five, uint8_t* y) {
  store_u16(y, fp16_from_f32(b.d));
  store_u16(y + 2, fp16_from_f32(b.dmin));
  pack_scales(b, y + 4);
  uint8_t* qs = y + 16;
  if (five) {
    uint8_t* qh = y + 16;
    qs = y + 48;
    std::memset(qh, 0, 32);
    for (int j = 0; j < 8; ++j) {
      for (int l = 0; l < 32; ++l) {
        if (b.q[32 * j + l] & 16) qh[l] = static_cast<uint8_t>(qh[l] | (1u << j));
      }
    }
  }
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      qs[32 * c + l] = static_cast<uint8_t>((b.q[64 * c + l] & 15) | ((b.q[64 * c + 32 + l] & 15) << 4));
    }
  }
}

// Sub-block errors for the super-block scales (d, dmin): codes rounded (radius 0) or the best
// of the 3 x 3 neighbourhood (radius 1). Fills b (its q too) and returns the total error.
double code_k(const float* x, const float* w, int nmax, const float* s, const float* m, float d,
              float dmin, int radius, KBlock* b) {
  b->d = d, b->dmin = dmin;
  double total = 0;
  for (int j = 0; j < 8; ++j) {
    const int ls0 = d > 0 ? std::clamp(nearest(s[j] / d), 0, 63) : 0;
    const int lm0 = dmin > 0 ? std::clamp(nearest(m[j] / dmin), 0, 63) : 0;
    double best = -1;
    for (int dl = -radius; dl <= radius; ++dl) {
      const int ls = ls0 + dl;
      if (ls < 0 || ls > 63 || (ls > 0 && !(d > 0))) continue;
      for (int dm = -radius; dm <= radius; ++dm) {
        const int lm = lm0 + dm;
        if (lm < 0 || lm > 63 || (lm > 0 && !(dmin > 0))) continue;
        uint8_t q[32];
        const double e = asym_err(x + 32 * j, w + 32 * j, 32, d * static_cast<float>(ls),
                                  dmin * static_cast<float>(lm), nmax, q);
        if (best < 0 || e < best) {
          best = e;
          b->sc[j] = static_cast<uint8_t>(ls), b->mn[j] = static_cast<uint8_t>(lm);
          std::memcpy(b->q + 32 * j, q, 32);
        }
      }
    }
    total += best;
  }
  return total;
}

void quantize_k(const float* x, const float* w, bool five, bool search, uint8_t* y) {
  const int nmax = five ? 31 : 15;
  float s[8], m[8];
  for (int j = 0; j < 8; ++j) {
    const float* xj = x + 32 * j;
    if (search) {
      fit_asym(xj, w + 32 * j, 32, nmax, &s[j], &m[j]);
    } else {
      float lo = 0.0f, hi = xj[0];
      for (int i = 0; i < 32; ++i) lo = std::min(lo, xj[i]), hi = std::max(hi, xj[i]);
      s[j] = hi > lo ? (hi - lo) / static_cast<float>(nmax) : 0.0f;
      m[j] = -lo;
    }
  }
  float smax = 0, mmax = 0;
  for (int j = 0; j < 8; ++j) smax = std::max(smax, s[j]), mmax = std::max(mmax, m[j]);
  KBlock rtn;
  code_k(x, w, nmax, s, m, fp16r(smax / 63.0f), fp16r(mmax / 63.0f), 0, &rtn);
  if (!search) {
    pack_k(rtn, five, y);
    return;
  }
  // Super-block scale candidates, then the codes' neighbourhood at the best pair.
  static const float kDf[] = {1.0f, 0.985f, 0.97f, 0.955f, 0.94f, 1.015f};
  static const float kMf[] = {1.0f, 0.97f, 0.94f};
  float best_d = fp16r(smax / 63.0f), best_dm = fp16r(mmax / 63.0f);
  double best = -1;
  KBlock cand;
  for (float fd : kDf) {
    const float d = fp16r(smax / 63.0f * fd);
    for (float fm : kMf) {
      const float dm = fp16r(mmax / 63.0f * fm);
      const double e = code_k(x, w, nmax, s, m, d, dm, 0, &cand);
      if (best < 0 || e < best) best = e, best_d = d, best_dm = dm;
    }
  }
  KBlock found;
  code_k(x, w, nmax, s, m, best_d, best_dm, 1, &found);
  // Keep whichever block dequantizes closer (the round-to-nearest one is a candidate).
  uint8_t a[kQ5KBytes], b[kQ5KBytes];
  float ya[SB], yb[SB];
  pack_k(rtn, five, a);
  pack_k(found, five, b);
  const KQuant t = five ? KQuant::kQ5K : KQuant::kQ4K;
  dequantize_row_kquant(t, a, ya, SB);
  dequantize_row_kquant(t, b, yb, SB);
  const size_t bytes = kquant_block_bytes(t);
  std::memcpy(y, weighted_err(x, w, yb, SB) <= weighted_err(x, w, ya, SB) ? b : a, bytes);
}

void dq_k(const uint8_t* b, bool five, float* y) {
  const float d = fp16_to_f32(load_u16(b)), dmin = fp16_to_f32(load_u16(b + 2));
  const uint8_t* s12 = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = five ? b + 48 : b + 16;
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, mn;
    if (j < 4) {
      sc = s12[j] & 63, mn = s12[j + 4] & 63;
    } else {
      sc = static_cast<uint8_t>((s12[j + 4] & 0xF) | ((s12[j - 4] >> 6) << 4));
      mn = static_cast<uint8_t>((s12[j + 4] >> 4) | ((s12[j] >> 6) << 4));
    }
    const float d1 = d * sc, m1 = dmin * mn;
    const uint8_t* q = qs + 32 * (j / 2);
    for (int l = 0; l < 32; ++l) {
      int v = (j & 1) ? q[l] >> 4 : q[l] & 0xF;
      if (five && (qh[l] & (1u << j))) v += 16;
      *y++ = d1 * static_cast<float>(v) - m1;
    }
  }
}

// ---- Q6_K -----------------------------------------------------------------------------------
void pack_q6k(const int8_t* q /*256, -32..31*/, const int8_t* sc, float d, uint8_t* y) {
  uint8_t* ql = y;
  uint8_t* qh = y + 128;
  std::memset(y, 0, 192);
  for (int n = 0; n < 2; ++n) {
    const int8_t* qq = q + 128 * n;
    for (int l = 0; l < 32; ++l) {
      const int q1 = qq[l] + 32, q2 = qq[l + 32] + 32, q3 = qq[l + 64] + 32, q4 = qq[l + 96] + 32;
      ql[64 * n + l] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
      ql[64 * n + l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
      qh[32 * n + l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
    }
  }
  std::memcpy(y + 192, sc, 16);
  store_u16(y + 208, fp16_from_f32(d));
}

void dq_q6k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = fp16_to_f32(load_u16(b + 208));
  for (int n = 0; n < 2; ++n, y += 128, ql += 64, qh += 32, sc += 8) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is] * q1;  // (d * sc) * q, in ggml's order
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
  }
}

// Codes the 16 sub-block scales s (signed) as int8 multiples of d and rounds every value;
// radius 1 tries each code's neighbours by the real error (values as the dequantizer computes
// them: (d * sc) * q).
double code_q6k(const float* x, const float* w, const float* s, float d, int radius, int8_t* sc,
                int8_t* q) {
  double total = 0;
  for (int j = 0; j < 16; ++j) {
    const int c0 = d != 0.0f ? std::clamp(nearest(s[j] / d), -128, 127) : 0;
    double best = -1;
    for (int dc = -radius; dc <= radius; ++dc) {
      const int c = c0 + dc;
      if (c < -128 || c > 127) continue;
      const float* xj = x + 16 * j;
      const float* wj = w + 16 * j;
      const float step = d * static_cast<float>(c);
      const float is = step != 0.0f ? 1.0f / step : 0.0f;
      double e = 0;
      int8_t qq[16];
      for (int i = 0; i < 16; ++i) {
        const int v = step != 0.0f ? std::clamp(nearest(xj[i] * is), -32, 31) : 0;
        qq[i] = static_cast<int8_t>(v);
        const double r = double(xj[i]) - double(step * static_cast<float>(v));
        e += double(wj[i]) * r * r;
      }
      if (best < 0 || e < best) {
        best = e;
        sc[j] = static_cast<int8_t>(c);
        std::memcpy(q + 16 * j, qq, 16);
      }
    }
    total += best;
  }
  return total;
}

void quantize_q6k(const float* x, const float* w, bool search, uint8_t* y) {
  float s[16];
  for (int j = 0; j < 16; ++j) {
    float amax = 0.0f;
    for (int i = 0; i < 16; ++i) amax = std::max(amax, std::fabs(x[16 * j + i]));
    s[j] = amax / 31.0f;
    if (search) s[j] = fit_sym(x + 16 * j, w + 16 * j, 16, -32, 31, s[j], false);
  }
  float smax = 0.0f, sv = 0.0f;
  for (float v : s) {
    if (std::fabs(v) > smax) smax = std::fabs(v), sv = v;
  }
  int8_t sc[16], q[SB];
  code_q6k(x, w, s, fp16r(smax / 127.0f), 0, sc, q);
  pack_q6k(q, sc, fp16r(smax / 127.0f), y);
  if (!search || smax == 0.0f) return;
  // Candidates: the largest scale on code 127 or on -128 (its sign flipped), a little less.
  float best_d = 0.0f;
  double best = -1;
  for (float d0 : {sv / 127.0f, sv / -128.0f}) {
    for (float f : {1.0f, 0.99f, 0.98f}) {
      const float d = fp16r(d0 * f);
      if (d == 0.0f || !std::isfinite(d)) continue;
      const double e = code_q6k(x, w, s, d, 0, sc, q);
      if (best < 0 || e < best) best = e, best_d = d;
    }
  }
  if (best < 0) return;
  code_q6k(x, w, s, best_d, 1, sc, q);
  uint8_t b[kQ6KBytes];
  pack_q6k(q, sc, best_d, b);
  float ya[SB], yb[SB];
  dq_q6k(y, ya);
  dq_q6k(b, yb);
  if (weighted_err(x, w, yb, SB) <= weighted_err(x, w, ya, SB)) std::memcpy(y, b, kQ6KBytes);
}

// ---- Q5_0 / Q5_1 ------------------------------------------------------------------------------
void pack_q5(const uint8_t* q /*32, 0..31*/, uint8_t* qh4, uint8_t* qs) {
  uint32_t h = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
    h |= uint32_t(q[j] >> 4) << j;
    h |= uint32_t(q[j + 16] >> 4) << (j + 16);
  }
  std::memcpy(qh4, &h, 4);
}

void unpack_q5(const uint8_t* qh4, const uint8_t* qs, int* q) {
  uint32_t h;
  std::memcpy(&h, qh4, 4);
  for (int j = 0; j < 16; ++j) {
    q[j] = (qs[j] & 0xF) | static_cast<int>(((h >> j) << 4) & 0x10);
    q[j + 16] = (qs[j] >> 4) | static_cast<int>((h >> (j + 12)) & 0x10);
  }
}

void quantize_q50(const float* x, const float* w, bool search, uint8_t* y) {
  float amax = 0.0f, v = 0.0f;
  for (int i = 0; i < 32; ++i) {
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), v = x[i];
  }
  float d = fp16r(v / -16.0f);
  if (search) d = fit_sym(x, w, 32, -16, 15, d, true);
  int8_t q[32];
  sym_err(x, w, 32, d, -16, 15, q);
  uint8_t u[32];
  for (int i = 0; i < 32; ++i) u[i] = static_cast<uint8_t>(q[i] + 16);
  store_u16(y, fp16_from_f32(d));
  pack_q5(u, y + 2, y + 6);
}

double q51_err(const float* x, const float* w, float d, float m, uint8_t* q) {
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  double e = 0;
  for (int i = 0; i < 32; ++i) {
    const int v = std::clamp(nearest((x[i] - m) * id), 0, 31);
    q[i] = static_cast<uint8_t>(v);
    const double r = double(x[i]) - double(static_cast<float>(v) * d + m);
    e += double(w[i]) * r * r;
  }
  return e;
}

void quantize_q51(const float* x, const float* w, bool search, uint8_t* y) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < 32; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
  float d = fp16r((hi - lo) / 31.0f), m = fp16r(lo);
  uint8_t q[32], cur[32];
  double best = q51_err(x, w, d, m, q);
  if (search && hi > lo) {
    static const float kClip[] = {0.0f, 0.01f, 0.025f, 0.045f, 0.07f};
    const float range = hi - lo;
    for (float a : kClip) {
      for (float b : kClip) {
        float dd = fp16r((range * (1.0f - a - b)) / 31.0f), mm = fp16r(lo + a * range);
        if (!(dd > 0.0f)) continue;
        double e = q51_err(x, w, dd, mm, cur);
        for (int it = 0; it < 2; ++it) {
          double s0 = 0, s1 = 0, s2 = 0, sx = 0, sxq = 0;
          for (int i = 0; i < 32; ++i) {
            const double wi = w[i], qi = cur[i];
            s0 += wi, s1 += wi * qi, s2 += wi * qi * qi, sx += wi * double(x[i]), sxq += wi * double(x[i]) * qi;
          }
          const double det = s2 * s0 - s1 * s1;
          if (!(det > 1e-12 * s2 * s0)) break;
          const float d1 = fp16r(static_cast<float>((sxq * s0 - sx * s1) / det));
          const float m1 = fp16r(static_cast<float>((s2 * sx - s1 * sxq) / det));
          if (!(d1 > 0.0f) || !std::isfinite(d1) || !std::isfinite(m1)) break;
          uint8_t nq[32];
          const double e1 = q51_err(x, w, d1, m1, nq);
          if (!(e1 < e)) break;
          e = e1, dd = d1, mm = m1;
          std::memcpy(cur, nq, 32);
        }
        if (e < best) {
          best = e, d = dd, m = mm;
          std::memcpy(q, cur, 32);
        }
      }
    }
  }
  store_u16(y, fp16_from_f32(d));
  store_u16(y + 2, fp16_from_f32(m));
  pack_q5(q, y + 4, y + 8);
}

}  // namespace

void kquant_error_weights(KQuant t, const float* x, const float* importance, float* w) {
  const size_t nv = kquant_block_values(t);
  if (t == KQuant::kQ5_0 || t == KQuant::kQ5_1) {  // measured: no gain from the magnitude term
    for (size_t i = 0; i < nv; ++i) w[i] = importance ? importance[i] : 1.0f;
    return;
  }
  double s2 = 0;
  for (size_t i = 0; i < nv; ++i) s2 += double(x[i]) * double(x[i]);
  const float sigma2 = static_cast<float>(2.0 * s2 / double(nv));
  for (size_t i = 0; i < nv; ++i) {
    const float mag = std::sqrt(sigma2 + x[i] * x[i]);
    w[i] = importance ? importance[i] * mag : mag;
  }
}

const char* to_string(KQuant t) {
  switch (t) {
    case KQuant::kQ4K: return "q4_k";
    case KQuant::kQ5K: return "q5_k";
    case KQuant::kQ6K: return "q6_k";
    case KQuant::kQ5_0: return "q5_0";
    case KQuant::kQ5_1: return "q5_1";
  }
  return "?";
}

size_t kquant_block_values(KQuant t) {
  return t == KQuant::kQ5_0 || t == KQuant::kQ5_1 ? kBlock : kSuperBlock;
}

size_t kquant_block_bytes(KQuant t) {
  switch (t) {
    case KQuant::kQ4K: return kQ4KBytes;
    case KQuant::kQ5K: return kQ5KBytes;
    case KQuant::kQ6K: return kQ6KBytes;
    case KQuant::kQ5_0: return kQ5_0Bytes;
    case KQuant::kQ5_1: return kQ5_1Bytes;
  }
  return 0;
}

uint32_t kquant_ggml_type(KQuant t) {
  switch (t) {
    case KQuant::kQ4K: return 12;
    case KQuant::kQ5K: return 13;
    case KQuant::kQ6K: return 14;
    case KQuant::kQ5_0: return 6;
    case KQuant::kQ5_1: return 7;
  }
  return 0;
}

void quantize_row_kquant(KQuant t, const float* x, uint8_t* dst, size_t k,
                         const KQuantOptions& o) {
  const size_t nv = kquant_block_values(t), nb = kquant_block_bytes(t);
  PIQUANT_ASSERT(k % nv == 0);
  float wb[SB];
  for (size_t b = 0; b < k / nv; ++b) {
    const float* xb = x + b * nv;
    kquant_error_weights(t, xb, o.importance ? o.importance + b * nv : nullptr, wb);
    uint8_t* y = dst + b * nb;
    switch (t) {
      case KQuant::kQ4K: quantize_k(xb, wb, false, o.search, y); break;
      case KQuant::kQ5K: quantize_k(xb, wb, true, o.search, y); break;
      case KQuant::kQ6K: quantize_q6k(xb, wb, o.search, y); break;
      case KQuant::kQ5_0: quantize_q50(xb, wb, o.search, y); break;
      case KQuant::kQ5_1: quantize_q51(xb, wb, o.search, y); break;
    }
  }
}

void dequantize_row_kquant(KQuant t, const uint8_t* src, float* y, size_t k) {
  const size_t nv = kquant_block_values(t), nb = kquant_block_bytes(t);
  for (size_t b = 0; b < k / nv; ++b, src += nb, y += nv) {
    switch (t) {
      case KQuant::kQ4K: dq_k(src, false, y); break;
      case KQuant::kQ5K: dq_k(src, true, y); break;
      case KQuant::kQ6K: dq_q6k(src, y); break;
      case KQuant::kQ5_0:
      case KQuant::kQ5_1: {
        const float d = fp16_to_f32(load_u16(src));
        const bool one = t == KQuant::kQ5_1;
        const float m = one ? fp16_to_f32(load_u16(src + 2)) : 0.0f;
        int q[32];
        unpack_q5(src + (one ? 4 : 2), src + (one ? 8 : 6), q);
        for (int i = 0; i < 32; ++i) {
          y[i] = one ? static_cast<float>(q[i]) * d + m : static_cast<float>(q[i] - 16) * d;
        }
        break;
      }
    }
  }
}

}  // namespace piquant::kernels
