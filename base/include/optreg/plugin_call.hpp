#pragma once
/// \file
/// The one way host code calls into plugin code: call_plugin().
///
/// An exception thrown by plugin code may be of a class defined in the plugin, so that its
/// vtable, what() and destructor are code of the plugin library. If that exception were let
/// out, unwinding could destroy the last object that keeps the library loaded (an optimizer, a
/// registry) and unload it while the exception is still in flight; reading or destroying the
/// exception afterwards would then run unmapped code. So no exception thrown by plugin code
/// leaves the call that ran it: call_plugin() catches everything and throws an exception that
/// the host makes, while the plugin's object (and so its library) is still alive:
/// - an optreg::Error keeps its class and its message (an OptionError from validate() stays an
///   OptionError);
/// - std::bad_alloc stays std::bad_alloc;
/// - anything else becomes a PluginError "KIND 'NAME' (plugin SOURCE): CALL threw: WHAT".
///
/// Every call the base makes into a plugin goes through it: a factory, and every virtual that
/// a plugin may override (Optimizer::validate, init_state, update_group; Scheduler::validate,
/// attach, next_lr, restart_lr, next_lr_on_metric, own_state, check_own_state,
/// load_own_state). A new kind of plugin calls its own virtuals the same way.

#include <optreg/export.hpp>
#include <string>
#include <utility>

namespace optreg {

/// How messages name an object a plugin provides: "KIND 'NAME' (plugin SOURCE)", or
/// "KIND 'NAME'" for a class built into the host (an empty `source`).
OPTREG_API std::string plugin_object(const char* kind, const std::string& name, const std::string& source);

namespace detail {
/// Called inside a catch handler: throws a host-made copy of the exception being handled, as
/// call_plugin() describes.
[[noreturn]] OPTREG_API void rethrow_from_plugin(const char* kind, const std::string& name, const std::string& source,
                                      const char* call);
}  // namespace detail

/// Returns `f()`, where `f` runs plugin code: the call `call` ("update_group()", "the factory")
/// of the KIND ("optimizer", "scheduler") named `name`, provided by the plugin file `source`
/// (empty for a class built into the host). Whatever `f` throws is thrown again as an exception
/// made by the host (see the file comment). Costs nothing unless something is thrown.
template <typename F>
decltype(auto) call_plugin(const char* kind, const std::string& name, const std::string& source, const char* call,
                           F&& f) {
  try {
    return std::forward<F>(f)();
  } catch (...) {
    detail::rethrow_from_plugin(kind, name, source, call);
  }
}

}  // namespace optreg
