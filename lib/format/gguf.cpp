#include "format/gguf.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "format/mapped_file.hpp"
#include "piquant/error.hpp"

namespace piquant {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxArrayDepth = 16;       // nested arrays deeper than this are rejected

const GgmlTypeInfo kTypes[] = {
    {"F32", 1, 4},        {"F16", 1, 2},       {"Q4_0", 32, 18},   {"Q4_1", 32, 20},
    {nullptr, 0, 0},      {nullptr, 0, 0},     {"Q5_0", 32, 22},   {"Q5_1", 32, 24},
    {"Q8_0", 32, 34},     {"Q8_1", 32, 36},    {"Q2_K", 256, 84},  {"Q3_K", 256, 110},
    {"Q4_K", 256, 144},   {"Q5_K", 256, 176},  {"Q6_K", 256, 210}, {"Q8_K", 256, 292},
    {"IQ2_XXS", 256, 66}, {"IQ2_XS", 256, 74}, {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},
    {"IQ4_NL", 32, 18},   {"IQ3_S", 256, 110}, {"IQ2_S", 256, 82}, {"IQ4_XS", 256, 136},
    {"I8", 1, 1},         {"I16", 1, 2},       {"I32", 1, 4},      {"I64", 1, 8},
    {"F64", 1, 8},        {"IQ1_M", 256, 56},  {"BF16", 1, 2},     {nullptr, 0, 0},
    {nullptr, 0, 0},      {nullptr, 0, 0},     {"TQ1_0", 256, 54}, {"TQ2_0", 256, 66},
    {nullptr, 0, 0},      {nullptr, 0, 0},     {nullptr, 0, 0},    {"MXFP4", 32, 17},
};

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::kUint8: case GgufType::kInt8: case GgufType::kBool: return 1;
    case GgufType::kUint16: case GgufType::kInt16: return 2;
    case GgufType::kUint32: case GgufType::kInt32: case GgufType::kFloat32: return 4;
    case GgufType::kUint64: case GgufType::kInt64: case GgufType::kFloat64: return 8;
    case GgufType::kString: return 8;   // at least the length
    case GgufType::kArray: return 12;   // at least type + count
  }
  return 0;
}

[[noreturn]] void type_error(const std::string& what, const char* want, GgufType got) {
  throw Error(ErrorCode::kFormat, what + ": expected " + want + ", found " +
                                      to_string(got));
}

}  // namespace

const char* to_string(GgufType type) {
  switch (type) {
    case GgufType::kUint8: return "uint8";
    case GgufType::kInt8: return "int8";
    case GgufType::kUint16: return "uint16";
    case GgufType::kInt16: return "int16";
    case GgufType::kUint32: return "uint32";
    case GgufType::kInt32: return "int32";
    case GgufType::kFloat32: return "float32";
    case GgufType::kBool: return "bool";
    case GgufType::kString: return "string";
    case GgufType::kArray: return "array";
    case GgufType::kUint64: return "uint64";
    case GgufType::kInt64: return "int64";
    case GgufType::kFloat64: return "float64";
  }
  return "unknown";
}

const GgmlTypeInfo* ggml_type_info(uint32_t type) {
  if (type >= sizeof(kTypes) / sizeof(kTypes[0]) || kTypes[type].name == nullptr) return nullptr;
  return &kTypes[type];
}

// --- GgufValue ---------------------------------------------------------------------------------

bool GgufValue::is_integer() const {
  switch (type_) {
    case GgufType::kUint8: case GgufType::kInt8: case GgufType::kUint16: case GgufType::kInt16:
    case GgufType::kUint32: case GgufType::kInt32: case GgufType::kUint64: case GgufType::kInt64:
      return true;
    default: return false;
  }
}

uint64_t GgufValue::to_uint(const std::string& what) const {
  if (!is_integer()) type_error(what, "an integer", type_);
  if (i_ < 0) {
    throw Error(ErrorCode::kFormat, what + ": negative value " + std::to_string(i_));
  }
  return u_;
}

