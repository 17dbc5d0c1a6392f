# Installation: headers under include/optreg/, the libraries, the optreg tool, the in-tree
# plugins in the plugin folder the registry searches by default (optreg/plugins beside
# liboptreg.so), and a relocatable CMake package exporting optreg::base, optreg::core,
# optreg::sdk, optreg::conformance and the optreg_add_plugin() helper.
include(CMakePackageConfigHelpers)

set(OPTREG_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/optreg)
set(OPTREG_INSTALL_PLUGINDIR ${CMAKE_INSTALL_LIBDIR}/${OPTREG_PLUGIN_SUBDIR})

set_target_properties(optreg_base PROPERTIES EXPORT_NAME base INSTALL_RPATH "$ORIGIN")
set_target_properties(optreg_core PROPERTIES EXPORT_NAME core INSTALL_RPATH "$ORIGIN")
set_target_properties(optreg_sdk PROPERTIES EXPORT_NAME sdk)
set_target_properties(optreg_conformance PROPERTIES EXPORT_NAME conformance INSTALL_RPATH "$ORIGIN")
set_target_properties(${OPTREG_IN_TREE_PLUGINS} PROPERTIES INSTALL_RPATH "$ORIGIN/../..")

install(TARGETS optreg_base optreg_core optreg_sdk optreg_conformance EXPORT optregTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The core's detail/ headers are shared by optreg's own libraries and tools only.
install(DIRECTORY base/include/optreg core/include/optreg sdk/include/optreg sdk/conformance/include/optreg
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.hpp" PATTERN detail EXCLUDE)
install(FILES ${PROJECT_BINARY_DIR}/generated/include/optreg/version.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/optreg)
if(TARGET optreg_tool)
  set_target_properties(optreg_tool PROPERTIES INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")
  install(TARGETS optreg_tool RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(TARGETS ${OPTREG_IN_TREE_PLUGINS} LIBRARY DESTINATION ${OPTREG_INSTALL_PLUGINDIR})
# The conformance kit's resume program, where the kit looks for it: optreg/ beside the library.
set_target_properties(optreg_conformance_resume PROPERTIES INSTALL_RPATH "$ORIGIN/..")
install(TARGETS optreg_conformance_resume RUNTIME DESTINATION ${CMAKE_INSTALL_LIBDIR}/optreg)

install(EXPORT optregTargets NAMESPACE optreg:: DESTINATION ${OPTREG_INSTALL_CMAKEDIR})
# optreg::torch, in an export of its own that the package loads only where libtorch is found.
if(TARGET optreg_torch)
  set_target_properties(optreg_torch PROPERTIES EXPORT_NAME torch)
  install(TARGETS optreg_torch EXPORT optregTorchTargets)
  install(FILES torch/include/optreg/torch.hpp DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/optreg)
  install(EXPORT optregTorchTargets NAMESPACE optreg:: DESTINATION ${OPTREG_INSTALL_CMAKEDIR})
endif()
# optreg::mpi, likewise, loaded only where MPI is found.
if(TARGET optreg_mpi)
  set_target_properties(optreg_mpi PROPERTIES EXPORT_NAME mpi INSTALL_RPATH "$ORIGIN")
  install(TARGETS optreg_mpi EXPORT optregMpiTargets LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(FILES mpi/include/optreg/mpi.hpp DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/optreg)
  install(EXPORT optregMpiTargets NAMESPACE optreg:: DESTINATION ${OPTREG_INSTALL_CMAKEDIR})
endif()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/optregConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/generated/optregConfig.cmake
                              INSTALL_DESTINATION ${OPTREG_INSTALL_CMAKEDIR}
                              PATH_VARS OPTREG_INSTALL_PLUGINDIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/generated/optregConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/generated/optregConfig.cmake
              ${PROJECT_BINARY_DIR}/generated/optregConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/sdk/cmake/OptregPlugin.cmake
        DESTINATION ${OPTREG_INSTALL_CMAKEDIR})
