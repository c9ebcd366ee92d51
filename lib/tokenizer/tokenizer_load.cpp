// Tokenizer::load: recognises the file format by content and dispatches to its parser.
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "format/gguf.hpp"
#include "format/mapped_file.hpp"
#include "format/piq.hpp"
#include "load/piq_model.hpp"
#include "tokenizer/tokenizer_json.hpp"
#include "tokenizer/loaders.hpp"
#include "tokenizer/tokenizer_gguf.hpp"

namespace piquant {
namespace {

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
std::string dir_of(const std::string& p) {
  const size_t s = p.rfind('/');
  return s == std::string::npos ? "." : p.substr(0, s);
}
std::string slurp(const std::string& path) {
  MappedFile f(path);
  return std::string(reinterpret_cast<const char*>(f.data()), f.size());
}

}  // namespace

std::shared_ptr<const Tokenizer::Impl> load_tokenizer_file(const std::string& path_in) {
  std::string path = path_in;
  if (is_dir(path)) {  // a model directory: take the tokenizer file it holds
    for (const char* name : {"tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer.bin"}) {
      if (exists(path + "/" + name)) {
        path = path + "/" + name;
        break;
      }
    }
    if (path == path_in) {
      throw Error(ErrorCode::kIo, path + ": directory holds no tokenizer.json, tokenizer.model, "
                                         "vocab.json or tokenizer.bin");
    }
  }
  MappedFile file(path);
  const std::string_view bytes(reinterpret_cast<const char*>(file.data()), file.size());
  if (bytes.empty()) throw Error(ErrorCode::kFormat, path + ": empty file");
  if (GgufFile::has_magic(file.data(), file.size())) {
    GgufFile g(path);
    return tokenizer_from_gguf(g).impl_ptr();
  }
  if (piq_has_magic(file.data(), file.size())) {  // a converted model carries its tokenizer
    const PiqFile piq(path);
    if (piq.meta().tokenizer.is_null()) {
      throw Error(ErrorCode::kFormat, path + ": this .piq file carries no tokenizer (convert "
                                             "it with -z TOKENIZER)");
    }
    try {
      return tokenizer_from_json(piq.meta().tokenizer).impl_ptr();
    } catch (const Error& e) {
      throw Error(e.code(), path + ": tokenizer: " + e.what());
    }
  }
  size_t first = 0;
  while (first < bytes.size() && (bytes[first] == ' ' || bytes[first] == '\n' ||
                                  bytes[first] == '\r' || bytes[first] == '\t')) {
    ++first;
  }
  if (bytes.compare(0, 3, "\xEF\xBB\xBF") == 0) first = 3;  // UTF-8 BOM
  if (first < bytes.size() && bytes[first] == '{') {
    // tokenizer.json has "model"; vocab.json is a flat {piece: id} with merges.txt beside it.
    if (bytes.find("\"model\"") != std::string_view::npos &&
        bytes.find("\"merges\"") != std::string_view::npos) {
      const std::string cfg = dir_of(path) + "/tokenizer_config.json";
      return parse_tokenizer_json(bytes, exists(cfg) ? slurp(cfg) : std::string(), path);
    }
    const std::string merges = dir_of(path) + "/merges.txt";
    if (!exists(merges)) {
      throw Error(ErrorCode::kFormat, path + ": looks like vocab.json but there is no merges.txt "
                                             "beside it (and no \"model\" for a tokenizer.json)");
    }
    return parse_vocab_merges(bytes, slurp(merges), path);
  }
  if (looks_like_tiktoken(bytes)) return parse_tiktoken(bytes, path);
  // llama2.c tokenizer.bin starts with an int32 max_token_length < 65536: bytes 2, 3 are zero.
  // A SentencePiece ModelProto starts with field 1 (0x0A), a length, then 0x0A again.
  if (bytes.size() >= 4 && bytes[2] == 0 && bytes[3] == 0) return load_llama2c_tokenizer(path);
  if (static_cast<unsigned char>(bytes[0]) == 0x0A) return parse_sentencepiece_model(bytes, path);
  throw Error(ErrorCode::kFormat,
              path + ": unrecognised tokenizer format (expected a SentencePiece or tiktoken "
                     "tokenizer.model, tokenizer.json, vocab.json, llama2.c tokenizer.bin or GGUF)");
}

}  // namespace piquant
