#pragma once
// GGUF (v2/v3) reader: header, metadata key/values of every type (nested arrays included),
// tensor infos and the aligned data section. The file is memory-mapped; every count, offset and
// size is checked against the file length, and errors name the key or tensor at fault.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace piquant {

class MappedFile;

/// Metadata value types as numbered in the GGUF spec.
enum class GgufType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6,
  kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};
const char* to_string(GgufType type);

/// One metadata value. Strings point into the file's bytes (valid while the GgufFile lives).
class GgufValue {
 public:
  GgufType type() const { return type_; }
  GgufType elem_type() const { return elem_type_; }  ///< arrays only
  bool is_array() const { return type_ == GgufType::kArray; }
  bool is_integer() const;
  bool is_float() const { return type_ == GgufType::kFloat32 || type_ == GgufType::kFloat64; }

  // Typed reads; `what` (usually the key) names the value in the error when the type is wrong.
  uint64_t to_uint(const std::string& what) const;  ///< any integer type, non-negative
  int64_t to_int(const std::string& what) const;    ///< any integer type that fits int64
  double to_float(const std::string& what) const;   ///< float or integer types
  bool to_bool(const std::string& what) const;
  std::string_view to_string(const std::string& what) const;

  size_t size() const { return items_.size(); }  ///< array length
  const GgufValue& at(size_t i) const { return items_.at(i); }
  const std::vector<GgufValue>& items() const { return items_; }
  /// Whole-array conversions; throw when an element has the wrong type.
  std::vector<std::string_view> to_strings(const std::string& what) const;
  std::vector<float> to_floats(const std::string& what) const;
  std::vector<int64_t> to_ints(const std::string& what) const;

  /// Readable rendering for tools ("[3 x string]" for long arrays).
  std::string describe(size_t max_items = 8) const;

  /// Values as the reader builds them: an integer or bool of `type` (unsigned or signed
  /// source), a float, a string (pointing into the file), an array of `elem`.
  static GgufValue of_uint(GgufType type, uint64_t u);
  static GgufValue of_int(GgufType type, int64_t i);
  static GgufValue of_float(GgufType type, double f);
  static GgufValue of_string(std::string_view s);
  static GgufValue of_array(GgufType elem, std::vector<GgufValue> items);

 private:
  GgufType type_ = GgufType::kUint8;
  GgufType elem_type_ = GgufType::kUint8;
  uint64_t u_ = 0;  // unsigned ints and bool
  int64_t i_ = 0;   // signed ints
  double f_ = 0;    // floats
  std::string_view s_;
  std::vector<GgufValue> items_;
};

struct GgufKeyValue {
  std::string key;
  GgufValue value;
};

/// ggml tensor type ids (the stable ones piquant knows the block layout of).
enum class GgmlType : uint32_t {
  kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ8_1 = 9,
  kQ2_K = 10, kQ3_K = 11, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14, kQ8_K = 15, kIQ2_XXS = 16,
  kIQ2_XS = 17, kIQ3_XXS = 18, kIQ1_S = 19, kIQ4_NL = 20, kIQ3_S = 21, kIQ2_S = 22,
  kIQ4_XS = 23, kI8 = 24, kI16 = 25, kI32 = 26, kI64 = 27, kF64 = 28, kIQ1_M = 29, kBF16 = 30,
  kTQ1_0 = 34, kTQ2_0 = 35, kMXFP4 = 39,
};

struct GgmlTypeInfo {
  const char* name;
  uint32_t block_size;  ///< elements per block
  uint32_t type_size;   ///< bytes per block
};
/// Block layout of a ggml type id; nullptr for ids piquant does not know.
const GgmlTypeInfo* ggml_type_info(uint32_t type);

struct GgufTensorInfo {
  std::string name;
  uint32_t type = 0;            ///< ggml type id (see GgmlType)
  std::vector<uint64_t> dims;   ///< ne[0] first (the contiguous dimension)
  uint64_t offset = 0;          ///< from the start of the data section
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;         ///< 0 when the type is unknown (then the data is unchecked)
  bool known_type = false;
};

class GgufFile {
 public:
  /// Maps and parses `path`; throws Error(kIo) when it cannot be read, Error(kFormat) naming the
  /// key/tensor/offset when it is malformed, Error(kUnsupported) for GGUF v1 or big-endian files.
  explicit GgufFile(const std::string& path);
  /// Parses a file mapped already (Model::load maps once, reads the magic, then parses).
  explicit GgufFile(std::shared_ptr<const MappedFile> file);
  /// Parses bytes held in memory (tests, fuzzing); `source` names them in errors.
  GgufFile(std::string bytes, std::string source);
  ~GgufFile();
  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;

  /// True when the bytes start with the GGUF magic.
  static bool has_magic(const uint8_t* data, size_t size);

  uint32_t version() const { return version_; }
  const std::string& source() const { return source_; }
  size_t alignment() const { return alignment_; }
  size_t data_offset() const { return data_offset_; }  ///< start of the data section

  const std::vector<GgufKeyValue>& metadata() const { return kv_; }
  const GgufValue* find(std::string_view key) const;
  /// The value of `key`; Error(kFormat) "missing metadata key" when absent.
  const GgufValue& get(std::string_view key) const;
  std::string get_string(std::string_view key, std::string_view fallback) const;
  uint64_t get_uint(std::string_view key, uint64_t fallback) const;
  bool get_bool(std::string_view key, bool fallback) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  /// Pointer to the tensor's bytes inside the mapped file (n_bytes of them).
  const uint8_t* tensor_data(const GgufTensorInfo& t) const;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void parse();

  std::shared_ptr<const MappedFile> file_;
  std::unique_ptr<std::string> bytes_;  // owned bytes when parsed from memory (stable address)
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string source_;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::vector<GgufKeyValue> kv_;
  std::vector<GgufTensorInfo> tensors_;
};

}  // namespace piquant