int64_t GgufValue::to_int(const std::string& what) const {
  if (!is_integer()) type_error(what, "an integer", type_);
  if (type_ == GgufType::kUint64 && u_ > static_cast<uint64_t>(INT64_MAX)) {
    throw Error(ErrorCode::kFormat, what + ": value " + std::to_string(u_) +
                                        " does not fit int64");
  }
  return i_;
}

double GgufValue::to_float(const std::string& what) const {
  if (is_float()) return f_;
  if (is_integer()) return type_ == GgufType::kUint64 ? static_cast<double>(u_)
                                                      : static_cast<double>(i_);
  type_error(what, "a number", type_);
}

bool GgufValue::to_bool(const std::string& what) const {
  if (type_ != GgufType::kBool) type_error(what, "bool", type_);
  return u_ != 0;
}

std::string_view GgufValue::to_string(const std::string& what) const {
  if (type_ != GgufType::kString) type_error(what, "string", type_);
  return s_;
}

std::vector<std::string_view> GgufValue::to_strings(const std::string& what) const {
  if (type_ != GgufType::kArray || elem_type_ != GgufType::kString) {
    type_error(what, "array of string", type_ == GgufType::kArray ? elem_type_ : type_);
  }
  std::vector<std::string_view> out;
  out.reserve(items_.size());
  for (const GgufValue& v : items_) out.push_back(v.s_);
  return out;
}

std::vector<float> GgufValue::to_floats(const std::string& what) const {
  if (type_ != GgufType::kArray) type_error(what, "array of numbers", type_);
  std::vector<float> out;
  out.reserve(items_.size());
  for (size_t i = 0; i < items_.size(); ++i) {
    out.push_back(static_cast<float>(items_[i].to_float(what + "[" + std::to_string(i) + "]")));
  }
  return out;
}

std::vector<int64_t> GgufValue::to_ints(const std::string& what) const {
  if (type_ != GgufType::kArray) type_error(what, "array of integers", type_);
  std::vector<int64_t> out;
  out.reserve(items_.size());
  for (size_t i = 0; i < items_.size(); ++i) {
    out.push_back(items_[i].to_int(what + "[" + std::to_string(i) + "]"));
  }
  return out;
}

std::string GgufValue::describe(size_t max_items) const {
  switch (type_) {
    case GgufType::kString: return "\"" + std::string(s_.substr(0, 200)) + "\"";
    case GgufType::kBool: return u_ ? "true" : "false";
    case GgufType::kFloat32: case GgufType::kFloat64: return std::to_string(f_);
    case GgufType::kUint64: return std::to_string(u_);
    case GgufType::kArray: {
      if (items_.size() > max_items) {
        return "[" + std::to_string(items_.size()) + " x " + piquant::to_string(elem_type_) + "]";
      }
      std::string s = "[";
      for (size_t i = 0; i < items_.size(); ++i) s += (i ? ", " : "") + items_[i].describe(max_items);
      return s + "]";
    }
    default: return std::to_string(i_);
  }
}

// --- parser ------------------------------------------------------------------------------------

GgufValue GgufValue::of_uint(GgufType type, uint64_t u) {
  GgufValue v;
  v.type_ = type;
  v.u_ = u;
  v.i_ = static_cast<int64_t>(u);
  return v;
}

GgufValue GgufValue::of_int(GgufType type, int64_t i) {
  GgufValue v;
  v.type_ = type;
  v.i_ = i;
  v.u_ = static_cast<uint64_t>(i);
  return v;
}

GgufValue GgufValue::of_float(GgufType type, double f) {
  GgufValue v;
  v.type_ = type;
  v.f_ = f;
  return v;
}

GgufValue GgufValue::of_string(std::string_view s) {
  GgufValue v;
  v.type_ = GgufType::kString;
  v.s_ = s;
  return v;
}

