#pragma once
/// \file piquant/error.hpp
/// The one exception type piquant throws. Messages say what was wrong and where.
#include <stdexcept>
#include <string>

namespace piquant {

/// What kind of failure an Error reports.
enum class ErrorCode {
  kIo,               ///< a file could not be opened, read or mapped
  kFormat,           ///< a file is truncated, corrupt or inconsistent
  kUnsupported,      ///< well-formed input piquant does not handle (architecture, tensor type)
  kInvalidArgument,  ///< a caller-supplied value is out of its domain
  kOutOfRange,       ///< a token id or position beyond the model's limits
  kContextFull,      ///< the session's context window has no room for more tokens
  kInternal,         ///< a bug in piquant
};

/// Returns a short name for an error code ("format", "io", ...).
const char* to_string(ErrorCode code) noexcept;

/// Every failure the library reports: a code and a message naming the problem and its place.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace piquant
