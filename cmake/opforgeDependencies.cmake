# The libraries opforge builds on, found once: by opforge's own build
# (CMakeLists.txt) and by opforgeConfig.cmake in a project that uses the
# installed package (opforge's libraries are static, so a consumer links
# their dependencies too). Every one is a Debian 12 package
# (scripts/install-deps.sh).
include(CMakeFindDependencyMacro)

# Required here; in opforgeConfig.cmake find_dependency, which reports a
# missing dependency as opforge not found.
macro(opforge_find_dependency)
  if(CMAKE_FIND_PACKAGE_NAME STREQUAL "opforge")
    find_dependency(${ARGN})
  else()
    find_package(${ARGN} REQUIRED)
  endif()
endmacro()

opforge_find_dependency(OpenCV 4 COMPONENTS core imgproc imgcodecs)
opforge_find_dependency(TBB)
opforge_find_dependency(JPEG)
opforge_find_dependency(PNG)
opforge_find_dependency(ZLIB)
opforge_find_dependency(nlohmann_json 3)
opforge_find_dependency(Eigen3 3.3 NO_MODULE)
opforge_find_dependency(OpenMP COMPONENTS CXX)
opforge_find_dependency(yaml-cpp)
# The system BLAS/LAPACK (Debian's alternatives: OpenBLAS once install-deps
# has run) for the grid Cholesky's dense fronts.
opforge_find_dependency(LAPACK)
opforge_find_dependency(PkgConfig)
pkg_check_modules(FFTW3 REQUIRED IMPORTED_TARGET fftw3)
pkg_check_modules(FFTW3F REQUIRED IMPORTED_TARGET fftw3f)
# The PNG writer's deflate (libdeflate: 2.7x zlib's speed at the same size).
pkg_check_modules(LIBDEFLATE REQUIRED IMPORTED_TARGET libdeflate)

# Debian's SuiteSparse 5.12 ships no CMake package: locate CHOLMOD directly.
if(NOT TARGET SuiteSparse::CHOLMOD)
  find_path(CHOLMOD_INCLUDE_DIR cholmod.h PATH_SUFFIXES suitesparse REQUIRED)
  find_library(CHOLMOD_LIBRARY cholmod REQUIRED)
  add_library(SuiteSparse::CHOLMOD UNKNOWN IMPORTED)
  set_target_properties(SuiteSparse::CHOLMOD PROPERTIES
    IMPORTED_LOCATION "${CHOLMOD_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${CHOLMOD_INCLUDE_DIR}")
endif()