GgufValue GgufValue::of_array(GgufType elem, std::vector<GgufValue> items) {
  GgufValue v;
  v.type_ = GgufType::kArray;
  v.elem_type_ = elem;
  v.items_ = std::move(items);
  return v;
}

class GgufParser {
 public:
  explicit GgufParser(ByteReader& r) : r_(r) {}

  std::string_view read_string(const std::string& what) {
    const uint64_t n = r_.read<uint64_t>(what.c_str());
    if (n > r_.remaining()) {
      r_.fail(what + ": string length " + std::to_string(n) + " at offset " +
              std::to_string(r_.offset() - 8) + " exceeds the " + std::to_string(r_.remaining()) +
              " bytes left");
    }
    return r_.take_string(static_cast<size_t>(n), what.c_str());
  }

  GgufValue read_value(GgufType type, const std::string& what, int depth) {
    const char* w = what.c_str();
    switch (type) {
      case GgufType::kUint8: return GgufValue::of_uint(type, r_.read<uint8_t>(w));
      case GgufType::kUint16: return GgufValue::of_uint(type, r_.read<uint16_t>(w));
      case GgufType::kUint32: return GgufValue::of_uint(type, r_.read<uint32_t>(w));
      case GgufType::kUint64: return GgufValue::of_uint(type, r_.read<uint64_t>(w));
      case GgufType::kInt8: return GgufValue::of_int(type, r_.read<int8_t>(w));
      case GgufType::kInt16: return GgufValue::of_int(type, r_.read<int16_t>(w));
      case GgufType::kInt32: return GgufValue::of_int(type, r_.read<int32_t>(w));
      case GgufType::kInt64: return GgufValue::of_int(type, r_.read<int64_t>(w));
      case GgufType::kFloat32: return GgufValue::of_float(type, static_cast<double>(r_.read<float>(w)));
      case GgufType::kFloat64: return GgufValue::of_float(type, r_.read<double>(w));
      case GgufType::kBool: {
        const uint8_t b = r_.read<uint8_t>(w);
        if (b > 1) r_.fail(what + ": bool byte " + std::to_string(b) + " is neither 0 nor 1");
        return GgufValue::of_uint(type, b);
      }
      case GgufType::kString: return GgufValue::of_string(read_string(what));
      case GgufType::kArray: {
        if (depth >= kMaxArrayDepth) {
          r_.fail(what + ": arrays nested deeper than " + std::to_string(kMaxArrayDepth));
        }
        const uint32_t et = r_.read<uint32_t>(w);
        check_type(et, what + " element type");
        const GgufType elem = static_cast<GgufType>(et);
        const uint64_t n = r_.read<uint64_t>(w);
        const size_t min = scalar_size(elem);
        if (n > r_.remaining() / min) {
          r_.fail(what + ": array of " + std::to_string(n) + " " + to_string(elem) +
                  " needs at least " + std::to_string(min) + " bytes each but only " +
                  std::to_string(r_.remaining()) + " bytes remain");
        }
        std::vector<GgufValue> items(static_cast<size_t>(n));
        for (auto& item : items) item = read_value(elem, what, depth + 1);
        return GgufValue::of_array(elem, std::move(items));
      }
    }
    r_.fail(what + ": unknown type");
  }

  void check_type(uint32_t t, const std::string& what) {
    if (t > static_cast<uint32_t>(GgufType::kFloat64)) {
      r_.fail(what + ": unknown metadata value type " + std::to_string(t) + " at offset " +
              std::to_string(r_.offset() - 4));
    }
  }

 private:
  ByteReader& r_;
};

// --- GgufFile ----------------------------------------------------------------------------------

GgufFile::GgufFile(const std::string& path) : GgufFile(std::make_shared<const MappedFile>(path)) {}

GgufFile::GgufFile(std::shared_ptr<const MappedFile> file) : file_(std::move(file)) {
  data_ = file_->data();
  size_ = file_->size();
  source_ = file_->path();
  parse();
}

