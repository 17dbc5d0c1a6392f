#include "common.hpp"
struct NotAnOptimizer {};
OPTREG_REGISTER_OPTIMIZER(NotAnOptimizer, "plain", "1.0.0", "a class that is no optimizer", kGood, nullptr)
