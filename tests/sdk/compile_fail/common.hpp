// What every compile-fail case shares: a minimal valid optimizer and schema.
#include <optreg/plugin.hpp>

namespace sdk = optreg::sdk;

class Plain : public optreg::Optimizer {
 protected:
  void update_group(const optreg::Options&, const std::vector<Slot>&) override {}
};

constexpr optreg::abi::HyperparamSpec kGood[] = {
    sdk::float_option("lr", 0.1, sdk::at_least(0.0), "learning rate"),
};
