#pragma once
/// \file
/// OPTREG_API marks the public API of optreg's shared libraries (optreg_base, optreg_core,
/// optreg_conformance). They are compiled with hidden default visibility, so a class, function or
/// exception that lacks the mark is private to its library; a linker version script then keeps
/// only names in the `optreg` namespace (and their vtables and typeinfo) in the dynamic symbol
/// table, so that template instantiations over optreg types do not leak out either.
///
/// Exception classes carry the mark so that their typeinfo is exported and a `catch` in a host
/// matches an error thrown inside a library.

#if defined(__GNUC__) || defined(__clang__)
#define OPTREG_API __attribute__((visibility("default")))
#else
#define OPTREG_API
#endif
