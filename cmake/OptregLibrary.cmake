# optreg_export_public_api(<target>)
#
# A shared library of optreg exports its public API only: compiled with hidden default
# visibility (OPTREG_API, <optreg/export.hpp>, marks what is public) and linked with a version
# script that keeps only optreg's names in the dynamic symbol table.
include_guard(GLOBAL)

function(optreg_export_public_api target)
  set_target_properties(${target} PROPERTIES
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS ${PROJECT_SOURCE_DIR}/cmake/optreg-library.map)
  target_link_options(${target} PRIVATE
    "LINKER:--version-script=${PROJECT_SOURCE_DIR}/cmake/optreg-library.map")
endfunction()
