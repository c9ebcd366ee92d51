#pragma once
// A weight matrix as the forward pass sees it: rows x cols (rows = outputs, cols = inputs,
// row-major), its element type and where its bytes are. Tensors never own memory: the Model
// keeps the mmaps and buffers they point into alive.
#include <cstddef>
#include <cstdint>
#include <string>

namespace piquant {

enum class DType : uint8_t { kF32 };

const char* to_string(DType t);

struct Tensor {
  std::string name;
  DType type = DType::kF32;
  int64_t rows = 0;  ///< output features (1 for a vector)
  int64_t cols = 0;  ///< input features (reduction dimension)
  const void* data = nullptr;

  bool empty() const { return data == nullptr; }
  size_t numel() const { return static_cast<size_t>(rows) * static_cast<size_t>(cols); }
  size_t bytes() const;
  const float* f32() const { return static_cast<const float*>(data); }
};

}  // namespace piquant
