// LoRA down/up on AVX2 + FMA, f16 weights through F16C (vcvtph2ps). Built with -mavx2 -mfma
// -mf16c. Algorithm: lora_impl.hpp.
#include <immintrin.h>

#include "lora/lora_impl.hpp"

namespace piquant::kernels {
namespace {

struct Avx2 {
  using Reg = __m256;
  static constexpr size_t kWidth = 8;
  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg set1(float f) { return _mm256_set1_ps(f); }
  static Reg load(const float* p) { return _mm256_loadu_ps(p); }
  static Reg load(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static float hsum(Reg a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static void store(float* p, Reg a) { _mm256_storeu_ps(p, a); }
};

}  // namespace

void lora_down_f32_f32_avx2(const LoraDownArgs& a) { lora_down<Avx2, float>(a); }
void lora_down_f32_f16_avx2(const LoraDownArgs& a) { lora_down<Avx2, uint16_t>(a); }
void lora_up_f32_f32_avx2(const LoraUpArgs& a) { lora_up<Avx2, float>(a); }
void lora_up_f32_f16_avx2(const LoraUpArgs& a) { lora_up<Avx2, uint16_t>(a); }

const LoraKernels kLoraAvx2 = {"avx2",
                               CpuFeature::kAvx2,
                               {lora_down_f32_f32_avx2, lora_down_f32_f16_avx2},
                               {lora_up_f32_f32_avx2, lora_up_f32_f16_avx2}};

}  // namespace piquant::kernels
