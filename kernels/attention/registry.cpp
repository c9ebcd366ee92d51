// The attention variant table, best first. attn_select() picks, per KV type and head_dim, the
// first entry the CPU (capped by PIQUANT_ISA) supports; the ref entries accept everything.
#include "attention/attention.hpp"

namespace piquant::kernels {
namespace {

constexpr size_t kSimd = kKvQ8Block;  // head_dim multiple: 32, every SIMD width and the q8 block
constexpr CpuFeature kNone = CpuFeature::kNone, kNeon = CpuFeature::kNeon,
                     kAvx2 = CpuFeature::kAvx2, kSse42 = CpuFeature::kSse42,
                     kAvx512 = CpuFeature::kAvx512Vnni;  // the AVX-512 tier cpu.hpp knows

// clang-format off
const AttnKernel kAttnKernels[] = {
#if defined(__x86_64__)
    {"attn_f32_f16_avx512",  kAvx512,  KvType::kF16, kSimd,  attn_f32_f16_avx512},
    {"attn_f32_q8_avx512",   kAvx512,  KvType::kQ8,  kSimd,  attn_f32_q8_avx512},
    {"attn_f32_f32_avx512",  kAvx512,  KvType::kF32, kSimd,  attn_f32_f32_avx512},
    {"attn_f32_f16_avx2",    kAvx2,    KvType::kF16, kSimd,  attn_f32_f16_avx2},
    {"attn_f32_q8_avx2",     kAvx2,    KvType::kQ8,  kSimd,  attn_f32_q8_avx2},
    {"attn_f32_f32_avx2",    kAvx2,    KvType::kF32, kSimd,  attn_f32_f32_avx2},
    {"attn_f32_f16_sse4_2",  kSse42,   KvType::kF16, kSimd,  attn_f32_f16_sse4_2},
    {"attn_f32_q8_sse4_2",   kSse42,   KvType::kQ8,  kSimd,  attn_f32_q8_sse4_2},
    {"attn_f32_f32_sse4_2",  kSse42,   KvType::kF32, kSimd,  attn_f32_f32_sse4_2},
#endif
#if defined(__aarch64__)
    {"attn_f32_f16_neon",    kNeon,    KvType::kF16, kSimd,  attn_f32_f16_neon},
    {"attn_f32_q8_neon",     kNeon,    KvType::kQ8,  kSimd,  attn_f32_q8_neon},
    {"attn_f32_f32_neon",    kNeon,    KvType::kF32, kSimd,  attn_f32_f32_neon},
#endif
    {"attn_f32_f16_ref",     kNone,    KvType::kF16, 1,      attn_f32_f16_ref},
    {"attn_f32_q8_ref",      kNone,    KvType::kQ8,  1,      attn_f32_q8_ref},
    {"attn_f32_f32_ref",     kNone,    KvType::kF32, 1,      attn_f32_f32_ref},
};
// clang-format on

}  // namespace

const AttnKernel* attn_kernels(size_t* count) {
  *count = sizeof(kAttnKernels) / sizeof(kAttnKernels[0]);
  return kAttnKernels;
}

const AttnKernel* attn_select(KvType kv, size_t head_dim, uint32_t enabled) {
  if (head_dim == 0 || head_dim > kAttnMaxHeadDim) return nullptr;
  for (const AttnKernel& k : kAttnKernels) {
    const bool cpu_ok = k.needs == CpuFeature::kNone || (enabled & uint32_t(k.needs)) != 0;
    if (k.kv == kv && cpu_ok && head_dim % k.head_dim_multiple == 0) return &k;
  }
  return nullptr;
}

const AttnKernel* attn_select(KvType kv, size_t head_dim) {
  return attn_select(kv, head_dim, cpu_info().enabled);
}

}  // namespace piquant::kernels
