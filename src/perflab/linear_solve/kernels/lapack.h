// LAPACK/BLAS for the kernels: scipy's (scipy.linalg.cython_lapack / cython_blas). Their
// function pointers are read from the capsules in `__pyx_capi__` in Python (`_kernels.py`) and
// handed over once through `perflab_set_lapack` (lapack.cc), so nothing links against a BLAS.
#pragma once

namespace perflab {

template <typename T>
struct Lapack {
  using getrf_t = void (*)(int*, int*, T*, int*, int*, int*);
  using getrs_t = void (*)(char*, int*, int*, T*, int*, int*, T*, int*, int*);
  using potrf_t = void (*)(char*, int*, T*, int*, int*);
  using potrs_t = void (*)(char*, int*, int*, T*, int*, T*, int*, int*);
  using gttrf_t = void (*)(int*, T*, T*, T*, T*, int*, int*);
  using gttrs_t = void (*)(char*, int*, int*, T*, T*, T*, T*, int*, T*, int*, int*);
  using gemv_t = void (*)(char*, int*, int*, T*, T*, int*, T*, int*, T*, T*, int*);
  using trsv_t = void (*)(char*, char*, char*, int*, T*, int*, T*, int*);
  static getrf_t getrf;
  static getrs_t getrs;
  static potrf_t potrf;
  static potrs_t potrs;
  static gttrf_t gttrf;
  static gttrs_t gttrs;
  static gemv_t gemv;
  static trsv_t trsv;
  static bool ready() { return getrf && getrs && potrf && potrs && gttrf && gttrs && gemv && trsv; }
};
template <typename T> typename Lapack<T>::getrf_t Lapack<T>::getrf = nullptr;
template <typename T> typename Lapack<T>::getrs_t Lapack<T>::getrs = nullptr;
template <typename T> typename Lapack<T>::potrf_t Lapack<T>::potrf = nullptr;
template <typename T> typename Lapack<T>::potrs_t Lapack<T>::potrs = nullptr;
template <typename T> typename Lapack<T>::gttrf_t Lapack<T>::gttrf = nullptr;
template <typename T> typename Lapack<T>::gttrs_t Lapack<T>::gttrs = nullptr;
template <typename T> typename Lapack<T>::gemv_t Lapack<T>::gemv = nullptr;
template <typename T> typename Lapack<T>::trsv_t Lapack<T>::trsv = nullptr;

}  // namespace perflab
