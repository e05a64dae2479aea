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
      lk.unlock();
      work();
      lk.lock();
      if (--active_ == 0 && remaining_ == 0) done_cv_.notify_all();
    }
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
