// The LoRA kernel tables, best first; lora_kernels() picks the first the CPU (capped by
// PIQUANT_ISA) supports, once.
#include "lora/lora.hpp"

namespace piquant::kernels {
namespace {

const LoraKernels* const kTables[] = {
#if defined(__x86_64__)
    &kLoraAvx512, &kLoraAvx2,
#endif
#if defined(__aarch64__)
    &kLoraNeon,
#endif
    &kLoraRef,
};

}  // namespace

const LoraKernels* const* lora_kernel_tables(size_t* count) {
  *count = sizeof(kTables) / sizeof(kTables[0]);
  return kTables;
}

const LoraKernels& lora_kernels(uint32_t enabled) {
  for (const LoraKernels* t : kTables) {
    if (t->needs == CpuFeature::kNone || (enabled & uint32_t(t->needs)) != 0) return *t;
  }
  return kLoraRef;
}

const LoraKernels& lora_kernels() {
  static const LoraKernels& chosen = lora_kernels(cpu_info().enabled);
  return chosen;
}

}  // namespace piquant::kernels
