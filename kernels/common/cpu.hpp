#pragma once
// CPU feature detection, done once. PIQUANT_ISA (environment) caps the features the kernel
// registries may use: ref | neon | neondot | neoni8mm | avx2 | avx512vnni.
#include <cstdint>
#include <string>

namespace piquant::kernels {

enum class CpuFeature : uint32_t {
  kNone = 0,           // the scalar reference: always available
  kNeon = 1u << 0,     // ARMv8 Advanced SIMD (every aarch64 core, Cortex-A72 included)
  kNeonDot = 1u << 1,  // SDOT/UDOT (ARMv8.2 dotprod: Cortex-A76, the Pi 5)
  kNeonI8mm = 1u << 2, // SMMLA (ARMv8.6 i8mm)
  kAvx2 = 1u << 3,     // AVX2 + FMA + F16C
  kAvx512Vnni = 1u << 4,  // AVX-512 F/BW/VL + VNNI
  kSse42 = 1u << 16,   // SSE4.2 (x86 float ops via xsimd on pre-AVX2 CPUs); not a PIQUANT_ISA level
};

struct CpuInfo {
  uint32_t detected = 0;  ///< what the CPU has
  uint32_t enabled = 0;   ///< detected, capped by PIQUANT_ISA
  std::string isa_cap;    ///< the PIQUANT_ISA value, or ""
  bool has(CpuFeature f) const { return f == CpuFeature::kNone || (enabled & uint32_t(f)) != 0; }
};

/// Detected once (function-local static). If PIQUANT_ISA names a level the CPU lacks or an
/// unknown name, `error` is set and the cap is not applied; callers decide how to report it.
const CpuInfo& cpu_info();
/// Non-empty when PIQUANT_ISA could not be honoured.
const std::string& cpu_isa_error();
/// Parses a PIQUANT_ISA value against `detected`; returns the enabled mask or sets `error`.
uint32_t apply_isa_cap(uint32_t detected, const std::string& cap, std::string* error);
/// "neon+dotprod", "avx2+avx512vnni", "none".
std::string features_to_string(uint32_t mask);

}  // namespace piquant::kernels
