// attn_f32_{f32,f16,q8}_neon: the xsimd attention core (attn_impl.hpp) on neon64, with NEON tile
// converters: f16 -> f32 by FCVTL (vcvt_f32_f16, base ARMv8: the Pi 4's Cortex-A72 has it),
// int8 -> f32 by two widening moves and SCVTF. Plain armv8-a; aarch64 only.
#include <arm_neon.h>

#include "attention/attn_impl.hpp"

namespace piquant::kernels {
namespace {

using Neon = xsimd::neon64;

struct LoadF16Neon {
  const float* operator()(const void* base, const float*, size_t t0, size_t nt, size_t hd,
                          float* buf) const {
    const uint16_t* src = static_cast<const uint16_t*>(base) + t0 * hd;
    const size_t n = nt * hd;  // a multiple of 32
    for (size_t i = 0; i < n; i += 8) {
      const uint16x8_t h = vld1q_u16(src + i);
      vst1q_f32(buf + i, vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h))));
      vst1q_f32(buf + i + 4, vcvt_high_f32_f16(vreinterpretq_f16_u16(h)));
    }
    return buf;
  }
};

struct LoadQ8Neon {
  const float* operator()(const void* base, const float* scales, size_t t0, size_t nt, size_t hd,
                          float* buf) const {
    const int8_t* src = static_cast<const int8_t*>(base) + t0 * hd;
    const float* d = scales + t0 * (hd / kKvQ8Block);
    const size_t nb = nt * hd / kKvQ8Block;
    for (size_t b = 0; b < nb; ++b) {
      const float db = d[b];
      for (size_t half = 0; half < 2; ++half) {
        const int8x16_t q = vld1q_s8(src + b * 32 + half * 16);
        const int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
        float* o = buf + b * 32 + half * 16;
        vst1q_f32(o, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), db));
        vst1q_f32(o + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(lo)), db));
        vst1q_f32(o + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), db));
        vst1q_f32(o + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(hi)), db));
      }
    }
    return buf;
  }
};

}  // namespace

void attn_f32_f32_neon(const AttnArgs& a) { attn_simd<Neon>(a, LoadF32{}); }
void attn_f32_f16_neon(const AttnArgs& a) { attn_simd<Neon>(a, LoadF16Neon{}); }
void attn_f32_q8_neon(const AttnArgs& a) { attn_simd<Neon>(a, LoadQ8Neon{}); }

}  // namespace piquant::kernels
