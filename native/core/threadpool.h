// threadpool.h: the CPU backend's worker pool. One process-wide pool of
// l2c_num_threads() threads (LLM2CLIP_NUM_THREADS, default = hardware cores).
// parallel_for may be called from any thread (the addon loads in worker_threads): a
// call that finds the pool busy with another caller's job runs its work inline.
#pragma once
#include <cstdint>
#include <functional>

namespace l2c {

int num_threads();
void set_num_threads(int n);

// Runs fn(task) for task in [0, ntasks), spread over the pool; returns when all are
// done. An exception thrown by a task is rethrown in the caller (the first one).
void parallel_tasks(int64_t ntasks, const std::function<void(int64_t task)> &fn);

// Splits [0, n) into at most num_threads() contiguous chunks of at least `grain`
// elements and runs fn(begin, end) on each.
void parallel_for(int64_t n, int64_t grain,
                  const std::function<void(int64_t begin, int64_t end)> &fn);

}  // namespace l2c
