// Compiles: proves the compile-fail cases fail for their own reason.
#include "common.hpp"
OPTREG_REGISTER_OPTIMIZER(Plain, "plain", "1.0.0", "a valid optimizer", kGood, nullptr)
