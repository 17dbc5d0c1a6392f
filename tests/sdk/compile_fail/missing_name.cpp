#include "common.hpp"
OPTREG_REGISTER_OPTIMIZER(Plain, "", "1.0.0", "no name", kGood, nullptr)
