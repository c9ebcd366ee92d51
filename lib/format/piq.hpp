#pragma once
// piquant's own model file (.piq): one file that loads with one mmap and no copying.
//
//   offset 0   prelude, 64 bytes (little-endian):
//                0  magic "PIQUANT\0"      8  u32 format version   12  u32 reserved (0)
//               16  u64 header offset     24  u64 header length   32..63 reserved (0)
//   offset 64  tensor data, each tensor starting at a multiple of `alignment` (default 64)
//   header     JSON (nlohmann/json) at the end of the file: config, rope layout, tokenizer,
//              chat template, generation defaults, provenance, tensor index with checksums
//
// The header goes last so the writer streams: tensors are written as they are produced
// (bounded memory), the index is known only at the end, then the prelude is patched and the
// file renamed into place. The version is checked before anything else is read, so a later
// version may change everything after byte 12. docs/formats.md describes the fields.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "format/mapped_file.hpp"
#include "piquant/model.hpp"

namespace piquant {

constexpr uint32_t kPiqVersion = 1;          ///< the newest format this build reads and writes
constexpr size_t kPiqPreludeSize = 64;
constexpr size_t kPiqDefaultAlignment = 64;  ///< a cache line and an AVX-512 register

/// One entry of the tensor index.
struct PiqTensorInfo {
  std::string name;             ///< GGUF-style: "token_embd.weight", "blk.0.attn_q.weight"
  std::string type;             ///< "f32", "f16", "bf16", "q8", "q4", "q4m", ... (kernel naming)
  std::string layout;           ///< packing id the kernels consume ("" = plain row-major)
  std::vector<int64_t> shape;   ///< outermost first: a weight is [rows (out), cols (in)]
  uint64_t offset = 0;          ///< absolute file offset, a multiple of the file's alignment
  uint64_t size = 0;            ///< bytes
  uint64_t checksum = 0;        ///< XXH64 (seed 0) of the tensor's bytes
};

/// Everything in the header that is not the tensor index.
struct PiqMetadata {
  ModelConfig config;
  std::string rope_layout = "pairs";  ///< how Q/K rows are stored: "pairs" or "halves"
  nlohmann::json tokenizer;           ///< opaque, from the tokenizer's to_json (null: none)
  std::string chat_template;          ///< Jinja text as the model ships it ("" = none)
  GenerationDefaults generation;
  nlohmann::json provenance = nlohmann::json::object();  ///< source, quantization, converter, date
  nlohmann::json extra = nlohmann::json::object();       ///< anything else, kept verbatim
};

/// A parsed and validated header.
struct PiqHeader {
  uint32_t version = 0;
  uint64_t alignment = kPiqDefaultAlignment;
  uint64_t header_offset = 0, header_size = 0;
  PiqMetadata meta;
  std::vector<PiqTensorInfo> tensors;  ///< in file order
};

/// Parses and validates a whole .piq file held in memory (not the checksums: see verify).
/// Checks magic, version, header bounds, JSON, every field's type, tensor names unique, each
/// tensor inside the data area, aligned, not overlapping another, and f32/f16/bf16 sizes
/// against their shapes. Throws Error(kFormat), or kUnsupported for a newer version.
PiqHeader parse_piq(const uint8_t* data, size_t size, const std::string& source);

/// A mapped .piq file. Tensor data pointers point into the mapping (zero copy) and stay
/// valid while the PiqFile or any copy of mapping() lives.
class PiqFile {
 public:
  explicit PiqFile(const std::string& path);
  /// Parses a file mapped already (Model::load maps once, reads the magic, then parses).
  explicit PiqFile(std::shared_ptr<const MappedFile> file);

  const PiqHeader& header() const { return header_; }
  const PiqMetadata& meta() const { return header_.meta; }
  const std::vector<PiqTensorInfo>& tensors() const { return header_.tensors; }
  const PiqTensorInfo* find(const std::string& name) const;
  /// Throws Error(kFormat) "<path>: tensor <name> not found".
  const PiqTensorInfo& get(const std::string& name) const;
  /// The tensor's bytes inside the mapping, aligned to header().alignment.
  const uint8_t* data(const PiqTensorInfo& t) const { return file_->data() + t.offset; }
  const std::shared_ptr<const MappedFile>& mapping() const { return file_; }
  const std::string& path() const { return file_->path(); }

  struct VerifyResult {
    size_t checked = 0;
    std::vector<std::string> mismatched;  ///< "blk.3.attn_q.weight: checksum ... != ..."
    bool ok() const { return mismatched.empty(); }
  };
  /// Recomputes every tensor's checksum (reads the whole file).
  VerifyResult verify() const;

 private:
  std::shared_ptr<const MappedFile> file_;
  PiqHeader header_;
  std::unordered_map<std::string, size_t> by_name_;
};

struct PiqWriterOptions {
  size_t alignment = kPiqDefaultAlignment;  ///< power of two, 16..65536
};

/// Streams a .piq file: tensors go to disk as they are added (memory stays bounded by the
/// caller's largest buffer); finish() writes the header, patches the prelude, syncs and
/// renames `path.tmp` to `path`. Destroyed without finish(): the temp file is removed.
class PiqWriter {
 public:
  explicit PiqWriter(std::string path, PiqWriterOptions options = {});
  ~PiqWriter();
  PiqWriter(const PiqWriter&) = delete;
  PiqWriter& operator=(const PiqWriter&) = delete;

  /// Adds a whole tensor.
  void add_tensor(const std::string& name, const std::string& type, const std::string& layout,
                  std::vector<int64_t> shape, const void* data, size_t size);
  /// Adds a tensor in pieces (e.g. row blocks as they are quantized).
  void begin_tensor(const std::string& name, const std::string& type, const std::string& layout,
                    std::vector<int64_t> shape);
  void append(const void* data, size_t size);
  void end_tensor();

  void finish(const PiqMetadata& meta);
  uint64_t bytes_written() const { return pos_; }

 private:
  void write_raw(const void* data, size_t size);
  std::string path_, tmp_path_;
  PiqWriterOptions options_;
  std::FILE* f_ = nullptr;
  uint64_t pos_ = 0;
  bool in_tensor_ = false;
  bool finished_ = false;
  std::vector<PiqTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> names_;
  struct HashState;
  std::unique_ptr<HashState> hash_;
};

/// XXH64 (Yann Collet's xxHash, 64-bit variant), implemented from its specification: ~10+ GB/s
/// scalar on a desktop core, a few GB/s on a Pi, so --verify runs at storage speed.
class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void update(const void* data, size_t n);
  uint64_t digest() const;

 private:
  uint64_t v_[4];
  uint64_t seed_;
  uint64_t total_ = 0;
  uint8_t buf_[32];
  size_t buffered_ = 0;
};
uint64_t xxh64(const void* data, size_t n, uint64_t seed = 0);

/// ModelConfig <-> JSON as stored in the header ("config"). from_json checks every field's
/// type and range and names the field in its error.
nlohmann::json config_to_json(const ModelConfig& c);
ModelConfig config_from_json(const nlohmann::json& j, const std::string& source);
nlohmann::json generation_to_json(const GenerationDefaults& g);
GenerationDefaults generation_from_json(const nlohmann::json& j, const std::string& source);

}  // namespace piquant
