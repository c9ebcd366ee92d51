# piquant_warnings(target): the warning set every piquant target builds clean with (g++ 12, clang 14).
# Not -Wnull-dereference: g++ 12 at -O2 reports it inside libstdc++'s streambuf and
# nlohmann/json once they are inlined into our code (12 false alarms in a Release build of the
# whole tree, all in system headers), which a user's first build should not scroll past.
function(piquant_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Wcast-align -Wunused -Woverloaded-virtual -Wdouble-promotion -Wformat=2)
  if(PIQUANT_NATIVE)
    target_compile_options(${target} PRIVATE -march=native)
  endif()
endfunction()
