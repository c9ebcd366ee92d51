#include "common/quant.hpp"

#include <cmath>
#include <cstring>

#include "common/fp16.hpp"

namespace piquant::kernels {

const char* to_string(WeightType t) {
  switch (t) {
    case WeightType::kF32: return "f32";
    case WeightType::kF16: return "f16";
    case WeightType::kQ8: return "q8";
    case WeightType::kQ4: return "q4";
    case WeightType::kQ4M: return "q4m";
    case WeightType::kQ4K: return "q4_k";
    case WeightType::kQ5K: return "q5_k";
    case WeightType::kQ6K: return "q6_k";
    case WeightType::kQ5_0: return "q5_0";
    case WeightType::kQ5_1: return "q5_1";
  }
  return "?";
}

size_t block_bytes(WeightType t) {
  switch (t) {
    case WeightType::kF32: return kBlock * 4;
    case WeightType::kF16: return kBlock * 2;
    case WeightType::kQ8: return sizeof(BlockQ8);
    case WeightType::kQ4: return sizeof(BlockQ4);
    case WeightType::kQ4M: return sizeof(BlockQ4M);
    case WeightType::kQ4K: return sizeof(BlockQ4K);
    case WeightType::kQ5K: return sizeof(BlockQ5K);
    case WeightType::kQ6K: return sizeof(BlockQ6K);
    case WeightType::kQ5_0: return sizeof(BlockQ5_0);
    case WeightType::kQ5_1: return sizeof(BlockQ5_1);
  }
  return 0;
}

bool has_quantizer(WeightType t) {
  switch (t) {
    case WeightType::kF32:
    case WeightType::kF16:
    case WeightType::kQ8:
    case WeightType::kQ4:
    case WeightType::kQ4M: return true;
    default: return false;
  }
}

// The quantizers follow GGUF's reference quantize_row_*_ref so the blocks are interchangeable.
void quantize_row_q8(const float* x, BlockQ8* y, size_t k) {
  for (size_t b = 0; b < k / kBlock; ++b, x += kBlock) {
    float amax = 0.0f;
    for (size_t i = 0; i < kBlock; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = fp16_from_f32(d);
    for (size_t i = 0; i < kBlock; ++i) y[b].qs[i] = static_cast<int8_t>(std::lround(x[i] * id));
  }
}

void quantize_row_q4(const float* x, BlockQ4* y, size_t k) {
  for (size_t b = 0; b < k / kBlock; ++b, x += kBlock) {
    float amax = 0.0f, max = 0.0f;  // max: the value of largest magnitude, with its sign
    for (size_t i = 0; i < kBlock; ++i) {
      if (std::fabs(x[i]) > amax) {
        amax = std::fabs(x[i]);
        max = x[i];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = fp16_from_f32(d);
    for (size_t j = 0; j < kBlock / 2; ++j) {
      const float v0 = x[j] * id + 8.5f, v1 = x[j + 16] * id + 8.5f;
      const int q0 = v0 < 15.0f ? static_cast<int>(v0) : 15;  // v >= 0 here: truncation = floor
      const int q1 = v1 < 15.0f ? static_cast<int>(v1) : 15;
      y[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void quantize_row_q4m(const float* x, BlockQ4M* y, size_t k) {
  for (size_t b = 0; b < k / kBlock; ++b, x += kBlock) {
    float lo = x[0], hi = x[0];
    for (size_t i = 1; i < kBlock; ++i) {
      lo = std::fmin(lo, x[i]);
      hi = std::fmax(hi, x[i]);
    }
    const float d = (hi - lo) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = fp16_from_f32(d);
    y[b].m = fp16_from_f32(lo);
    for (size_t j = 0; j < kBlock / 2; ++j) {
      const float v0 = (x[j] - lo) * id + 0.5f, v1 = (x[j + 16] - lo) * id + 0.5f;
      const int q0 = v0 < 15.0f ? static_cast<int>(v0) : 15;
      const int q1 = v1 < 15.0f ? static_cast<int>(v1) : 15;
      y[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void dequantize_row_q8(const BlockQ8* x, float* y, size_t k) {
  for (size_t b = 0; b < k / kBlock; ++b) {
    const float d = fp16_to_f32(x[b].d);
    for (size_t i = 0; i < kBlock; ++i) y[b * kBlock + i] = d * float(x[b].qs[i]);
  }
}

void dequantize_row_q4(const BlockQ4* x, float* y, size_t k) {
  for (size_t b = 0; b < k / kBlock; ++b) {
    const float d = fp16_to_f32(x[b].d);
    for (size_t j = 0; j < kBlock / 2; ++j) {
      y[b * kBlock + j] = d * float((x[b].qs[j] & 15) - 8);
      y[b * kBlock + j + 16] = d * float((x[b].qs[j] >> 4) - 8);
    }
  }
}

void dequantize_row_q4m(const BlockQ4M* x, float* y, size_t k) {
  for (size_t b = 0; b < k / kBlock; ++b) {
    const float d = fp16_to_f32(x[b].d), m = fp16_to_f32(x[b].m);
    for (size_t j = 0; j < kBlock / 2; ++j) {
      y[b * kBlock + j] = d * float(x[b].qs[j] & 15) + m;
      y[b * kBlock + j + 16] = d * float(x[b].qs[j] >> 4) + m;
    }
  }
}

void quantize_rows(WeightType t, const float* x, size_t rows, size_t k, void* dst) {
  auto* out = static_cast<uint8_t*>(dst);
  const size_t rb = row_bytes(t, k);
  for (size_t r = 0; r < rows; ++r, x += k, out += rb) {
    switch (t) {
      case WeightType::kF32: std::memcpy(out, x, k * sizeof(float)); break;
      case WeightType::kF16:
        for (size_t i = 0; i < k; ++i) {
          const uint16_t h = fp16_from_f32(x[i]);
          std::memcpy(out + 2 * i, &h, 2);
        }
        break;
      case WeightType::kQ8: quantize_row_q8(x, reinterpret_cast<BlockQ8*>(out), k); break;
      case WeightType::kQ4: quantize_row_q4(x, reinterpret_cast<BlockQ4*>(out), k); break;
      case WeightType::kQ4M: quantize_row_q4m(x, reinterpret_cast<BlockQ4M*>(out), k); break;
      default:  // no quantizer (has_quantizer() is false): callers check first
        PIQUANT_ASSERT(has_quantizer(t));
        std::memset(out, 0, rb);
        break;
    }
  }
}

void dequantize_rows(WeightType t, const void* src, size_t rows, size_t k, float* y) {
  const auto* in = static_cast<const uint8_t*>(src);
  const size_t rb = row_bytes(t, k);
  for (size_t r = 0; r < rows; ++r, y += k, in += rb) {
    switch (t) {
      case WeightType::kF32: std::memcpy(y, in, k * sizeof(float)); break;
      case WeightType::kF16:
        for (size_t i = 0; i < k; ++i) {
          uint16_t h;
          std::memcpy(&h, in + 2 * i, 2);
          y[i] = fp16_to_f32(h);
        }
        break;
      case WeightType::kQ8: dequantize_row_q8(reinterpret_cast<const BlockQ8*>(in), y, k); break;
      case WeightType::kQ4: dequantize_row_q4(reinterpret_cast<const BlockQ4*>(in), y, k); break;
      case WeightType::kQ4M: dequantize_row_q4m(reinterpret_cast<const BlockQ4M*>(in), y, k); break;
      case WeightType::kQ4K: dequantize_row_q4k(reinterpret_cast<const BlockQ4K*>(in), y, k); break;
      case WeightType::kQ5K: dequantize_row_q5k(reinterpret_cast<const BlockQ5K*>(in), y, k); break;
      case WeightType::kQ6K: dequantize_row_q6k(reinterpret_cast<const BlockQ6K*>(in), y, k); break;
      case WeightType::kQ5_0: dequantize_row_q5_0(reinterpret_cast<const BlockQ5_0*>(in), y, k); break;
      case WeightType::kQ5_1: dequantize_row_q5_1(reinterpret_cast<const BlockQ5_1*>(in), y, k); break;
    }
  }
}

// The reference activation quantizer. The SIMD variants do exactly these float operations
// (max of |x|, one division for d, one for 1/d, one multiply per element, round half to even
// in the default rounding mode), so their blocks are bit-identical.
void quant_q8a_f32_ref(const float* x, BlockQ8A* y, size_t k) {
  for (size_t b = 0; b < k / kBlock; ++b, x += kBlock) {
    float amax = 0.0f;
    for (size_t i = 0; i < kBlock; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int32_t s = 0;
    for (size_t i = 0; i < kBlock; ++i) {
      float v = std::nearbyint(x[i] * id);
      v = std::fmin(127.0f, std::fmax(-127.0f, v));
      y[b].qs[i] = static_cast<int8_t>(v);
      s += y[b].qs[i];
    }
    y[b].d = d;
    y[b].s = s;
  }
}

const QuantActKernel* quant_act_kernels(size_t* count) {
  static const QuantActKernel kTable[] = {
#if defined(__x86_64__)
      {"quant_q8a_f32_avx512vnni", CpuFeature::kAvx512Vnni, quant_q8a_f32_avx512vnni},
      {"quant_q8a_f32_avx2", CpuFeature::kAvx2, quant_q8a_f32_avx2},
#endif
#if defined(__aarch64__)
      {"quant_q8a_f32_neon", CpuFeature::kNeon, quant_q8a_f32_neon},
#endif
      {"quant_q8a_f32_ref", CpuFeature::kNone, quant_q8a_f32_ref},
  };
  *count = sizeof(kTable) / sizeof(kTable[0]);
  return kTable;
}

const QuantActKernel& quant_act_kernel() {
  static const QuantActKernel* chosen = [] {
    size_t n = 0;
    const QuantActKernel* t = quant_act_kernels(&n);
    for (size_t i = 0; i < n; ++i) {
      if (cpu_info().has(t[i].needs)) return &t[i];
    }
    return &t[n - 1];
  }();
  return *chosen;
}

}  // namespace piquant::kernels
