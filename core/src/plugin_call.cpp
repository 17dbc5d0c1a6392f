// The translation of exceptions thrown by plugin code into exceptions made by the host.
#include <optreg/plugin_call.hpp>

#include <exception>
#include <new>

#include <optreg/error.hpp>

namespace optreg {

std::string plugin_object(const char* kind, const std::string& name, const std::string& source) {
  return std::string(kind) + " '" + name + "'" + (source.empty() ? std::string() : " (plugin " + source + ")");
}

void detail::rethrow_from_plugin(const char* kind, const std::string& name, const std::string& source, const char* call) {
  // Each handler copies the message into a new exception made here, in the host; the plugin's
  // exception is destroyed when its handler is left, while the plugin is still loaded. Every
  // class of error.hpp is listed, most derived first.
  const auto who = [&] { return plugin_object(kind, name, source) + ": " + call + " threw"; };
  try {
    throw;
  } catch (const PluginError& e) {
    throw PluginError(e.what());
  } catch (const OptionError& e) {
    throw OptionError(e.what());
  } catch (const ConfigError& e) {
    throw ConfigError(e.what());
  } catch (const StateDictError& e) {
    throw StateDictError(e.what());
  } catch (const CheckpointError& e) {
    throw CheckpointError(e.what());
  } catch (const NonFiniteError& e) {
    throw NonFiniteError(e.what());
  } catch (const UsageError& e) {
    throw UsageError(e.what());
  } catch (const Error& e) {
    throw Error(e.what());
  } catch (const std::bad_alloc&) {
    throw std::bad_alloc();
  } catch (const std::exception& e) {
    throw PluginError(who() + ": " + e.what());
  } catch (...) {
    throw PluginError(who() + " an exception that is not a std::exception");
  }
}

}  // namespace optreg
