// attn_f32_{f32,f16,q8}_sse4_2: the xsimd attention core (attn_impl.hpp) on sse4_2, for x86-64
// CPUs without AVX2. No F16C is assumed, so tiles convert with the scalar helpers (once per
// tile and group, so the cost is shared by the group's query heads). Built with -msse4.2.
#include "attention/attn_impl.hpp"

namespace piquant::kernels {
namespace {

using Sse42 = xsimd::sse4_2;

struct LoadF16Scalar {
  const float* operator()(const void* base, const float*, size_t t0, size_t nt, size_t hd,
                          float* buf) const {
    const uint16_t* src = static_cast<const uint16_t*>(base) + t0 * hd;
    for (size_t i = 0; i < nt * hd; ++i) buf[i] = f16_to_f32_scalar(src[i]);
    return buf;
  }
};

struct LoadQ8Scalar {
  const float* operator()(const void* base, const float* scales, size_t t0, size_t nt, size_t hd,
                          float* buf) const {
    const int8_t* src = static_cast<const int8_t*>(base) + t0 * hd;
    const float* d = scales + t0 * (hd / kKvQ8Block);
    for (size_t i = 0; i < nt * hd; ++i) buf[i] = d[i / kKvQ8Block] * static_cast<float>(src[i]);
    return buf;
  }
};

}  // namespace

void attn_f32_f32_sse4_2(const AttnArgs& a) { attn_simd<Sse42>(a, LoadF32{}); }
void attn_f32_f16_sse4_2(const AttnArgs& a) { attn_simd<Sse42>(a, LoadF16Scalar{}); }
void attn_f32_q8_sse4_2(const AttnArgs& a) { attn_simd<Sse42>(a, LoadQ8Scalar{}); }

}  // namespace piquant::kernels
