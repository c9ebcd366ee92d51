# The layers of lib/ (docs/architecture.md), checked on the source tree: cmake -DSOURCE=<repo>
# -P layering_check.cmake. Fails naming the file and line of every breach:
#  - lib/format/ reads and writes containers only: it includes lib/format's own headers, the
#    public include/piquant/ headers, kernels/common/ and lib/util/, nothing of lib/load,
#    lib/model, lib/tokenizer, lib/lora or any other layer above it;
#  - no `friend` in include/ or lib/ (no class reaches into another's internals);
#  - lib/ and tools/ depend on nothing in examples/: no CMakeLists.txt of theirs names an
#    examples/ path (a source compiled, an include directory), no source includes one (code
#    the programs share lives in lib/, e.g. piquant_dist: lib/dist/distributed.*).
if(NOT SOURCE)
  message(FATAL_ERROR "layering_check.cmake: pass -DSOURCE=<source tree>")
endif()
set(_breaches "")

file(GLOB _format_files ${SOURCE}/lib/format/*.cpp ${SOURCE}/lib/format/*.hpp)
list(LENGTH _format_files _n_format)
if(_n_format EQUAL 0)
  message(FATAL_ERROR "layering_check.cmake: no files in ${SOURCE}/lib/format")
endif()
foreach(_f IN LISTS _format_files)
  file(STRINGS ${_f} _lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
  foreach(_l IN LISTS _lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]*)\".*" "\\1" _inc "${_l}")
    if(NOT _inc MATCHES "^(format|piquant|common|util)/")
      file(RELATIVE_PATH _rel ${SOURCE} ${_f})
      string(APPEND _breaches "  ${_rel}: #include \"${_inc}\" (lib/format/ may include only "
                              "format/, piquant/, common/ and util/ headers)\n")
    endif()
  endforeach()
endforeach()

file(GLOB_RECURSE _all ${SOURCE}/include/*.hpp ${SOURCE}/include/*.h ${SOURCE}/lib/*.hpp
     ${SOURCE}/lib/*.cpp)
foreach(_f IN LISTS _all)
  file(STRINGS ${_f} _lines REGEX "(^|[^A-Za-z0-9_])friend([^A-Za-z0-9_]|$)")
  foreach(_l IN LISTS _lines)
    file(RELATIVE_PATH _rel ${SOURCE} ${_f})
    string(STRIP "${_l}" _l)
    string(APPEND _breaches "  ${_rel}: ${_l} (no friend in include/ or lib/)\n")
  endforeach()
endforeach()

file(GLOB_RECURSE _upper ${SOURCE}/lib/*.hpp ${SOURCE}/lib/*.cpp ${SOURCE}/lib/*CMakeLists.txt
     ${SOURCE}/tools/*.hpp ${SOURCE}/tools/*.cpp ${SOURCE}/tools/*CMakeLists.txt)
list(LENGTH _upper _n_upper)
foreach(_f IN LISTS _upper)
  if(_f MATCHES "CMakeLists\\.txt$")
    file(STRINGS ${_f} _lines REGEX "examples/")
    set(_what "names examples/")
  else()
    file(STRINGS ${_f} _lines REGEX "^[ \t]*#[ \t]*include[ \t]*[\"<][^\">]*examples/")
    set(_what "includes from examples/")
  endif()
  foreach(_l IN LISTS _lines)
    file(RELATIVE_PATH _rel ${SOURCE} ${_f})
    string(STRIP "${_l}" _l)
    string(APPEND _breaches "  ${_rel}: ${_l} (${_what}: lib/ and tools/ may not depend on examples/)\n")
  endforeach()
endforeach()

if(NOT _breaches STREQUAL "")
  message(FATAL_ERROR "layering breaches:\n${_breaches}")
endif()
list(LENGTH _all _n_all)
message(STATUS "layering ok: ${_n_format} files in lib/format include no upper layer; "
               "no friend in ${_n_all} files of include/ and lib/; ${_n_upper} files of lib/ and "
               "tools/ depend on nothing in examples/")
