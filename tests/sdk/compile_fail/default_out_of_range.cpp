#include "common.hpp"
constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("momentum", 1.5, sdk::closed(0.0, 1.0), "momentum factor"),
};
OPTREG_REGISTER_OPTIMIZER(Plain, "plain", "1.0.0", "a default outside its range", kSchema, nullptr)
