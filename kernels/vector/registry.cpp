// The float-op tables, best first; vector_kernels() picks the first the CPU (capped by
// PIQUANT_ISA) supports, once.
#include "vector/vector.hpp"

namespace piquant::kernels {
namespace {

const VectorKernels* const kTables[] = {
#if defined(__x86_64__)
    &kVectorAvx512, &kVectorAvx2, &kVectorSse42,
#endif
#if defined(__aarch64__)
    &kVectorNeon,
#endif
    &kVectorRef,
};

}  // namespace

const VectorKernels* const* vector_kernel_tables(size_t* count) {
  *count = sizeof(kTables) / sizeof(kTables[0]);
  return kTables;
}

const VectorKernels& vector_kernels(uint32_t enabled) {
  for (const VectorKernels* t : kTables) {
    if (t->needs == CpuFeature::kNone || (enabled & uint32_t(t->needs)) != 0) return *t;
  }
  return kVectorRef;
}

const VectorKernels& vector_kernels() {
  static const VectorKernels& chosen = vector_kernels(cpu_info().enabled);
  return chosen;
}

}  // namespace piquant::kernels
