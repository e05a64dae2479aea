// device.cu: the CUDA backend's device layer: discovery that is safe without a GPU or a
// driver, the per-device stream, byte copies, and the caching stream-ordered allocator
// (PyTorch's design, simplified). No kernels here. Built by nvcc with the other
// native/cuda/*.cu files; the CUDA runtime is linked statically (libcudart_static).
#include <algorithm>
#include <cstdio>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend.h"
#include "cuda_common.cuh"

namespace l2c {
namespace cuda {

// ---------------------------------------------------------------- errors, devices

[[noreturn]] void throw_cuda_error(cudaError_t err, const char *call, const char *file, int line) {
  cudaGetLastError();
  l2c_status status = L2C_INTERNAL;
  switch (err) {
    case cudaErrorMemoryAllocation:
      status = L2C_OUT_OF_MEMORY;
      break;
    case cudaErrorNoDevice:
    case cudaErrorInvalidDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorCallRequiresNewerDriver:
    case cudaErrorStubLibrary:
    case cudaErrorDevicesUnavailable:
    case cudaErrorNoKernelImageForDevice:  // a GPU this build has no code for
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorSystemNotReady:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
      status = L2C_DEVICE_UNAVAILABLE;
      break;
    default:
      break;
  }
  char msg[640];
  std::snprintf(msg, sizeof msg, "CUDA error %s (%s) in %s at %s:%d", cudaGetErrorName(err),
                cudaGetErrorString(err), call, file, line);
  fail(status, msg);
}

bool compiled() { return true; }

int device_count() {
  // Asked once: without a driver the runtime answers an error (no device, insufficient
  // driver), which is also left as the thread's last error; clear it so that it does not
  // surface in an unrelated later check.
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      n = 0;
    }
    return n;
  }();
  return count;
}

void require_device(int device) {
  int n = device_count();
  if (device >= 0 && device < n) return;
  if (n == 0)
    fail(L2C_DEVICE_UNAVAILABLE, "cuda:" + std::to_string(device) +
                                     " is not available: no CUDA device or driver was found");
  fail(L2C_DEVICE_UNAVAILABLE, "cuda:" + std::to_string(device) + " is not available (" +
                                   std::to_string(n) + " CUDA device(s) found)");
}

void device_name(int index, char *buf, size_t len) {
  require_device(index);
  if (!buf || len == 0) fail(L2C_INVALID_ARGUMENT, "cuda device_name: empty buffer");
  cudaDeviceProp prop;
  L2C_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  std::snprintf(buf, len, "%s", prop.name);
}

namespace {

// Never destroyed: at process exit the runtime may already be torn down, and destroying
// streams (or freeing memory, below) then fails or crashes.
struct StreamTable {
  std::mutex mu;
  std::vector<cudaStream_t> streams;
};
StreamTable &stream_table() {
  static StreamTable *t = new StreamTable();
  return *t;
}

}  // namespace

cudaStream_t stream(int device) {
  require_device(device);
  StreamTable &t = stream_table();
  std::lock_guard<std::mutex> lock(t.mu);
  if (t.streams.empty()) t.streams.assign(device_count(), nullptr);
  if (!t.streams[device]) {
    DeviceGuard guard(device);  // a stream belongs to the device current at creation
    cudaStream_t s = nullptr;
    // Non-blocking: no implicit synchronisation with the legacy default stream, which
    // other code in the process (another library) may be using.
    L2C_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    t.streams[device] = s;
  }
  return t.streams[device];
}

void synchronize(int device) {
  DeviceGuard guard(device);
  L2C_CUDA_CHECK(cudaStreamSynchronize(stream(device)));
}

// ---------------------------------------------------------------- copies

// Host -> device, ordered on the device's stream. From pageable host memory (all that
// the library hands out: it never pins) cudaMemcpyAsync returns once the source has been
// staged, so the caller may reuse or free `src` at once. Pinned (page-locked) sources
// would make it truly asynchronous: whoever introduces them must synchronize first.
void copy_h2d(int device, void *dst, const void *src, size_t bytes) {
  DeviceGuard guard(device);
  if (bytes == 0) return;
  L2C_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream(device)));
}

