#include "model/tensor.hpp"

namespace piquant {

const char* to_string(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
  }
  return "?";
}

size_t Tensor::bytes() const {
  switch (type) {
    case DType::kF32: return numel() * sizeof(float);
  }
  return 0;
}

}  // namespace piquant
