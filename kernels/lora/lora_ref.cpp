// The LoRA references: plain loops, double sums (see lora.hpp for the math).
#include "common/fp16.hpp"
#include "lora/lora.hpp"

namespace piquant::kernels {
namespace {

inline float load_w(const float* p, size_t i) { return p[i]; }
inline float load_w(const uint16_t* p, size_t i) { return fp16_to_f32(p[i]); }

template <class WT>
void down_ref(const LoraDownArgs& a) {
  const WT* A = static_cast<const WT*>(a.a);
  for (size_t n = 0; n < a.n_tokens; ++n) {
    const float* x = a.x + n * a.x_stride;
    for (size_t j = a.j0; j < a.j1; ++j) {
      double s = 0;
      for (size_t c = 0; c < a.k; ++c) s += double(load_w(A, j * a.k + c)) * double(x[c]);
      a.t[n * a.t_stride + j] = static_cast<float>(s);
    }
  }
}

template <class WT>
void up_ref(const LoraUpArgs& a) {
  const WT* B = static_cast<const WT*>(a.bt);
  for (size_t n = 0; n < a.n_tokens; ++n) {
    const float* t = a.t + n * a.t_stride;
    float* y = a.y + n * a.y_stride;
    for (size_t i = a.i0; i < a.i1; ++i) {
      double s = 0;
      for (size_t j = 0; j < a.r; ++j) s += double(t[j]) * double(load_w(B, j * a.m + i));
      y[i] = static_cast<float>(double(y[i]) + double(a.scale) * s);
    }
  }
}

}  // namespace

void lora_down_f32_f32_ref(const LoraDownArgs& a) { down_ref<float>(a); }
void lora_down_f32_f16_ref(const LoraDownArgs& a) { down_ref<uint16_t>(a); }
void lora_up_f32_f32_ref(const LoraUpArgs& a) { up_ref<float>(a); }
void lora_up_f32_f16_ref(const LoraUpArgs& a) { up_ref<uint16_t>(a); }

const LoraKernels kLoraRef = {"ref",
                              CpuFeature::kNone,
                              {lora_down_f32_f32_ref, lora_down_f32_f16_ref},
                              {lora_up_f32_f32_ref, lora_up_f32_f16_ref}};

}  // namespace piquant::kernels
