#include "common.hpp"
constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 0.1, sdk::at_least(0.0), ""),
};
OPTREG_REGISTER_OPTIMIZER(Plain, "plain", "1.0.0", "a hyperparameter without meaning", kSchema, nullptr)
