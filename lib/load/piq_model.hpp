#pragma once
// Models from piquant's own .piq files: the header gives the config, tokenizer, chat template and
// generation defaults; every tensor is used in place inside the file mapping (the converter wrote
// the kernels' packed layout), so loading costs a header parse, not a copy of the weights.
#include <memory>
#include <string>

#include "format/piq.hpp"
#include "model/model_impl.hpp"

namespace piquant {

/// True when the bytes start with the .piq magic "PIQUANT\0".
bool piq_has_magic(const uint8_t* data, size_t size);

/// Builds a model over a mapped .piq file (zero copy). Error(kFormat) naming the tensor for a
/// missing tensor, a wrong shape, type, layout or size; Error(kUnsupported) for newer versions.
std::unique_ptr<Model::Impl> load_piq_model(std::shared_ptr<const PiqFile> file);

/// .piq tensor type / layout names <-> the runtime's (type "f32", "f16", "q8", "q4", "q4m";
/// layout "" = row-major, "packed" = kernels/common/pack.hpp's interleaved layout).
constexpr const char* kPiqLayoutPacked = "packed";
/// Bytes a tensor of this type, layout and [rows, cols] takes; 0 for an unknown type/layout.
size_t piq_tensor_bytes(const std::string& type, const std::string& layout, int64_t rows,
                        int64_t cols);

}  // namespace piquant
