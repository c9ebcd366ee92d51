// The scalar reference of the float ops (plain loops; runs anywhere) and the RoPE table helpers.
#include <algorithm>
#include <cmath>

#include "attention/kv_format.hpp"
#include "vector/vector.hpp"

namespace piquant::kernels {
namespace {

void rmsnorm_f32_ref(float* out, const float* x, const float* w, size_t n, float eps) {
  float ss = 0.0f;
  for (size_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float r = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  for (size_t i = 0; i < n; ++i) out[i] = w[i] * (x[i] * r);
}

void rope_f32_pairs_ref(float* x, size_t n_heads, size_t hd, const float* cos, const float* sin) {
  for (size_t h = 0; h < n_heads; ++h) {
    float* v = x + h * hd;
    for (size_t i = 0; i < hd / 2; ++i) {
      const float a = v[2 * i], b = v[2 * i + 1];
      v[2 * i] = a * cos[i] - b * sin[i];
      v[2 * i + 1] = a * sin[i] + b * cos[i];
    }
  }
}

void rope_f32_halves_ref(float* x, size_t n_heads, size_t hd, const float* cos, const float* sin) {
  const size_t half = hd / 2;
  for (size_t h = 0; h < n_heads; ++h) {
    float* v = x + h * hd;
    for (size_t i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cos[i] - b * sin[i];
      v[i + half] = a * sin[i] + b * cos[i];
    }
  }
}

void swiglu_f32_ref(float* out, const float* gate, const float* up, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void softmax_f32_ref(float* x, size_t n) {
  float mx = x[0];
  for (size_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  float sum = 0.0f;
  for (size_t i = 0; i < n; ++i) sum += x[i] = std::exp(x[i] - mx);
  const float inv = 1.0f / sum;
  for (size_t i = 0; i < n; ++i) x[i] *= inv;
}

void add_f32_ref(float* dst, const float* src, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] += src[i];
}

void cvt_f16_f32_ref(uint16_t* dst, const float* src, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f32_to_f16_scalar(src[i]);
}

void cvt_f32_f16_ref(float* dst, const uint16_t* src, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32_scalar(src[i]);
}

}  // namespace

const VectorKernels kVectorRef = {
    "ref",          CpuFeature::kNone, rmsnorm_f32_ref, rope_f32_pairs_ref, rope_f32_halves_ref,
    swiglu_f32_ref, softmax_f32_ref,   add_f32_ref,     cvt_f16_f32_ref,    cvt_f32_f16_ref,
};

void rope_freqs(float* freqs, size_t head_dim, float theta) {
  for (size_t i = 0; i < head_dim / 2; ++i) {
    const double e = -2.0 * static_cast<double>(i) / static_cast<double>(head_dim);
    freqs[i] = static_cast<float>(std::pow(static_cast<double>(theta), e));
  }
}

void rope_scale_llama3(float* freqs, size_t half, const RopeLlama3Scaling& s) {
  const double kTwoPi = 6.283185307179586;
  const double old_ctx = static_cast<double>(s.original_ctx);
  const double lff = static_cast<double>(s.low_freq_factor);
  const double hff = static_cast<double>(s.high_freq_factor);
  const double factor = static_cast<double>(s.factor);
  const double low_wavelen = old_ctx / lff;   // longer: fully scaled
  const double high_wavelen = old_ctx / hff;  // shorter: unchanged
  for (size_t i = 0; i < half; ++i) {
    const double f = static_cast<double>(freqs[i]);
    const double wavelen = kTwoPi / f;
    double out;
    if (wavelen < high_wavelen) {
      out = f;
    } else if (wavelen > low_wavelen) {
      out = f / factor;
    } else {
      const double smooth = (old_ctx / wavelen - lff) / (hff - lff);
      out = (1.0 - smooth) * f / factor + smooth * f;
    }
    freqs[i] = static_cast<float>(out);
  }
}

void rope_cos_sin(float* cos, float* sin, const float* freqs, size_t half, size_t pos) {
  for (size_t i = 0; i < half; ++i) {
    const double angle = static_cast<double>(pos) * static_cast<double>(freqs[i]);
    cos[i] = static_cast<float>(std::cos(angle));
    sin[i] = static_cast<float>(std::sin(angle));
  }
}

}  // namespace piquant::kernels
