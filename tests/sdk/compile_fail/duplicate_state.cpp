#include "common.hpp"
constexpr optreg::abi::StateSpec kState[] = {
    sdk::state_tensor("buffer", "a buffer"),
    sdk::state_int("buffer", "a counter with the same name"),
};
OPTREG_REGISTER_OPTIMIZER(Plain, "plain", "1.0.0", "two state entries named buffer", kGood, kState)
