// threadpool.cc: the process-wide CPU worker pool (see threadpool.h).
// Workers sleep on a condition variable; a job is a task count and a function, and
// tasks are claimed with an atomic counter so uneven tasks balance themselves.
#include "threadpool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>
#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

namespace l2c {
namespace {

int default_threads() {
  if (const char *env = std::getenv("LLM2CLIP_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return std::min(n, 1024);
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? (int)hc : 1;
}

class Pool {
 public:
  Pool() { resize(default_threads()); }
  ~Pool() { stop_workers(); }

  int size() {
    std::lock_guard<std::mutex> g(job_mutex_);
    return nthreads_;
  }

  void resize(int n) {
    std::lock_guard<std::mutex> g(job_mutex_);  // never while a job runs
    stop_workers();
    nthreads_ = std::max(1, n);
    stopping_ = false;
    for (int i = 1; i < nthreads_; i++) workers_.emplace_back([this] { worker_loop(); });
  }

  void run(int64_t ntasks, const std::function<void(int64_t)> &fn) {
    if (ntasks <= 0) return;
    std::unique_lock<std::mutex> job(job_mutex_, std::try_to_lock);
    // Busy with another caller's job (another worker_thread), a nested call from inside
    // a task, or a single task: run inline.
    if (!job.owns_lock() || ntasks == 1 || nthreads_ == 1) {
      for (int64_t t = 0; t < ntasks; t++) fn(t);
      return;
    }
    {
      std::lock_guard<std::mutex> g(m_);
      fn_ = &fn;
#if defined(__linux__)
      caller_cpu_ = sched_getcpu();
#endif
      ntasks_ = ntasks;
      next_.store(0);
      remaining_ = ntasks;
      error_ = nullptr;
      generation_++;
    }
    cv_.notify_all();
    work();  // the caller takes tasks too
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [this] { return remaining_ == 0 && active_ == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work() {
    for (;;) {
      int64_t t = next_.fetch_add(1);
      if (t >= ntasks_) return;
      try {
        (*fn_)(t);
      } catch (...) {
        std::lock_guard<std::mutex> g(m_);
        if (!error_) error_ = std::current_exception();
      }
      std::lock_guard<std::mutex> g(m_);
      if (--remaining_ == 0) done_cv_.notify_all();
    }
  }

  void worker_loop() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      cv_.wait(lk, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      if (!fn_) continue;
      active_++;
      int caller_cpu = caller_cpu_;
      lk.unlock();
      move_off_cpu(caller_cpu);
      work();
      lk.lock();
      if (--active_ == 0 && remaining_ == 0) done_cv_.notify_all();
    }
  }

  // A woken worker is often placed on the waker's CPU and stays there, so a 2-thread
  // job ran at one core's speed (7 of 8 matmuls at 1024^3 on a 2-core VM: ~175 instead
  // of 330-350 GFLOP/s). A worker that finds itself on the caller's CPU steps off it by
  // excluding that CPU from its affinity for a moment, then restores the full mask.
  static void move_off_cpu(int caller_cpu) {
#if defined(__linux__)
    if (caller_cpu < 0 || sched_getcpu() != caller_cpu) return;
    cpu_set_t all, others;
    if (pthread_getaffinity_np(pthread_self(), sizeof all, &all) != 0) return;
    others = all;
    CPU_CLR(caller_cpu, &others);
    if (CPU_COUNT(&others) == 0) return;
    pthread_setaffinity_np(pthread_self(), sizeof others, &others);
    pthread_setaffinity_np(pthread_self(), sizeof all, &all);
#else
    (void)caller_cpu;
#endif
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> g(m_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto &w : workers_) w.join();
    workers_.clear();
  }

  std::mutex job_mutex_;  // one job at a time
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  int nthreads_ = 1;
  bool stopping_ = false;
  uint64_t generation_ = 0;
  const std::function<void(int64_t)> *fn_ = nullptr;
  int64_t ntasks_ = 0;
  std::atomic<int64_t> next_{0};
  int64_t remaining_ = 0;
  int active_ = 0;
  int caller_cpu_ = -1;  // the CPU the job's caller ran on when it posted the job
  std::exception_ptr error_;
};

Pool &pool() {
  // Leaked on purpose: joining threads from a static destructor at process exit can
  // deadlock when the process exits from inside a worker.
  static Pool *p = new Pool();
  return *p;
}

}  // namespace

int num_threads() { return pool().size(); }
void set_num_threads(int n) { pool().resize(n); }

void parallel_tasks(int64_t ntasks, const std::function<void(int64_t)> &fn) {
  pool().run(ntasks, fn);
}

void parallel_for(int64_t n, int64_t grain,
                  const std::function<void(int64_t, int64_t)> &fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t chunks = std::min<int64_t>(num_threads(), (n + grain - 1) / grain);
  chunks = std::max<int64_t>(chunks, 1);
  int64_t per = (n + chunks - 1) / chunks;
  parallel_tasks(chunks, [&](int64_t c) {
    int64_t b = c * per, e = std::min(n, b + per);
    if (b < e) fn(b, e);
  });
}

}  // namespace l2c
