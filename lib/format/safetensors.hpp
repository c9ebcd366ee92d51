#pragma once
// safetensors (Hugging Face): u64 little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "BF16", "shape": [r, c], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the data area; offsets are relative to its start. Every field is checked against the
// file: header length, JSON, dtype, shape x element size == end - begin, offsets inside the data
// area, no two tensors overlapping (sorted or contiguous data is not required).
//
// Reading maps the file and copies nothing: a TensorView points into the mapping until the
// caller converts it (to_f32). A sharded checkpoint (model.safetensors.index.json with a
// weight_map) looks like one file through SafetensorsModel.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "format/dtype_convert.hpp"
#include "format/mapped_file.hpp"

namespace piquant {

/// One tensor of a safetensors file: where its bytes are and how to read them.
struct TensorView {
  std::string name;
  FileDType dtype = FileDType::kUnsupported;
  std::string dtype_name;       ///< as written in the file ("BF16", "I64", ...)
  std::vector<int64_t> shape;   ///< outermost first (row-major), as torch writes it
  const uint8_t* data = nullptr;
  size_t size = 0;              ///< bytes
  size_t numel = 0;             ///< product of shape (1 for a scalar)
  std::string file;             ///< the file it lives in, for messages

  /// Converts all elements to f32 (dst holds numel floats). kUnsupported error naming the
  /// tensor and its dtype when it is not F32/F16/BF16.
  void to_f32(float* dst) const;
  /// Converts elements [first, first + n) (e.g. one row) to f32; bounds-checked.
  void to_f32(size_t first, size_t n, float* dst) const;
  /// Throws Error(kUnsupported) "<file>: tensor <name> has dtype I64; piquant reads F32, F16,
  /// BF16" unless the dtype is one piquant converts.
  void require_supported() const;
  /// "[2048, 5632]"
  std::string shape_string() const;
};

/// The parsed header: tensor byte ranges are relative to data_start (absolute file offsets are
/// data_start + begin).
struct SafetensorsHeader {
  struct Entry {
    std::string name;
    FileDType dtype;
    std::string dtype_name;
    std::vector<int64_t> shape;
    size_t begin, end, numel;
  };
  std::vector<Entry> tensors;                   ///< in header (JSON key) order
  std::map<std::string, std::string> metadata;  ///< __metadata__ (non-string values as JSON)
  size_t data_start = 0;                        ///< 8 + header length
};

/// Parses and validates a whole safetensors file held in memory. `source` names it in errors.
/// Never reads outside [data, data + size); throws Error(kFormat / kUnsupported).
SafetensorsHeader parse_safetensors(const uint8_t* data, size_t size, const std::string& source);

/// One mapped .safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const std::string& path() const { return file_->path(); }

 private:
  std::shared_ptr<const MappedFile> file_;
  SafetensorsHeader header_;
  std::vector<TensorView> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
};

/// A checkpoint: one .safetensors file, or shards listed by a model.safetensors.index.json.
/// Tensors are looked up by name whichever shard holds them.
class SafetensorsModel {
 public:
  /// `path`: a .safetensors file, an .index.json, or a directory holding
  /// model.safetensors.index.json or model.safetensors (the index wins when both exist).
  static SafetensorsModel open(const std::string& path);

  const TensorView* find(const std::string& name) const;
  /// Throws Error(kFormat) "<source>: tensor <name> not found" when absent.
  const TensorView& get(const std::string& name) const;
  /// All tensor names, sorted.
  std::vector<std::string> names() const;
  size_t size() const { return by_name_.size(); }
  /// Total bytes of tensor data (for progress reporting).
  uint64_t total_bytes() const;
  const std::string& source() const { return source_; }
  const std::vector<std::shared_ptr<const SafetensorsFile>>& files() const { return files_; }

 private:
  std::string source_;
  std::vector<std::shared_ptr<const SafetensorsFile>> files_;
  std::unordered_map<std::string, const TensorView*> by_name_;
};

/// Writes small safetensors files (tests, LoRA adapters). Tensors are copied in; write() lays
/// them out contiguously in insertion order after a space-padded, 8-byte-aligned header.
class SafetensorsWriter {
 public:
  void add(const std::string& name, FileDType dtype, std::vector<int64_t> shape, const void* data,
           size_t bytes);
  /// Stores f32 values as `dtype` (F32, F16 or BF16; round to nearest even).
  void add_f32(const std::string& name, std::vector<int64_t> shape, const float* values,
               FileDType dtype = FileDType::kF32);
  void set_metadata(const std::string& key, const std::string& value);
  /// The file's bytes.
  std::string serialize() const;
  /// Writes atomically (temp file + rename). Throws Error(kIo).
  void write(const std::string& path) const;

 private:
  struct Item {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  std::vector<Item> items_;
  std::map<std::string, std::string> metadata_;
};

/// Writes `bytes` to `path` through `path.tmp` and rename(2), so readers never see half a file.
void write_file_atomic(const std::string& path, const std::string& bytes);
/// The whole file as bytes; Error(kIo) naming it when it cannot be read.
std::string read_whole_file(const std::string& path);

}  // namespace piquant
