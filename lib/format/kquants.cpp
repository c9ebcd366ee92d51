#include "format/kquants.hpp"

#include <cstring>

#include "common/fp16.hpp"

namespace piquant {
namespace {

using kernels::fp16_to_f32;

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// The j-th 6-bit scale and min of a Q4_K / Q5_K super-block (12 packed bytes).
void scale_min(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

void dq_q4k(const uint8_t* b, float* y) {
  const float d = fp16_to_f32(load_u16(b)), dmin = fp16_to_f32(load_u16(b + 2));
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
    uint8_t sc, m;
    scale_min(is, scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    scale_min(is + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
  }
}

void dq_q5k(const uint8_t* b, float* y) {
  const float d = fp16_to_f32(load_u16(b)), dmin = fp16_to_f32(load_u16(b + 2));
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0, is = 0; j < 256; j += 64, is += 2, ql += 32) {
    uint8_t sc, m;
    scale_min(is, scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    scale_min(is + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) {
      *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
    }
    for (int l = 0; l < 32; ++l) {
      *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    }
    u1 = static_cast<uint8_t>(u1 << 2);
    u2 = static_cast<uint8_t>(u2 << 2);
  }
}

void dq_q6k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = fp16_to_f32(load_u16(b + 208));
  for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * static_cast<float>(sc[is + 0] * q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2] * q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4] * q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6] * q4);
    }
  }
}

// Q2_K (84 B): scales[16] (4-bit scale | 4-bit min << 4 per 16 values), qs[64] 2-bit values,
// fp16 d, fp16 dmin.
void dq_q2k(const uint8_t* b, float* y) {
  const uint8_t* sc = b;
  const uint8_t* q = b + 16;
  const float d = fp16_to_f32(load_u16(b + 80)), dmin = fp16_to_f32(load_u16(b + 82));
  int is = 0;
  for (int n = 0; n < 256; n += 128, q += 32) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half = 0; half < 2; ++half) {
        const uint8_t s = sc[is++];
        const float dl = d * static_cast<float>(s & 0xF), ml = dmin * static_cast<float>(s >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16 * half] >> shift) & 3) - ml;
      }
    }
  }
}

// Q3_K (110 B): hmask[32] (the high bit, set = no -4), qs[64] low 2 bits, scales[12] (16
// 6-bit scales, offset 32), fp16 d.
void dq_q3k(const uint8_t* b, float* y) {
  const uint8_t* hm = b;
  const uint8_t* q = b + 32;
  const float d_all = fp16_to_f32(load_u16(b + 108));
  uint32_t aux[4];
  std::memcpy(aux, b + 96, 12);
  const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f, tmp = aux[2];
  aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
  aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
  aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
  aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
  int8_t scales[16];
  std::memcpy(scales, aux, 16);
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < 256; n += 128, q += 32) {
    for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1)) {
      for (int half = 0; half < 2; ++half) {
        const float dl = d_all * static_cast<float>(scales[is++] - 32);
        for (int l = 0; l < 16; ++l) {
          const int v = ((q[l + 16 * half] >> shift) & 3) - ((hm[l + 16 * half] & m) ? 0 : 4);
          *y++ = dl * static_cast<float>(v);
        }
      }
    }
  }
}

constexpr int8_t kValuesIq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

// IQ4_NL (18 B per 32): fp16 d, 16 bytes of 4-bit indices into a non-uniform table.
void dq_iq4nl(const uint8_t* b, float* y) {
  const float d = fp16_to_f32(load_u16(b));
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(kValuesIq4nl[b[2 + j] & 0xF]);
    y[j + 16] = d * static_cast<float>(kValuesIq4nl[b[2 + j] >> 4]);
  }
}

// IQ4_XS (136 B): fp16 d, u16 scales_h, scales_l[4] (6-bit scales per 32, offset 32), qs[128].
void dq_iq4xs(const uint8_t* b, float* y) {
  const float d = fp16_to_f32(load_u16(b));
  const uint16_t scales_h = load_u16(b + 2);
  const uint8_t* scales_l = b + 4;
  const uint8_t* qs = b + 8;
  for (int ib = 0; ib < 8; ++ib, y += 32, qs += 16) {
    const int ls = ((scales_l[ib / 2] >> 4 * (ib % 2)) & 0xF) | (((scales_h >> 2 * ib) & 3) << 4);
    const float dl = d * static_cast<float>(ls - 32);
    for (int j = 0; j < 16; ++j) {
      y[j] = dl * static_cast<float>(kValuesIq4nl[qs[j] & 0xF]);
      y[j + 16] = dl * static_cast<float>(kValuesIq4nl[qs[j] >> 4]);
    }
  }
}

void dq_q8k(const uint8_t* b, float* y) {
  float d;
  std::memcpy(&d, b, 4);
  const int8_t* q = reinterpret_cast<const int8_t*>(b + 4);
  for (int i = 0; i < 256; ++i) y[i] = d * static_cast<float>(q[i]);
}

}  // namespace

bool dequantize_kquant(uint32_t type, const uint8_t* src, float* dst, size_t n) {
  void (*fn)(const uint8_t*, float*) = nullptr;
  size_t bytes = 0, values = kQK;
  switch (type) {
    case 10: fn = dq_q2k, bytes = 84; break;
    case 11: fn = dq_q3k, bytes = 110; break;
    case 12: fn = dq_q4k, bytes = 144; break;
    case 13: fn = dq_q5k, bytes = 176; break;
    case 14: fn = dq_q6k, bytes = 210; break;
    case 15: fn = dq_q8k, bytes = 292; break;
    case 20: fn = dq_iq4nl, bytes = 18, values = 32; break;
    case 23: fn = dq_iq4xs, bytes = 136; break;
    default: return false;
  }
  for (size_t i = 0; i < n / values; ++i) fn(src + i * bytes, dst + i * values);
  return true;
}

}  // namespace piquant
