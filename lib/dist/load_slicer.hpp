#pragma once
// The hook through which a loader reads only a rank's slice of a model (tensor parallelism,
// lib/dist/shard.hpp): the loader hands each tensor's row-major bytes as the file stores them to
// slice() before it dequantizes, widens or packs anything, and goes on with what slice() returns
// (a row range: a view of the file's bytes; a column range: a copy). So a rank never holds more
// than its slice plus the one tensor in flight. The slicing itself (which tensor is split how)
// is lib/dist's (make_gguf_slicer in shard.hpp); the loader only calls the hook.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <piquant/model.hpp>

namespace piquant {

/// A tensor's bytes as the file stores them: `rows` row-major rows of `cols` values in blocks of
/// `block_values` values of `block_bytes` bytes each (f32: 1 value of 4 bytes).
struct RawTensor {
  const uint8_t* data = nullptr;
  int64_t rows = 0, cols = 0;
  size_t block_values = 1, block_bytes = 4;
  /// Set when `data` is a copy (a column slice): the loader keeps it alive while it uses the
  /// bytes in place (f32 / f16 / embeddings) and lets it go after repacking them.
  std::shared_ptr<const void> owner;
  size_t row_bytes() const { return static_cast<size_t>(cols) / block_values * block_bytes; }
  size_t bytes() const { return static_cast<size_t>(rows) * row_bytes(); }
};

class LoadSlicer {
 public:
  virtual ~LoadSlicer() = default;
  /// The part of the file's tensor `name` this process keeps. `embedding`: the loader keeps it
  /// row-major to look rows up (the token embedding), else it is a weight or a 1-D vector
  /// (rows == 1). The result's rows and cols are the slice's; an embedding is never copied.
  virtual RawTensor slice(const std::string& name, bool embedding, const RawTensor& whole) = 0;
  /// Called once on the loaded model (tensors sliced) before its shapes are checked: records
  /// which slice it is (Model::Impl::shard) and tidies up what the file mapping holds.
  virtual void finish(Model::Impl& m) = 0;
};

}  // namespace piquant
