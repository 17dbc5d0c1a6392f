#pragma once
// The in-tree plugins for tests that create optimizers and schedulers. Each registry is loaded
// once per test program and never unloaded, so optimizers made from it may outlive any test.
// The plugin paths come from the definitions optreg_add_gtest() gives every test program except
// the unit tests, which load no plugin.
#include <gtest/gtest.h>

#include <optreg/abi.hpp>
#include <optreg/registry.hpp>

#ifndef OPTREG_TEST_PLUGIN_DIR
#error "this test program loads no plugin (a unit test tests base types alone): put the test in tests/integration"
#endif

namespace optreg_test {

/// The in-tree sgd, adam and schedulers plugins, loaded once per test program. Three files
/// rather than the whole folder: CTest starts a process for each test, and each loads them again.
inline const optreg::Registry& reference_registry() {
  static const optreg::Registry* r = [] {
    auto* reg = new optreg::Registry();
    reg->load_file(OPTREG_TEST_SGD_PLUGIN);
    reg->load_file(OPTREG_TEST_ADAM_PLUGIN);
    reg->load_file(OPTREG_TEST_SCHEDULERS_PLUGIN);
    return reg;
  }();
  return *r;
}

/// Every plugin of the in-tree plugin folder, loaded once per test program (what it refused is
/// in refused()).
inline const optreg::Registry& in_tree_registry() {
  static const optreg::Registry* r = [] {
    auto* reg = new optreg::Registry();
    reg->load_directory(OPTREG_TEST_PLUGIN_DIR);
    return reg;
  }();
  return *r;
}

/// `registry.create(name, params, options)`, or for a wrapper (`lookahead`) the wrapper around
/// sgd over one group of `params` with `options` (its own and sgd's): a test that steps every
/// in-tree optimizer by name steps the wrappers too.
inline optreg::OptimizerPtr create_steppable(const optreg::Registry& registry, const std::string& name,
                                             std::vector<optreg::Parameter> params, const optreg::Options& options = {}) {
  const auto d = registry.find(name);
  if (!d || (d->flags & optreg::abi::kOptimizerWrapper) == 0) return registry.create(name, std::move(params), options);
  std::vector<optreg::ParamGroupSpec> groups(1);
  groups[0].params = std::move(params);
  groups[0].options = options;
  return registry.create_wrapped(name, {}, "sgd", std::move(groups));
}

/// A fixture whose tests create optimizers and schedulers from reference_registry(). The suite
/// loads it before its first test, so that no test pays for the loading inside what it measures.
class RegistryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { reference_registry(); }
  static const optreg::Registry& registry() { return reference_registry(); }
};

}  // namespace optreg_test
