# ctest package_build_tree (issue 17, item 8): a program links against libpiquant alone (the
# kernels are inside it), by hand as a Makefile would, and find_package(piquant) works from the
# build tree (-Dpiquant_DIR=<build dir>) as it does from an install.
#   cmake -DSOURCE=<repo> -DBUILD=<build dir> -DCXX=<c++> -DLIB=<libpiquant.a> -DGEN=<generator>
#         -P package_check.cmake
set(out ${BUILD}/test-package-check)
file(REMOVE_RECURSE ${out})
file(MAKE_DIRECTORY ${out})
execute_process(
  COMMAND ${CXX} -std=c++17 -O1 -I${SOURCE}/include ${SOURCE}/examples/minimal/main.cpp ${LIB}
          -pthread -o ${out}/minimal-by-hand
  RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE log)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "linking examples/minimal by hand against ${LIB} alone failed:\n${log}")
endif()
message(STATUS "linked by hand against ${LIB} alone")
execute_process(
  COMMAND ${CMAKE_COMMAND} -S ${SOURCE}/examples/minimal -B ${out}/consumer -G ${GEN}
          -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=${CXX} -Dpiquant_DIR=${BUILD}
  RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE log)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "find_package(piquant) with -Dpiquant_DIR=${BUILD} failed:\n${log}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${out}/consumer
                RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE log)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building examples/minimal against the build tree failed:\n${log}")
endif()
message(STATUS "examples/minimal built against the build tree (-Dpiquant_DIR=${BUILD})")
file(REMOVE_RECURSE ${out})
