#pragma once
/// \file piquant/version.hpp
#define PIQUANT_VERSION_MAJOR 0
#define PIQUANT_VERSION_MINOR 1
#define PIQUANT_VERSION_PATCH 0

namespace piquant {
/// "0.1.0"
const char* version() noexcept;
}  // namespace piquant
