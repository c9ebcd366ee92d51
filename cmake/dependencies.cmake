# Dependencies come from Debian 12 packages (scripts/install-deps.sh). Header-only ones are used
# through $<BUILD_INTERFACE:...> so the installed piquant package needs none of them.
find_package(Threads REQUIRED)

# xsimd: header-only use (Debian's xsimd config drags in an xtl link dependency; the config is
# also missing for cross builds), so an interface target over the headers.
if(NOT TARGET xsimd)
  find_path(PIQUANT_XSIMD_INCLUDE xsimd/xsimd.hpp PATHS /usr/include REQUIRED)
  add_library(xsimd INTERFACE IMPORTED)
  set_target_properties(xsimd PROPERTIES INTERFACE_INCLUDE_DIRECTORIES ${PIQUANT_XSIMD_INCLUDE})
endif()

find_package(nlohmann_json 3.10 QUIET)
if(NOT TARGET nlohmann_json::nlohmann_json)
  find_path(PIQUANT_JSON_INCLUDE nlohmann/json.hpp PATHS /usr/include REQUIRED)
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
  set_target_properties(nlohmann_json::nlohmann_json PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES ${PIQUANT_JSON_INCLUDE})
endif()

if(PIQUANT_SANITIZE)
  string(REPLACE ";" "," _san "${PIQUANT_SANITIZE}")
  add_compile_options(-fsanitize=${_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${_san})
endif()
