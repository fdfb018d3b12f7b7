// Batching and thread scheduling of the kernels: leading batch dimensions broadcast numpy-style,
// and a large batch of distinct systems split into chunks over XLA's intra-op thread pool.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace perflab {

namespace ffi = xla::ffi;

// Broadcast strides of one input over the output's batch dimensions (in units of one system).
struct Broadcast {
  std::vector<int64_t> strides;
};

inline ffi::Error broadcast_of(const ffi::AnyBuffer& buf, int core_rank, int64_t core_size,
                        const std::vector<int64_t>& batch, int operand, Broadcast& b) {
  auto dims = buf.dimensions();
  int rank = static_cast<int>(dims.size());
  int lead = rank - core_rank;
  int out_rank = static_cast<int>(batch.size());
  if (lead < 0 || lead > out_rank) {
    return ffi::Error::InvalidArgument("perflab ffi: bad rank of operand " + std::to_string(operand));
  }
  b.strides.assign(out_rank, 0);
  int64_t stride = core_size;
  // Right-aligned, numpy style; a size-1 dimension broadcasts (stride 0).
  for (int k = 1; k <= lead; ++k) {
    int64_t size = dims[lead - k];
    int64_t out_size = batch[out_rank - k];
    if (size != 1 && size != out_size) {
      return ffi::Error::InvalidArgument("perflab ffi: batch dimension mismatch in operand " +
                                        std::to_string(operand));
    }
    b.strides[out_rank - k] = size == 1 ? 0 : stride;
    stride *= size;
  }
  return ffi::Error::Success();
}

inline int64_t offset_of(const Broadcast& b, const std::vector<int64_t>& index) {
  int64_t off = 0;
  for (size_t d = 0; d < index.size(); ++d) off += index[d] * b.strides[d];
  return off;
}

inline std::vector<int64_t> index_of(int64_t s, const std::vector<int64_t>& batch) {
  std::vector<int64_t> index(batch.size(), 0);
  for (int d = static_cast<int>(batch.size()) - 1; d >= 0; --d) {
    index[d] = s % batch[d];
    s /= batch[d];
  }
  return index;
}

// A batch is split over threads only above this many (estimated) flops: a handoff to another
// thread costs some microseconds.
constexpr double kParallelMinWork = 2e5;
constexpr double kChunkWork = 2e4;

// Run process(begin, end) over [0, total) in chunks, on the calling thread and on helpers
// scheduled on XLA's intra-op thread pool. Chunks are claimed from a shared counter, so the
// caller never waits for a helper that has not started (a busy pool, or the caller itself
// being the pool's only thread): it claims the remaining chunks itself and waits only for the
// chunks already claimed. A helper that starts after the call returned finds no chunk left
// and touches only the shared state it owns.
inline std::atomic<int64_t> chunked_calls_count{0};  // read by tests: the parallel path was taken

struct ChunkState {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

template <typename Process>
void run_chunks(ffi::ThreadPool& pool, int64_t total, double work, const Process& process) {
  // The pool may hold more threads than cores (one per host device): no more than the cores.
  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t threads = std::max<int64_t>(1, std::min({pool.num_threads(), cores, total}));
  chunked_calls_count.fetch_add(1);
  auto state = std::make_shared<ChunkState>();
  // Small chunks (about kChunkWork flops, a few microseconds): the threads finish within one
  // small chunk of each other, whenever the helper started.
  const int64_t chunks = std::clamp<int64_t>(static_cast<int64_t>(work / kChunkWork), threads, total);
  const Process* fn = &process;
  auto claim = [state, fn, total, chunks]() {
    for (;;) {
      int64_t c = state->next.fetch_add(1);
      if (c >= chunks) return;
      (*fn)(c * total / chunks, (c + 1) * total / chunks);
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  for (int64_t t = 1; t < threads; ++t) pool.Schedule(decltype(claim)(claim));
  claim();
  while (state->done.load(std::memory_order_acquire) < chunks) std::this_thread::yield();
}

inline void next_index(std::vector<int64_t>& index, const std::vector<int64_t>& batch) {
  for (int d = static_cast<int>(index.size()) - 1; d >= 0; --d) {
    if (++index[d] < batch[d]) return;
    index[d] = 0;
  }
}

template <typename T>
bool all_finite(const T* x, int n) {
  bool finite = true;
  for (int i = 0; i < n; ++i) finite &= std::isfinite(x[i]);
  return finite;
}

constexpr int kGroup = 4;
inline std::atomic<int64_t> grouped_systems_count{0};  // read by tests: systems solved by groups

}  // namespace perflab
