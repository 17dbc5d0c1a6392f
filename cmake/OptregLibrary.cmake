# optreg_add_library(<target> ALIAS <optreg::name> OUTPUT_NAME <file name> SOURCES <file>...)
#
# One of optreg's shared libraries: versioned (SOVERSION = major version), its public headers in
# the folder's include/ (installed as <optreg/...>), every symbol resolved at link time (-z defs),
# and exporting its public API only: compiled with hidden default visibility (OPTREG_API,
# <optreg/export.hpp>, marks what is public) and linked with a version script that keeps only
# optreg's names in the dynamic symbol table (tests/sdk/exported_symbols.sh checks it).
include_guard(GLOBAL)

function(optreg_add_library target)
  cmake_parse_arguments(ARG "" "ALIAS;OUTPUT_NAME" "SOURCES" ${ARGN})
  set(version_script ${PROJECT_SOURCE_DIR}/cmake/optreg-library.map)
  add_library(${target} SHARED ${ARG_SOURCES})
  add_library(${ARG_ALIAS} ALIAS ${target})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(${target} PRIVATE optreg_warnings Threads::Threads)
  set_target_properties(${target} PROPERTIES
    OUTPUT_NAME ${ARG_OUTPUT_NAME} VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS ${version_script})
  target_link_options(${target} PRIVATE -Wl,-z,defs "LINKER:--version-script=${version_script}")
endfunction()
