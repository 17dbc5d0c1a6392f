# optreg_add_plugin(<name> SOURCES <file>... [OUTPUT_DIRECTORY <dir>])
#
# Builds an optreg optimizer plugin: a MODULE library lib<name>.so linked against optreg::sdk,
# with hidden visibility (only the descriptor alias is exported), every symbol resolved at
# link time (-z defs), and no GNU unique symbols (so that the library really unloads).
include_guard(GLOBAL)

function(optreg_add_plugin name)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY" "SOURCES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "optreg_add_plugin(${name}): give the plugin's sources with SOURCES")
  endif()
  add_library(${name} MODULE ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE optreg::sdk)
  set_target_properties(${name} PROPERTIES
    PREFIX "lib"
    SUFFIX ".so"
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_compile_features(${name} PRIVATE cxx_std_17)
  target_link_options(${name} PRIVATE -Wl,-z,defs)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${name} PRIVATE -fno-gnu-unique)
  endif()
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIRECTORY}")
  endif()
endfunction()
