#include "common/cpu.hpp"

#include <cstdlib>

#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace piquant::kernels {
namespace {

uint32_t detect() {
  uint32_t m = 0;
#if defined(__aarch64__)
  m |= uint32_t(CpuFeature::kNeon);
#if defined(__linux__)
  const unsigned long hw = getauxval(AT_HWCAP);
  if (hw & HWCAP_ASIMDDP) m |= uint32_t(CpuFeature::kNeonDot);
#ifdef HWCAP2_I8MM
  if (getauxval(AT_HWCAP2) & HWCAP2_I8MM) m |= uint32_t(CpuFeature::kNeonI8mm);
#endif
#endif
#elif defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) m |= uint32_t(CpuFeature::kSse42);
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    m |= uint32_t(CpuFeature::kAvx2);
  }
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")) {
    m |= uint32_t(CpuFeature::kAvx512Vnni);
  }
#endif
  return m;
}

struct Detected {
  CpuInfo info;
  std::string error;
};

const Detected& detected() {
  static const Detected d = [] {
    Detected r;
    r.info.detected = detect();
    const char* env = std::getenv("PIQUANT_ISA");
    r.info.isa_cap = env ? env : "";
    r.info.enabled = apply_isa_cap(r.info.detected, r.info.isa_cap, &r.error);
    return r;
  }();
  return d;
}

}  // namespace

uint32_t apply_isa_cap(uint32_t det, const std::string& cap, std::string* error) {
  if (cap.empty() || cap == "auto" || cap == "native") return det;
  uint32_t want;
  const uint32_t neon = uint32_t(CpuFeature::kNeon), dot = uint32_t(CpuFeature::kNeonDot),
                 i8mm = uint32_t(CpuFeature::kNeonI8mm), avx2 = uint32_t(CpuFeature::kAvx2),
                 vnni = uint32_t(CpuFeature::kAvx512Vnni);
  if (cap == "ref" || cap == "scalar") want = 0;
  else if (cap == "neon") want = neon;
  else if (cap == "neondot" || cap == "dotprod") want = neon | dot;
  else if (cap == "neoni8mm" || cap == "i8mm") want = neon | dot | i8mm;
  else if (cap == "avx2") want = avx2;
  else if (cap == "avx512vnni" || cap == "avx512") want = avx2 | vnni;
  else {
    if (error) {
      *error = "PIQUANT_ISA=" + cap +
               " is not a known level (ref, neon, neondot, neoni8mm, avx2, avx512vnni)";
    }
    return det;
  }
  if ((want & det) != want) {
    if (error) {
      *error = "PIQUANT_ISA=" + cap + " asks for " + features_to_string(want) +
               " but this CPU has only " + features_to_string(det);
    }
    return det;
  }
  return want;
}

const CpuInfo& cpu_info() { return detected().info; }
const std::string& cpu_isa_error() { return detected().error; }

std::string features_to_string(uint32_t m) {
  std::string s;
  auto add = [&](CpuFeature f, const char* name) {
    if (m & uint32_t(f)) s += (s.empty() ? "" : "+") + std::string(name);
  };
  add(CpuFeature::kNeon, "neon");
  add(CpuFeature::kNeonDot, "dotprod");
  add(CpuFeature::kNeonI8mm, "i8mm");
  add(CpuFeature::kAvx2, "avx2");
  add(CpuFeature::kAvx512Vnni, "avx512vnni");
  add(CpuFeature::kSse42, "sse4.2");
  return s.empty() ? "none" : s;
}

}  // namespace piquant::kernels
