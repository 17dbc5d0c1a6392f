#include "common.hpp"
constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 0.1, sdk::at_least(0.0), "learning rate"),
    sdk::float_option("lr", 0.2, sdk::at_least(0.0), "learning rate again"),
};
OPTREG_REGISTER_OPTIMIZER(Plain, "plain", "1.0.0", "two hyperparameters named lr", kSchema, nullptr)