// Device -> host: waits for the copy (and so for everything queued before it).
void copy_d2h(int device, void *dst, const void *src, size_t bytes) {
  DeviceGuard guard(device);
  if (bytes == 0) return;
  cudaStream_t s = stream(device);
  L2C_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  L2C_CUDA_CHECK(cudaStreamSynchronize(s));
}

namespace {

// An event created for the current device, destroyed when it goes out of scope.
// Destroying an event that a stream still waits on is allowed: its resources are
// released once the wait is done.
struct ScopedEvent {
  cudaEvent_t ev = nullptr;
  void create() { L2C_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming)); }
  ScopedEvent() = default;
  ~ScopedEvent() {
    if (ev) cudaEventDestroy(ev);
  }
  ScopedEvent(const ScopedEvent &) = delete;
  ScopedEvent &operator=(const ScopedEvent &) = delete;
};

}  // namespace

// Device -> device. On one device: ordered on its stream. Across devices the copy runs
// on the source's stream after the destination's queued work, and the destination's
// stream then waits for it, so both streams see the copy in order (and both allocators'
// stream-ordered reuse stays safe) without the host waiting.
void copy_d2d(int dst_device, void *dst, int src_device, const void *src, size_t bytes) {
  require_device(dst_device);
  require_device(src_device);
  if (bytes == 0) return;
  if (dst_device == src_device) {
    DeviceGuard guard(src_device);
    if (dst == src) return;
    L2C_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream(src_device)));
    return;
  }
  cudaStream_t s_src = stream(src_device), s_dst = stream(dst_device);
  // Each event is created, recorded and waited for with its stream's device current.
  ScopedEvent dst_ready, copied;
  {
    DeviceGuard guard(dst_device);
    dst_ready.create();
    L2C_CUDA_CHECK(cudaEventRecord(dst_ready.ev, s_dst));
  }
  {
    DeviceGuard guard(src_device);
    copied.create();
    L2C_CUDA_CHECK(cudaStreamWaitEvent(s_src, dst_ready.ev, 0));
    L2C_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device, src, src_device, bytes, s_src));
    L2C_CUDA_CHECK(cudaEventRecord(copied.ev, s_src));
  }
  DeviceGuard guard(dst_device);
  L2C_CUDA_CHECK(cudaStreamWaitEvent(s_dst, copied.ev, 0));
}

