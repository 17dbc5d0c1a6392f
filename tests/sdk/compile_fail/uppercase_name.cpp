#include "common.hpp"
OPTREG_REGISTER_OPTIMIZER(Plain, "MyAdam", "1.0.0", "not a lower-case identifier", kGood, nullptr)
