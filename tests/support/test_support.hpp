#pragma once
// Helpers shared by the GoogleTest executables (tests/support is on their include path).

#include <exception>
#include <filesystem>
#include <functional>
#include <string>

#include <gtest/gtest.h>

#include <optreg/registry.hpp>

namespace optreg_test {

/// The canonical absolute form of a path, as the registry names files in messages.
inline std::string canonical(const std::string& path) { return std::filesystem::canonical(path).string(); }

/// The message of the `E` that `f` throws; a test failure when it throws nothing or another type.
template <typename E>
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw another exception type: " << e.what();
    return {};
  }
  ADD_FAILURE() << "threw nothing";
  return {};
}

/// One registry, for the whole test program, holding every plugin of the in-tree plugin folder.
inline const optreg::Registry& in_tree_registry() {
  static optreg::Registry* r = [] {
    auto* reg = new optreg::Registry();
    reg->load_directory(OPTREG_TEST_PLUGIN_DIR);
    return reg;
  }();
  return *r;
}

}  // namespace optreg_test
