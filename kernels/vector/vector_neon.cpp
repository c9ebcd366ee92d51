// The xsimd float ops on neon64, plus FCVTN / FCVTL row conversions (base ARMv8, so the Pi 4
// has them). Plain armv8-a.
#include <arm_neon.h>

#include "attention/kv_format.hpp"
#include "vector/vector_impl.hpp"

namespace piquant::kernels {
namespace {

using Ops = VectorOps<xsimd::neon64>;

void cvt_f16_f32_neon(uint16_t* dst, const float* src, size_t n) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
  }
  for (; i < n; ++i) dst[i] = f32_to_f16_scalar(src[i]);
}

void cvt_f32_f16_neon(float* dst, const uint16_t* src, size_t n) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + i))));
  }
  for (; i < n; ++i) dst[i] = f16_to_f32_scalar(src[i]);
}

}  // namespace

const VectorKernels kVectorNeon = {
    "neon",      CpuFeature::kNeon, Ops::rmsnorm, Ops::rope_pairs,  Ops::rope_halves,
    Ops::swiglu, Ops::softmax,      Ops::add,     cvt_f16_f32_neon, cvt_f32_f16_neon,
};

}  // namespace piquant::kernels
