# optreg_add_plugin(<name> SOURCES <file>... [OUTPUT_DIRECTORY <dir>] [EXPORTS <symbol>...])
#
# Builds an optreg optimizer plugin: a MODULE library lib<name>.so linked against optreg::sdk,
# with hidden visibility and a version script that exports the descriptor alias and nothing
# else (not even the standard library's template instantiations), every symbol resolved at link
# time (-z defs), and no GNU unique symbols (so that the library really unloads). EXPORTS names
# extra extern "C" symbols to keep in the dynamic symbol table (e.g. a counter a test reads with
# dlsym()).
#
# It also compiles the plugin with the floating-point flags the in-tree plugins use, so that a
# third-party plugin keeps the same-bits guarantee: no contraction into fused multiply-adds
# (-ffp-contract=off: every instruction set the kernels are cloned for, OPTREG_KERNEL, gives the
# same bits), math functions without errno (-fno-math-errno: sqrt vectorises), no trapping
# floating-point exceptions (-fno-trapping-math: a rule's data-dependent choices become selects,
# so its loop vectorises; no result changes, only the exception flags go unobserved) and -O3
# outside Debug builds. With GCC it also lets loop unswitching copy larger loops (--param
# max-unswitch-insns=500): a rule's branches on its options (maximize, weight decay) are then
# taken out of the element loop even when the loop also widens and rounds bfloat16 state, which
# GCC's default limit of 50 instructions leaves scalar. A plugin that wants other flags can add
# them after the call.
include_guard(GLOBAL)

function(optreg_add_plugin name)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY" "SOURCES;EXPORTS" ${ARGN})
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
  set(version_script ${CMAKE_CURRENT_BINARY_DIR}/${name}.map)
  list(PREPEND ARG_EXPORTS optreg_plugin_descriptor)
  list(JOIN ARG_EXPORTS ";\n    " exported)
  file(CONFIGURE OUTPUT ${version_script}
       CONTENT "{\n  global:\n    ${exported};\n  local:\n    *;\n};\n")
  target_link_options(${name} PRIVATE -Wl,-z,defs "LINKER:--version-script=${version_script}")
  set_property(TARGET ${name} APPEND PROPERTY LINK_DEPENDS ${version_script})
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${name} PRIVATE -fno-gnu-unique $<$<NOT:$<CONFIG:Debug>>:--param=max-unswitch-insns=500>)
  endif()
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${name} PRIVATE -ffp-contract=off -fno-math-errno -fno-trapping-math
                           $<$<NOT:$<CONFIG:Debug>>:-O3>)
  endif()
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIRECTORY}")
  endif()
endfunction()
