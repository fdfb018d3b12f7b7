// The library's counters for tests (through ctypes, `_kernels.py`).
#include "batching.h"

#pragma GCC visibility push(default)
extern "C" {

// How many calls so far split their batch over the thread pool.
int64_t perflab_chunked_calls() { return perflab::chunked_calls_count.load(); }

// How many tridiagonal JVPs so far were solved in interleaved groups.
int64_t perflab_grouped_systems() { return perflab::grouped_systems_count.load(); }

}  // extern "C"
#pragma GCC visibility pop