// ---------------------------------------------------------------- caching allocator
//
// Device memory is taken from the driver in segments and handed out as blocks carved
// from them. A freed block goes back to a per-device cache (merged with free neighbours
// of its segment) and is reused by later allocations without the driver: cudaMalloc and
// cudaFree synchronize the device and cost tens of microseconds or more.
//
// Sizes (PyTorch's CUDACachingAllocator values):
//   every request rounds up to a multiple of 512 bytes (kMinBlockSize);
//   requests up to 1 MiB (small) are cut from 2 MiB segments of their own pool, so that
//   small tensors do not fragment the segments that large ones live in;
//   larger requests get a 20 MiB segment if under 10 MiB, else a segment rounded up to
//   2 MiB; a cached block is split when the rest would be worth keeping (>= 512 bytes
//   in the small pool, > 1 MiB in the large one).
//
// Stream order: every user of these blocks works on the device's one stream (see
// stream()), so a block freed while kernels that use it are still queued can be handed
// out again at once: whatever the new owner queues runs after them. Only returning
// memory to the driver waits for the stream (empty_cache, and the retry after a failed
// cudaMalloc).
//
// Thread safety: one mutex per device guards its pools and statistics; it is held across
// cudaMalloc on a cache miss (rare, and what PyTorch does too).
namespace {

constexpr size_t kMinBlockSize = 512;
constexpr size_t kSmallSize = size_t(1) << 20;
constexpr size_t kSmallSegment = size_t(2) << 20;
constexpr size_t kMinLargeAlloc = size_t(10) << 20;
constexpr size_t kLargeSegment = size_t(20) << 20;
constexpr size_t kRoundLarge = size_t(2) << 20;

struct Block {
  void *ptr;
  size_t size;  // a multiple of kMinBlockSize
  bool small;   // which pool (and which segment kind) it belongs to
  bool allocated = false;
  Block *prev = nullptr;  // neighbours inside the same segment, in address order
  Block *next = nullptr;
  Block(void *p, size_t s, bool sm) : ptr(p), size(s), small(sm) {}
};

// Best fit: the smallest block that is large enough, lowest address on ties.
struct BlockLess {
  bool operator()(const Block *a, const Block *b) const {
    if (a->size != b->size) return a->size < b->size;
    return reinterpret_cast<uintptr_t>(a->ptr) < reinterpret_cast<uintptr_t>(b->ptr);
  }
};
using Pool = std::set<Block *, BlockLess>;

struct DeviceAllocator {
  std::mutex mu;
  Pool small_free, large_free;
  std::unordered_map<void *, Block *> live;
  uint64_t allocated = 0, peak = 0, reserved = 0, mallocs = 0;
  size_t total_memory = 0;  // of the GPU, read on the first cache miss
};

std::string mib(uint64_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f MiB", (double)bytes / (1024.0 * 1024.0));
  return buf;
}

DeviceAllocator &allocator(int device) {
  require_device(device);
  // Sized once, after device_count() is known; never destroyed (see StreamTable).
  static std::vector<DeviceAllocator *> *table = [] {
    auto *t = new std::vector<DeviceAllocator *>();
    for (int i = 0; i < device_count(); i++) t->push_back(new DeviceAllocator());
    return t;
  }();
  return *(*table)[device];
}

// Rounded block size for a request; more than any GPU holds is refused before the sums
// below could overflow.
size_t round_size(int device, size_t bytes) {
  constexpr size_t kMaxRequest = size_t(1) << 56;
  if (bytes > kMaxRequest)
    fail(L2C_OUT_OF_MEMORY, "CUDA out of memory on cuda:" + std::to_string(device) +
                                ": tried to allocate " + std::to_string(bytes) + " bytes");
  if (bytes < kMinBlockSize) return kMinBlockSize;
  return (bytes + kMinBlockSize - 1) / kMinBlockSize * kMinBlockSize;
}

size_t segment_size(size_t size) {
  if (size <= kSmallSize) return kSmallSegment;
  if (size < kMinLargeAlloc) return kLargeSegment;
  return (size + kRoundLarge - 1) / kRoundLarge * kRoundLarge;
}

// Hands every cached block that is a whole segment back to the driver. Caller holds a.mu
// and a DeviceGuard for the device, and has synchronized its stream.
void release_cached(DeviceAllocator &a) {
  for (Pool *pool : {&a.small_free, &a.large_free}) {
    std::vector<Block *> whole;
    for (Block *b : *pool)
      if (!b->prev && !b->next) whole.push_back(b);
    for (Block *b : whole) {
      pool->erase(b);
      a.reserved -= b->size;
      cudaError_t err = cudaFree(b->ptr);
      delete b;
      L2C_CUDA_CHECK(err);
    }
  }
}

// A new segment of at least `size` bytes (rounded from `requested`), as one free block
// not yet in any pool.
Block *new_segment(int device, DeviceAllocator &a, size_t size, size_t requested, bool small) {
  DeviceGuard guard(device);
  size_t seg = segment_size(size);
  if (a.total_memory == 0) {
    size_t free_b = 0, total_b = 0;
    L2C_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    a.total_memory = total_b;
  }
  void *p = nullptr;
  // More than the whole GPU cannot succeed: skip the driver and the cache flush.
  cudaError_t err = seg > a.total_memory ? cudaErrorMemoryAllocation : cudaMalloc(&p, seg);
  if (err == cudaErrorMemoryAllocation && seg <= a.total_memory) {
    // Cached blocks may be what stands in the way: wait until queued work no longer uses
    // them, give them back, and try once more.
    cudaGetLastError();
    L2C_CUDA_CHECK(cudaStreamSynchronize(stream(device)));
    release_cached(a);
    err = cudaMalloc(&p, seg);
  }
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) cudaGetLastError();
    fail(L2C_OUT_OF_MEMORY,
         "CUDA out of memory on cuda:" + std::to_string(device) + ": tried to allocate " +
             std::to_string(requested) + " bytes (" + mib(requested) + ", in a segment of " + mib(seg) +
             "); the GPU has " + mib(free_b) + " free of " + mib(total_b) + ", llm2clip holds " +
             mib(a.allocated) + " in live tensors and " + mib(a.reserved - a.allocated) +
             " cached in partly used segments");
  }
  L2C_CUDA_CHECK(err);
  a.reserved += seg;
  a.mallocs++;
  return new Block(p, seg, small);
}

}  // namespace

