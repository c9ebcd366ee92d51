#pragma once
// A small GGUF (v3, or v2 on request) writer: metadata of every type (nested arrays included) and
// tensors given as raw bytes, laid out with the file's alignment. Used by tests to build
// fixtures and by tools that export GGUF.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "format/gguf.hpp"

namespace piquant {

/// A metadata value to write (owns its data).
struct GgufWriteValue {
  GgufType type = GgufType::kUint32;
  uint64_t bits = 0;  ///< integers, bool (two's complement for signed), floats as their bits
  std::string str;
  GgufType elem_type = GgufType::kUint32;
  std::vector<GgufWriteValue> items;

  static GgufWriteValue u8(uint8_t v) { return scalar(GgufType::kUint8, v); }
  static GgufWriteValue i8(int8_t v) { return scalar(GgufType::kInt8, static_cast<uint64_t>(v)); }
  static GgufWriteValue u16(uint16_t v) { return scalar(GgufType::kUint16, v); }
  static GgufWriteValue i16(int16_t v) { return scalar(GgufType::kInt16, static_cast<uint64_t>(v)); }
  static GgufWriteValue u32(uint32_t v) { return scalar(GgufType::kUint32, v); }
  static GgufWriteValue i32(int32_t v) { return scalar(GgufType::kInt32, static_cast<uint64_t>(v)); }
  static GgufWriteValue u64(uint64_t v) { return scalar(GgufType::kUint64, v); }
  static GgufWriteValue i64(int64_t v) { return scalar(GgufType::kInt64, static_cast<uint64_t>(v)); }
  static GgufWriteValue f32(float v);
  static GgufWriteValue f64(double v);
  static GgufWriteValue boolean(bool v) { return scalar(GgufType::kBool, v ? 1 : 0); }
  static GgufWriteValue string(std::string v);
  /// An array whose items all have type `elem` (checked when written).
  static GgufWriteValue array(GgufType elem, std::vector<GgufWriteValue> items);
  static GgufWriteValue strings(const std::vector<std::string>& v);
  static GgufWriteValue floats(const std::vector<float>& v);
  static GgufWriteValue int32s(const std::vector<int32_t>& v);

 private:
  static GgufWriteValue scalar(GgufType t, uint64_t bits);
};

class GgufWriter {
 public:
  explicit GgufWriter(uint32_t version = 3) : version_(version) {}
  /// Data alignment; also written as general.alignment when not 32.
  void set_alignment(uint32_t alignment) { alignment_ = alignment; }
  void add(const std::string& key, GgufWriteValue value);
  /// A tensor of ggml type `type`; `bytes` must hold exactly its size for that type and shape.
  void add_tensor(const std::string& name, uint32_t type, std::vector<uint64_t> dims,
                  std::string bytes);

  /// The metadata added so far, in order (e.g. to copy tokenizer_to_gguf's keys elsewhere).
  const std::vector<std::pair<std::string, GgufWriteValue>>& metadata() const { return kv_; }

  /// The whole file.
  std::string to_bytes() const;
  /// Writes the file; Error(kIo) on failure.
  void write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    uint32_t type;
    std::vector<uint64_t> dims;
    std::string bytes;
  };
  uint32_t version_;
  uint32_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufWriteValue>> kv_;
  std::vector<Tensor> tensors_;
};

/// Writes a GGUF file tensor by tensor, in bounded memory (piquant-convert --to gguf): the
/// metadata and every tensor's name, type and shape are declared first (their sizes follow from
/// type and shape), then each tensor's bytes are written in the declared order. The file is
/// written to PATH.tmp and renamed to PATH by finish(); destroyed unfinished, it removes the
/// temporary file.
class GgufStreamWriter {
 public:
  explicit GgufStreamWriter(std::string path, uint32_t alignment = 32);
  ~GgufStreamWriter();
  GgufStreamWriter(const GgufStreamWriter&) = delete;
  GgufStreamWriter& operator=(const GgufStreamWriter&) = delete;

  void add(const std::string& key, GgufWriteValue value);
  /// Declares the next tensor (Error(kInvalidArgument) for an unknown type or a shape whose
  /// row length is not a whole number of the type's blocks). Returns its size in bytes.
  uint64_t declare_tensor(const std::string& name, uint32_t type, std::vector<uint64_t> dims);
  /// Appends bytes of the current tensor (declared order); a tensor may come in pieces. The
  /// header is written on the first call.
  void append(const void* data, size_t size);
  /// Checks every declared tensor is complete, pads, closes and renames. Error(kIo) on failure.
  void finish();
  uint64_t bytes_written() const { return pos_; }

 private:
  struct Info {
    std::string name;
    uint32_t type;
    std::vector<uint64_t> dims;
    uint64_t bytes;
  };
  void write_raw(const void* data, size_t size);
  void start();
  std::string path_, tmp_path_;
  uint32_t alignment_;
  std::FILE* f_ = nullptr;
  uint64_t pos_ = 0;
  bool started_ = false, finished_ = false;
  size_t current_ = 0;      // tensor being written
  uint64_t written_ = 0;    // bytes of it so far
  std::vector<std::pair<std::string, GgufWriteValue>> kv_;
  std::vector<Info> tensors_;
};

}  // namespace piquant
