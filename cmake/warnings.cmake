# piquant_warnings(target): the warning set every piquant target builds clean with (g++ 12, clang 14).
function(piquant_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Wcast-align -Wunused -Woverloaded-virtual -Wnull-dereference -Wdouble-promotion -Wformat=2)
  if(PIQUANT_NATIVE)
    target_compile_options(${target} PRIVATE -march=native)
  endif()
endfunction()