GgufFile::GgufFile(std::string bytes, std::string source)
    : bytes_(std::make_unique<std::string>(std::move(bytes))), source_(std::move(source)) {
  data_ = reinterpret_cast<const uint8_t*>(bytes_->data());
  size_ = bytes_->size();
  parse();
}

GgufFile::~GgufFile() = default;
GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;

bool GgufFile::has_magic(const uint8_t* data, size_t size) {
  return size >= 4 && std::memcmp(data, "GGUF", 4) == 0;
}

void GgufFile::parse() {
  ByteReader r(data_, size_, source_);
  const uint32_t magic = r.read<uint32_t>("GGUF magic");
  if (magic != kMagic) r.fail("not a GGUF file (magic bytes are not \"GGUF\")");
  version_ = r.read<uint32_t>("GGUF version");
  if (version_ == 1) {
    throw Error(ErrorCode::kUnsupported, source_ + ": GGUF version 1 is not supported (v2, v3 are)");
  }
  if (version_ != 2 && version_ != 3) {
    if ((version_ & 0xFFFF) == 0 && version_ != 0) {
      throw Error(ErrorCode::kUnsupported, source_ + ": big-endian GGUF is not supported");
    }
    r.fail("unsupported GGUF version " + std::to_string(version_) + " (v2, v3 are)");
  }
  const uint64_t n_tensors = r.read<uint64_t>("tensor count");
  const uint64_t n_kv = r.read<uint64_t>("metadata count");
  // Each key/value needs >= 8 (key length) + 4 (type) + 1 bytes; each tensor info >= 8+4+4+8.
  if (n_kv > r.remaining() / 13) {
    r.fail("metadata count " + std::to_string(n_kv) + " cannot fit in the file");
  }
  GgufParser p(r);
  kv_.resize(static_cast<size_t>(n_kv));
  for (size_t i = 0; i < kv_.size(); ++i) {
    const std::string what = "metadata #" + std::to_string(i);
    kv_[i].key = std::string(p.read_string(what + " key"));
    const std::string& key = kv_[i].key;
    const uint32_t t = r.read<uint32_t>(key.c_str());
    p.check_type(t, "metadata " + key);
    kv_[i].value = p.read_value(static_cast<GgufType>(t), "metadata " + key, 0);
  }
  if (const GgufValue* a = find("general.alignment")) {
    const uint64_t al = a->to_uint(source_ + ": metadata general.alignment");
    if (al == 0 || (al & (al - 1)) != 0 || al > (1u << 20)) {
      r.fail("general.alignment " + std::to_string(al) + " is not a power of two up to 1 MiB");
    }
    alignment_ = static_cast<size_t>(al);
  }
  if (n_tensors > r.remaining() / 24) {
    r.fail("tensor count " + std::to_string(n_tensors) + " cannot fit in the file");
  }
  tensors_.resize(static_cast<size_t>(n_tensors));
  for (size_t i = 0; i < tensors_.size(); ++i) {
    GgufTensorInfo& t = tensors_[i];
    t.name = std::string(p.read_string("tensor #" + std::to_string(i) + " name"));
    const std::string what = "tensor '" + t.name + "'";
    const uint32_t n_dims = r.read<uint32_t>(what.c_str());
    if (n_dims > 8) r.fail(what + ": " + std::to_string(n_dims) + " dimensions (at most 8)");
    t.n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = r.read<uint64_t>(what.c_str());
      t.dims.push_back(ne);
      t.n_elements = checked_mul(t.n_elements, ne, source_ + ": " + what + " element count");
    }
    t.type = r.read<uint32_t>(what.c_str());
    t.offset = r.read<uint64_t>(what.c_str());
    if (t.offset % alignment_ != 0) {
      r.fail(what + ": data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
             std::to_string(alignment_));
    }
    const GgmlTypeInfo* info = ggml_type_info(t.type);
    t.known_type = info != nullptr;
    if (info != nullptr) {
      const uint64_t ne0 = t.dims.empty() ? 1 : t.dims[0];
      if (ne0 % info->block_size != 0) {
        r.fail(what + ": first dimension " + std::to_string(ne0) + " is not a multiple of the " +
               info->name + " block size " + std::to_string(info->block_size));
      }
      t.n_bytes = checked_mul(t.n_elements / info->block_size, info->type_size,
                              source_ + ": " + what + " byte size");
    }
  }
  data_offset_ = r.offset();
  if (data_offset_ % alignment_ != 0) data_offset_ += alignment_ - data_offset_ % alignment_;
  if (data_offset_ > size_) {
    if (!tensors_.empty()) {
      r.fail("data section would start at " + std::to_string(data_offset_) + ", past the end (" +
             std::to_string(size_) + " bytes)");
    }
    data_offset_ = size_;  // no tensors: the padding may be absent
  }
  const size_t data_size = size_ - data_offset_;
  // A file cut short (an interrupted download or copy) is the usual reason a tensor lies beyond
  // the end: say so with the sizes, before naming a tensor.
  size_t data_end = 0;
  for (const GgufTensorInfo& t : tensors_) {
    const size_t end = t.offset + t.n_bytes;
    if (end >= t.offset) data_end = std::max(data_end, end);
  }
  if (data_end > data_size && data_offset_ <= SIZE_MAX - data_end) {
    // Name the first tensor (in file order) whose data is cut short.
    const GgufTensorInfo* first = nullptr;
    for (const GgufTensorInfo& t : tensors_) {
      const size_t end = t.offset + t.n_bytes;
      if (end >= t.offset && end > data_size && (first == nullptr || t.offset < first->offset)) first = &t;
    }
    const GgmlTypeInfo* info = first ? ggml_type_info(first->type) : nullptr;
    r.fail("the file is incomplete or corrupt (an interrupted download or copy?): its tensors "
           "need " + std::to_string(data_offset_ + data_end) + " bytes but the file has " +
           std::to_string(size_) +
           (first ? "; the first tensor cut short is '" + first->name + "' (" +
                        (info ? info->name : "?") + ", bytes " +
                        std::to_string(data_offset_ + first->offset) + ".." +
                        std::to_string(data_offset_ + first->offset + first->n_bytes) + ")"
                  : std::string()));
  }
  for (const GgufTensorInfo& t : tensors_) {
    if (t.offset > data_size || t.n_bytes > data_size - t.offset) {
      r.fail("tensor '" + t.name + "': data at offset " + std::to_string(t.offset) + " + " +
             std::to_string(t.n_bytes) + " bytes lies beyond the data section (" +
             std::to_string(data_size) + " bytes from offset " + std::to_string(data_offset_) +
             ")");
    }
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  for (const GgufKeyValue& kv : kv_) {
    if (kv.key == key) return &kv.value;
  }
  return nullptr;
}

const GgufValue& GgufFile::get(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) {
    throw Error(ErrorCode::kFormat, source_ + ": missing metadata key " + std::string(key));
  }
  return *v;
}

std::string GgufFile::get_string(std::string_view key, std::string_view fallback) const {
  const GgufValue* v = find(key);
  return std::string(v ? v->to_string(source_ + ": metadata " + std::string(key)) : fallback);
}

uint64_t GgufFile::get_uint(std::string_view key, uint64_t fallback) const {
  const GgufValue* v = find(key);
  return v ? v->to_uint(source_ + ": metadata " + std::string(key)) : fallback;
}

bool GgufFile::get_bool(std::string_view key, bool fallback) const {
  const GgufValue* v = find(key);
  return v ? v->to_bool(source_ + ": metadata " + std::string(key)) : fallback;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  for (const GgufTensorInfo& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

const uint8_t* GgufFile::tensor_data(const GgufTensorInfo& t) const {
  return data_ + data_offset_ + t.offset;
}

}  // namespace piquant
