// Dequantizers of the GGUF-only block types (Q5_0, Q5_1, Q4_K, Q5_K, Q6_K), bit-exact with
// llama.cpp's dequantize_row_* in ggml-quants.c: the same float operations in the same order
// (d1 = d * sc, then d1 * q - m1; Q6_K's (d * sc) * q). This file is compiled with
// -ffp-contract=off (kernels/CMakeLists.txt): a fused multiply-add would round once instead of
// twice and change bits (aarch64 GCC fuses by default).
//
// Blocks are read by pointer to their bytes: the row pointers of a GGUF file need not be
// 2-byte aligned, so every fp16 field is loaded with memcpy.
#include <cstring>

#include "common/fp16.hpp"
#include "common/quant.hpp"

namespace piquant::kernels {
namespace {

float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

const uint8_t* bytes(const void* p) { return static_cast<const uint8_t*>(p); }

}  // namespace

void dequantize_row_q5_0(const BlockQ5_0* x, float* y, size_t k) {
  for (size_t i = 0; i < k / kBlock; ++i) {
    const uint8_t* b = bytes(x) + i * sizeof(BlockQ5_0);
    const float d = f16_at(b + offsetof(BlockQ5_0, d));
    uint32_t qh;
    std::memcpy(&qh, b + offsetof(BlockQ5_0, qh), 4);
    const uint8_t* qs = b + offsetof(BlockQ5_0, qs);
    for (size_t j = 0; j < kBlock / 2; ++j) {
      const uint8_t xh0 = static_cast<uint8_t>(((qh >> (j + 0)) << 4) & 0x10);
      const uint8_t xh1 = static_cast<uint8_t>((qh >> (j + 12)) & 0x10);
      const int32_t x0 = ((qs[j] & 0x0F) | xh0) - 16;
      const int32_t x1 = ((qs[j] >> 4) | xh1) - 16;
      y[i * kBlock + j] = static_cast<float>(x0) * d;
      y[i * kBlock + j + 16] = static_cast<float>(x1) * d;
    }
  }
}

void dequantize_row_q5_1(const BlockQ5_1* x, float* y, size_t k) {
  for (size_t i = 0; i < k / kBlock; ++i) {
    const uint8_t* b = bytes(x) + i * sizeof(BlockQ5_1);
    const float d = f16_at(b + offsetof(BlockQ5_1, d)), m = f16_at(b + offsetof(BlockQ5_1, m));
    uint32_t qh;
    std::memcpy(&qh, b + offsetof(BlockQ5_1, qh), 4);
    const uint8_t* qs = b + offsetof(BlockQ5_1, qs);
    for (size_t j = 0; j < kBlock / 2; ++j) {
      const uint8_t xh0 = static_cast<uint8_t>(((qh >> (j + 0)) << 4) & 0x10);
      const uint8_t xh1 = static_cast<uint8_t>((qh >> (j + 12)) & 0x10);
      const int x0 = (qs[j] & 0x0F) | xh0;
      const int x1 = (qs[j] >> 4) | xh1;
      y[i * kBlock + j] = static_cast<float>(x0) * d + m;
      y[i * kBlock + j + 16] = static_cast<float>(x1) * d + m;
    }
  }
}

void dequantize_row_q4k(const BlockQ4K* x, float* y, size_t k) {
  for (size_t i = 0; i < k / kSuperBlock; ++i) {
    const uint8_t* b = bytes(x) + i * sizeof(BlockQ4K);
    const float d = f16_at(b + offsetof(BlockQ4K, d)), dmin = f16_at(b + offsetof(BlockQ4K, dmin));
    const uint8_t* scales = b + offsetof(BlockQ4K, scales);
    const uint8_t* q = b + offsetof(BlockQ4K, qs);
    for (size_t j = 0, is = 0; j < kSuperBlock; j += 64, is += 2, q += 32) {
      uint8_t sc, mn;
      kquant_scale_min(is, scales, &sc, &mn);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(mn);
      kquant_scale_min(is + 1, scales, &sc, &mn);
      const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(mn);
      for (size_t l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (size_t l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void dequantize_row_q5k(const BlockQ5K* x, float* y, size_t k) {
  for (size_t i = 0; i < k / kSuperBlock; ++i) {
    const uint8_t* b = bytes(x) + i * sizeof(BlockQ5K);
    const float d = f16_at(b + offsetof(BlockQ5K, d)), dmin = f16_at(b + offsetof(BlockQ5K, dmin));
    const uint8_t* scales = b + offsetof(BlockQ5K, scales);
    const uint8_t* qh = b + offsetof(BlockQ5K, qh);
    const uint8_t* ql = b + offsetof(BlockQ5K, qs);
    unsigned u1 = 1, u2 = 2;
    for (size_t j = 0, is = 0; j < kSuperBlock; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
      uint8_t sc, mn;
      kquant_scale_min(is, scales, &sc, &mn);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(mn);
      kquant_scale_min(is + 1, scales, &sc, &mn);
      const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(mn);
      for (size_t l = 0; l < 32; ++l) {
        *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      }
      for (size_t l = 0; l < 32; ++l) {
        *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      }
    }
  }
}

void dequantize_row_q6k(const BlockQ6K* x, float* y, size_t k) {
  for (size_t i = 0; i < k / kSuperBlock; ++i) {
    const uint8_t* b = bytes(x) + i * sizeof(BlockQ6K);
    const float d = f16_at(b + offsetof(BlockQ6K, d));
    const uint8_t* ql = b + offsetof(BlockQ6K, ql);
    const uint8_t* qh = b + offsetof(BlockQ6K, qh);
    const auto* sc = reinterpret_cast<const int8_t*>(b + offsetof(BlockQ6K, scales));
    for (size_t n = 0; n < kSuperBlock; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (size_t l = 0; l < 32; ++l) {
        const size_t is = l / 16;
        const int8_t q1 = static_cast<int8_t>(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
        const int8_t q2 = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        const int8_t q3 = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        const int8_t q4 = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

}  // namespace piquant::kernels
