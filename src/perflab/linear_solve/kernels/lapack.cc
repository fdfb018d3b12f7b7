// The library's C interface for its loader (`_kernels.py`, through ctypes): the LAPACK/BLAS
// pointers, and whether they are set.
#include "lapack.h"

namespace perflab {
namespace {

template <typename T>
void load(void* const* f) {
  Lapack<T>::getrf = reinterpret_cast<typename Lapack<T>::getrf_t>(f[0]);
  Lapack<T>::getrs = reinterpret_cast<typename Lapack<T>::getrs_t>(f[1]);
  Lapack<T>::potrf = reinterpret_cast<typename Lapack<T>::potrf_t>(f[2]);
  Lapack<T>::potrs = reinterpret_cast<typename Lapack<T>::potrs_t>(f[3]);
  Lapack<T>::gttrf = reinterpret_cast<typename Lapack<T>::gttrf_t>(f[4]);
  Lapack<T>::gttrs = reinterpret_cast<typename Lapack<T>::gttrs_t>(f[5]);
  Lapack<T>::gemv = reinterpret_cast<typename Lapack<T>::gemv_t>(f[6]);
  Lapack<T>::trsv = reinterpret_cast<typename Lapack<T>::trsv_t>(f[7]);
}

}  // namespace
}  // namespace perflab

#pragma GCC visibility push(default)
extern "C" {

// prefix 'd' (float64) or 's' (float32); f: getrf, getrs, potrf, potrs, gttrf, gttrs, gemv, trsv.
// Returns 0, or -1 for an unknown prefix or a null pointer.
int perflab_set_lapack(char prefix, void* const* f) {
  for (int i = 0; i < 8; ++i) {
    if (f[i] == nullptr) return -1;
  }
  if (prefix == 'd') {
    perflab::load<double>(f);
  } else if (prefix == 's') {
    perflab::load<float>(f);
  } else {
    return -1;
  }
  return 0;
}

int perflab_lapack_ready() { return perflab::Lapack<double>::ready() && perflab::Lapack<float>::ready(); }

}  // extern "C"
#pragma GCC visibility pop
