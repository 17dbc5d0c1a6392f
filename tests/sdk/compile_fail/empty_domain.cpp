#include "common.hpp"
constexpr optreg::sdk::State kState[] = {
    sdk::state_tensor("exp_avg_sq", sdk::closed(1.0, 0.0), "a second moment whose domain is backwards"),
};
OPTREG_REGISTER_OPTIMIZER(Plain, "plain", "1.0.0", "a state entry with an empty domain", kGood, kState)
