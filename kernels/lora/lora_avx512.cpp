// LoRA down/up on AVX-512F (16 floats per register), f16 weights through vcvtph2ps zmm.
// Registered under the AVX-512 tier cpu.hpp knows (kAvx512Vnni). Algorithm: lora_impl.hpp.
#include <immintrin.h>

#include "lora/lora_impl.hpp"

namespace piquant::kernels {
namespace {

struct Avx512 {
  using Reg = __m512;
  static constexpr size_t kWidth = 16;
  static Reg zero() { return _mm512_setzero_ps(); }
  static Reg set1(float f) { return _mm512_set1_ps(f); }
  static Reg load(const float* p) { return _mm512_loadu_ps(p); }
  static Reg load(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static float hsum(Reg a) { return _mm512_reduce_add_ps(a); }
  static void store(float* p, Reg a) { _mm512_storeu_ps(p, a); }
};

}  // namespace

void lora_down_f32_f32_avx512(const LoraDownArgs& a) { lora_down<Avx512, float>(a); }
void lora_down_f32_f16_avx512(const LoraDownArgs& a) { lora_down<Avx512, uint16_t>(a); }
void lora_up_f32_f32_avx512(const LoraUpArgs& a) { lora_up<Avx512, float>(a); }
void lora_up_f32_f16_avx512(const LoraUpArgs& a) { lora_up<Avx512, uint16_t>(a); }

const LoraKernels kLoraAvx512 = {"avx512",
                                 CpuFeature::kAvx512Vnni,
                                 {lora_down_f32_f32_avx512, lora_down_f32_f16_avx512},
                                 {lora_up_f32_f32_avx512, lora_up_f32_f16_avx512}};

}  // namespace piquant::kernels
