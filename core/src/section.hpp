#pragma once
// What the checkpoint components (WeightAverage, GradientAccumulator) share: reading their
// section's scalars and refusing a setting.
#include <string>

#include <optreg/error.hpp>
#include <optreg/state_dict.hpp>
#include <optreg/value.hpp>

namespace optreg::detail {

/// The scalar `key` of `section`, of type `type`; StateDictError naming it when it is missing or of
/// another type.
inline const Value& section_scalar(const CheckpointSection& section, const char* key, ValueType type) {
  const auto it = section.scalars.find(key);
  if (it == section.scalars.end()) throw StateDictError(std::string("it holds no '") + key + "'");
  if (it->second.type() != type) {
    throw StateDictError(std::string("'") + key + "' is " + to_string(it->second.type()) + ", not " + to_string(type));
  }
  return it->second;
}

/// An OptionError of `who` ("weight average") about `option` = `value`: "option 'O' = V WHY".
[[noreturn]] inline void refuse_setting(const char* who, const char* option, const Value& value,
                                        const std::string& why) {
  throw OptionError(OptionFacts{who, option, value.to_short_string(), OptionPart::Value, -1,
                                std::string("option '") + option + "' = " + value.to_short_string() + " " + why});
}

}  // namespace optreg::detail
