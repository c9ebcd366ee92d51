// LoRA down/up on NEON (base ARMv8: the Pi 4 runs it), f16 weights through FCVTL.
// Algorithm: lora_impl.hpp.
#include <arm_neon.h>

#include "lora/lora_impl.hpp"

namespace piquant::kernels {
namespace {

struct Neon {
  using Reg = float32x4_t;
  static constexpr size_t kWidth = 4;
  static Reg zero() { return vdupq_n_f32(0.0f); }
  static Reg set1(float f) { return vdupq_n_f32(f); }
  static Reg load(const float* p) { return vld1q_f32(p); }
  static Reg load(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
  static Reg fma(Reg a, Reg b, Reg c) { return vfmaq_f32(c, a, b); }
  static Reg add(Reg a, Reg b) { return vaddq_f32(a, b); }
  static float hsum(Reg a) { return vaddvq_f32(a); }
  static void store(float* p, Reg a) { vst1q_f32(p, a); }
};

}  // namespace

void lora_down_f32_f32_neon(const LoraDownArgs& a) { lora_down<Neon, float>(a); }
void lora_down_f32_f16_neon(const LoraDownArgs& a) { lora_down<Neon, uint16_t>(a); }
void lora_up_f32_f32_neon(const LoraUpArgs& a) { lora_up<Neon, float>(a); }
void lora_up_f32_f16_neon(const LoraUpArgs& a) { lora_up<Neon, uint16_t>(a); }

const LoraKernels kLoraNeon = {"neon",
                               CpuFeature::kNeon,
                               {lora_down_f32_f32_neon, lora_down_f32_f16_neon},
                               {lora_up_f32_f32_neon, lora_up_f32_f16_neon}};

}  // namespace piquant::kernels
