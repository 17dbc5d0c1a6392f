// The registry keeps every plugin kind in one catalogue: an optimizer and a scheduler are
// refused, registered, found and named in messages alike.

#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/error.hpp>
#include <optreg/parameter.hpp>
#include <optreg/registry.hpp>
#include <optreg/tensor.hpp>

#include "registry_fixture.hpp"
#include "test_support.hpp"

namespace {

using optreg_test::canonical;
using optreg_test::message_of;

/// One plugin kind, with a name a real plugin registers and a fixture that registers it again.
struct KindCase {
  const char* kind;  // "optimizer" or "scheduler"
  const char* name;
  const char* first;
  const char* duplicate;
};

std::ostream& operator<<(std::ostream& out, const KindCase& k) { return out << k.kind; }

/// The source of the object `name` of `kind`, or nothing when none is registered.
std::optional<std::string> source_of(const optreg::Registry& r, const std::string& kind, const std::string& name) {
  if (kind == "optimizer") {
    const auto d = r.find(name);
    return d ? std::optional<std::string>(d->source) : std::nullopt;
  }
  const auto d = r.find_scheduler(name);
  return d ? std::optional<std::string>(d->source) : std::nullopt;
}

class CatalogueKinds : public ::testing::TestWithParam<KindCase> {};

}  // namespace

TEST_P(CatalogueKinds, ADuplicateNameIsRefusedNamingBothFilesAndTheFirstFileKeepsIt) {
  const KindCase& k = GetParam();
  optreg::Registry r;
  r.load_file(k.first);
  const optreg::LoadResult second = r.try_load_file(k.duplicate);
  EXPECT_FALSE(second.ok);
  EXPECT_EQ(second.refusal.reason, std::string(k.kind) + " '" + k.name + "' is already registered by " +
                                       canonical(k.first) + "; two plugins cannot share a name");
  ASSERT_EQ(r.refused().size(), 1U);
  EXPECT_EQ(r.refused()[0].path, canonical(k.duplicate));
  EXPECT_EQ(source_of(r, k.kind, k.name), canonical(k.first));
}

TEST_P(CatalogueKinds, EveryNameAFileRegistersIsFoundWithThatFileAsItsSource) {
  const KindCase& k = GetParam();
  optreg::Registry r;
  const std::vector<std::string> names = r.load_file(k.first);
  ASSERT_FALSE(names.empty());
  for (const auto& name : names) EXPECT_EQ(source_of(r, k.kind, name), canonical(k.first)) << name;
  EXPECT_EQ(source_of(r, k.kind, "not_registered"), std::nullopt);
}

INSTANTIATE_TEST_SUITE_P(
    BothKinds, CatalogueKinds,
    ::testing::Values(KindCase{"optimizer", "sgd", OPTREG_TEST_SGD_PLUGIN, OPTREG_FIXTURE_DUPLICATE_SGD},
                      KindCase{"scheduler", "cosine", OPTREG_TEST_SCHEDULERS_PLUGIN, OPTREG_FIXTURE_DUPLICATE_COSINE}),
    [](const ::testing::TestParamInfo<KindCase>& info) { return std::string(info.param.kind); });

TEST(Catalogue, EachObjectOfEitherKindNamesTheFileThatProvidesIt) {
  optreg::Registry r;
  r.load_directory(OPTREG_TEST_PLUGIN_DIR);
  std::size_t found = 0;
  for (const auto& file : optreg::Registry::plugin_files(OPTREG_TEST_PLUGIN_DIR)) {
    for (const auto& name : r.try_load_file(file).names) {
      const auto optimizer = r.find(name);
      const auto scheduler = r.find_scheduler(name);
      ASSERT_TRUE(optimizer || scheduler) << name;
      EXPECT_EQ(optimizer ? optimizer->source : scheduler->source, canonical(file)) << name;
      ++found;
    }
  }
  EXPECT_EQ(found, r.list().size() + r.list_schedulers().size() - 2)
      << "every name but the built-in 'sequential' and 'chained'";
}

TEST(Catalogue, UnknownNamesOfBothKindsGetTheSameSuggestionMessage) {
  optreg::Registry r;
  r.load_file(OPTREG_TEST_SGD_PLUGIN);
  EXPECT_EQ(message_of<optreg::PluginError>([&] { r.create("sgdd", {optreg::Parameter("w", optreg::Tensor({1}))}); }),
            "no optimizer named 'sgdd' is registered (did you mean 'sgd'?); registered: sgd");
  auto opt = r.create("sgd", {optreg::Parameter("w", optreg::Tensor({1}))});
  EXPECT_EQ(message_of<optreg::PluginError>([&] { r.create_scheduler("sequentail", *opt); }),
            "no scheduler named 'sequentail' is registered (did you mean 'sequential'?); registered: sequential, chained")
      << "the core's own schedulers are names like any other in the suggestion";
}

TEST(Catalogue, ABuiltInNameIsListedAndFoundButNeverTakenByAPlugin) {
  optreg::Registry r;
  EXPECT_TRUE(r.list().empty());
  ASSERT_EQ(r.list_schedulers().size(), 2U);
  EXPECT_EQ(r.list_schedulers()[0].name, "chained");
  EXPECT_EQ(r.list_schedulers()[1].name, "sequential");
  EXPECT_FALSE(r.try_load_file(OPTREG_FIXTURE_SCHEDULER_RESERVED).ok);
  EXPECT_EQ(r.find_scheduler("sequential")->source, "built in");
  EXPECT_EQ(r.find_scheduler("chained")->source, "built in");
  EXPECT_EQ(r.list_schedulers().size(), 2U);
}
