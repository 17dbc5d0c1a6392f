// The translation of exceptions thrown by plugin code into exceptions made by the host.
#include <optreg/plugin_call.hpp>

#include <exception>
#include <new>
#include <typeinfo>

#include <optreg/error.hpp>

namespace optreg {

std::string plugin_object(const char* kind, const std::string& name, const std::string& source) {
  return std::string(kind) + " '" + name + "'" + (source.empty() ? std::string() : " (plugin " + source + ")");
}

namespace {

/// Throws a copy made here of the exception being handled when it is an E, else tries the
/// next class; returns when it is none of them. The plugin's exception is destroyed when its
/// handler is left, while the plugin is still loaded.
///
/// The fields are copied only when the exception's type_info is optreg::base's own E (every
/// error class has its key function here, so a plugin built against this header uses it). A
/// plugin built against a header from before the fields existed made its own type_info and an
/// object without them: it keeps its class and message, and nothing past its end is read.
template <typename E, typename... More>
void rethrow_copy_of() {
  try {
    throw;
  } catch (const E& e) {
    if (&typeid(e) == &typeid(E)) throw E(e);
    throw E(std::string(e.what()));
  } catch (...) {
  }
  if constexpr (sizeof...(More) > 0) rethrow_copy_of<More...>();
}

}  // namespace

void detail::rethrow_from_plugin(const char* kind, const std::string& name, const std::string& source, const char* call) {
  // Every class of error.hpp that can be thrown, most derived first, keeps its class and
  // message (FileError is only ever a base: a plugin's class derived from it stays an Error).
  rethrow_copy_of<PluginError, OptionError, ConfigError, StateDictError, CheckpointError, NonFiniteError, UsageError,
                  Error>();
  const std::string who = plugin_object(kind, name, source);
  try {
    throw;
  } catch (const std::bad_alloc&) {
    throw std::bad_alloc();
  } catch (const std::exception& e) {
    throw PluginError(source, who, std::string(call) + " threw: " + e.what());
  } catch (...) {
    throw PluginError(source, who, std::string(call) + " threw an exception that is not a std::exception");
  }
}

}  // namespace optreg
