// quant_q8a_f32_neon: f32 -> BlockQ8A with ARMv8 NEON (every aarch64 core). Bit-identical to
// quant_q8a_f32_ref: same max, same scalar divisions, one multiply per element, and
// FCVTNS (round to nearest, ties to even).
#include <arm_neon.h>

#include "common/quant.hpp"

namespace piquant::kernels {

void quant_q8a_f32_neon(const float* x, BlockQ8A* y, size_t k) {
  for (size_t b = 0; b < k / kBlock; ++b, x += kBlock) {
    float32x4_t v[8];
    float32x4_t amax = vdupq_n_f32(0.0f);
    for (int i = 0; i < 8; ++i) {
      v[i] = vld1q_f32(x + 4 * i);
      amax = vmaxq_f32(amax, vabsq_f32(v[i]));
    }
    const float d = vmaxvq_f32(amax) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int32x4_t sum = vdupq_n_s32(0);
    int16x8_t h[4];
    for (int i = 0; i < 4; ++i) {
      int32x4_t a = vcvtnq_s32_f32(vmulq_n_f32(v[2 * i], id));
      int32x4_t c = vcvtnq_s32_f32(vmulq_n_f32(v[2 * i + 1], id));
      a = vmaxq_s32(vdupq_n_s32(-127), vminq_s32(vdupq_n_s32(127), a));
      c = vmaxq_s32(vdupq_n_s32(-127), vminq_s32(vdupq_n_s32(127), c));
      sum = vaddq_s32(sum, vaddq_s32(a, c));
      h[i] = vcombine_s16(vmovn_s32(a), vmovn_s32(c));
    }
    vst1q_s8(y[b].qs, vcombine_s8(vmovn_s16(h[0]), vmovn_s16(h[1])));
    vst1q_s8(y[b].qs + 16, vcombine_s8(vmovn_s16(h[2]), vmovn_s16(h[3])));
    y[b].d = d;
    y[b].s = vaddvq_s32(sum);
  }
}

}  // namespace piquant::kernels