void *alloc(int device, size_t bytes) {
  DeviceAllocator &a = allocator(device);
  size_t size = round_size(device, bytes);
  bool small = size <= kSmallSize;
  std::lock_guard<std::mutex> lock(a.mu);
  Pool &pool = small ? a.small_free : a.large_free;

  Block *b = nullptr;
  Block key(nullptr, size, small);
  auto it = pool.lower_bound(&key);
  if (it != pool.end()) {
    b = *it;
    pool.erase(it);
  } else {
    b = new_segment(device, a, size, bytes, small);
  }

  size_t rest = b->size - size;
  if (small ? rest >= kMinBlockSize : rest > kSmallSize) {
    // Split: b keeps the front `size` bytes, the tail goes back to the pool.
    Block *tail = new Block(static_cast<char *>(b->ptr) + size, rest, small);
    tail->prev = b;
    tail->next = b->next;
    if (b->next) b->next->prev = tail;
    b->next = tail;
    b->size = size;
    pool.insert(tail);
  }

  b->allocated = true;
  a.live.emplace(b->ptr, b);
  a.allocated += b->size;
  a.peak = std::max(a.peak, a.allocated);
  return b->ptr;
}

void free(int device, void *ptr) {
  DeviceAllocator &a = allocator(device);
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(a.mu);
  auto it = a.live.find(ptr);
  if (it == a.live.end()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%p", ptr);
    fail(L2C_INVALID_ARGUMENT, std::string("cuda free: ") + buf +
                                   " is not a live allocation on cuda:" + std::to_string(device) +
                                   " (freed twice, or allocated elsewhere)");
  }
  Block *b = it->second;
  a.live.erase(it);
  b->allocated = false;
  a.allocated -= b->size;

  Pool &pool = b->small ? a.small_free : a.large_free;
  if (Block *p = b->prev; p && !p->allocated) {  // merge into the free block before
    pool.erase(p);
    p->size += b->size;
    p->next = b->next;
    if (b->next) b->next->prev = p;
    delete b;
    b = p;
  }
  if (Block *n = b->next; n && !n->allocated) {  // absorb the free block after
    pool.erase(n);
    b->size += n->size;
    b->next = n->next;
    if (n->next) n->next->prev = b;
    delete n;
  }
  pool.insert(b);
}

l2c_memory_stats memory_stats(int device) {
  DeviceAllocator &a = allocator(device);
  std::lock_guard<std::mutex> lock(a.mu);
  l2c_memory_stats s{};
  s.allocated_bytes = a.allocated;
  s.peak_allocated_bytes = a.peak;
  s.reserved_bytes = a.reserved;
  s.num_allocs = a.live.size();
  s.num_device_mallocs = a.mallocs;
  return s;
}

void empty_cache(int device) {
  DeviceAllocator &a = allocator(device);
  std::lock_guard<std::mutex> lock(a.mu);
  DeviceGuard guard(device);
  // Freed blocks may still be in use by queued work (frees are stream-ordered).
  L2C_CUDA_CHECK(cudaStreamSynchronize(stream(device)));
  release_cached(a);
}

}  // namespace cuda
}  // namespace l2c
