#pragma once
// Helpers shared by the GoogleTest executables (tests/support is on their include path).

#include <exception>
#include <filesystem>
#include <functional>
#include <string>

#include <gtest/gtest.h>

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

}  // namespace optreg_test
