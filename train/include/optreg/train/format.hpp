#pragma once
/// \file
/// Values and options as text for a terminal and as JSON: the one place that says how the tool
/// and the training library print them (docs/command-line.md, "Untrusted text" and "JSON").
///
/// Contract: every string these functions put in text or JSON went through escape_text() (names,
/// paths, descriptions) or escape_message() (messages), so it is valid UTF-8 and inert; a JSON
/// number is finite or one of the strings ".inf", "-.inf", ".nan"; a finite number reads back as
/// the same double.

#include <string>

#include <nlohmann/json.hpp>

#include <optreg/value.hpp>

namespace optreg::train {

/// A JSON document whose objects keep their members in the order they were added.
using Json = nlohmann::ordered_json;

/// Options as text for a terminal, {lr: 0.1, name: "x"}, names escaped.
std::string options_text(const Options& o);
/// Options as `lr=0.1, name="x"`, names as given: how a checkpoint's metadata records a problem's
/// options, compared on resume (a change here makes every older checkpoint refused).
std::string options_assignments(const Options& o);

/// A JSON string holding escape_text(s): names, paths, descriptions, metadata.
Json json_text(const std::string& s);
/// A JSON string holding escape_message(s): error messages and refusal reasons.
Json json_message(const std::string& s);
/// A number as JSON: the shortest text that reads back the same double, or rounded to `digits`
/// significant digits when `digits` > 0; inf and NaN as the strings ".inf", "-.inf", ".nan".
Json json_number(double d, int digits = 0);
/// A Value as JSON (a list of floats as an array of json_number()).
Json json_value(const Value& v);
/// Options as a JSON object, names escaped.
Json options_json(const Options& o);

/// `j` on one line, members and elements separated by ", " and names by ": " (an error object,
/// one entry of a listing).
std::string json_line(const Json& j);
/// `j`, an object, as a block: one member a line, and the elements of a member that holds
/// objects (an array of them, or an object of them) one a line below it (a report).
std::string json_block(const Json& j);

}  // namespace optreg::train
