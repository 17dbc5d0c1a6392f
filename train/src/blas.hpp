#pragma once
// OpenBLAS, loaded when a problem first needs it rather than linked.
//
// OpenBLAS starts its thread pool from a library constructor, and each of its threads takes a
// work buffer of 128 MiB at once; under a memory limit a thread that cannot get it loops, and
// exit() then waits for it forever. Linked, that would happen before main() in every command,
// even `optreg --version`. Loaded here instead, only the problems that multiply matrices start
// it, after checking that the address space it needs is there.

#include <cblas.h>

#include <string>

namespace optreg::train {

/// The BLAS routines the problems use.
struct Blas {
  decltype(&cblas_ddot) ddot = nullptr;
  decltype(&cblas_daxpy) daxpy = nullptr;
  decltype(&cblas_dscal) dscal = nullptr;
  decltype(&cblas_dnrm2) dnrm2 = nullptr;
  decltype(&cblas_dgemm) dgemm = nullptr;
  decltype(&cblas_sgemm) sgemm = nullptr;
  decltype(&cblas_sgemv) sgemv = nullptr;
};

/// OpenBLAS, loaded on the first call (one thread unless OPENBLAS_NUM_THREADS says otherwise,
/// so that runs give the same bits on every machine). Throws optreg::Error naming `user` (such
/// as "problem 'mlp'") when the library is missing or the memory its threads need is not
/// available; a later call tries again.
const Blas& blas(const std::string& user);

}  // namespace optreg::train
