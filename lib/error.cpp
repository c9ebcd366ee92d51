#include "piquant/error.hpp"
#include "piquant/version.hpp"

namespace piquant {

const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kIo: return "io";
    case ErrorCode::kFormat: return "format";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kOutOfRange: return "out of range";
    case ErrorCode::kContextFull: return "context full";
    case ErrorCode::kInternal: return "internal";
  }
  return "unknown";
}

const char* version() noexcept { return "0.1.0"; }

}  // namespace piquant
