// emu_backend.cc: the emulation runtime (emu.h) and the l2c::cuda backend functions of
// backend.h / cuda_common.cuh on host memory ("cuda:0" is host memory here), so that
// the C ABI, the native tests and native/cuda/infonce.cu (or matmul.cu / lora.cu, with
// EMU_NO_MATMUL_STUB) run unchanged on the CPU.

#include <cstdio>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "emu.h"
#include "backend.h"

namespace emu {

dim3 cur_thread, cur_block, grid_dim, block_dim;

namespace {
struct Copy {
  void *dst;
  const void *src;
  int bytes;
};
// x86-64 SysV context switch without the signal-mask syscall of swapcontext: saves the
// callee-saved registers on the old stack, stores its stack pointer, loads the new one.
extern "C" void emu_switch(void **from_sp, void *to_sp);
asm(R"(
.text
.globl emu_switch
.type emu_switch, @function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size emu_switch, .-emu_switch
)");
struct Ctx {
  void *sp = nullptr;
  std::vector<char> stack;
  bool done = false;
  std::vector<Copy> open;
  std::deque<std::vector<Copy>> groups;
};
std::vector<Ctx> ctxs;
void *sched_sp = nullptr;
int cur = 0, nthreads = 0;
const std::function<void()> *body = nullptr;
int bar_arrived = 0;
uint64_t bar_gen = 0;
int warp_arrived[32];
uint64_t warp_gen[32];
alignas(16) unsigned char xbuf[32][32][64];
uint64_t events = 0;
alignas(128) unsigned char smem[256 * 1024];
size_t smem_limit = 0;
std::map<const void *, int> max_dyn;

[[noreturn]] void die(const std::string &msg) {
  std::fprintf(stderr, "EMU FAILURE: %s (block %u,%u,%u thread %d)\n", msg.c_str(), cur_block.x, cur_block.y,
               cur_block.z, cur);
  std::abort();
}
void yield() { emu_switch(&ctxs[cur].sp, sched_sp); }
[[noreturn]] void entry() {
  (*body)();
  Ctx &c = ctxs[cur];
  if (!c.open.empty() || !c.groups.empty()) die("cp.async still in flight when the thread exits");
  c.done = true;
  events++;
  emu_switch(&c.sp, sched_sp);
  die("a finished thread was resumed");
}
void run_copy(const Copy &c) {
  std::memset(c.dst, 0, 16);
  if (c.bytes > 0) std::memcpy(c.dst, c.src, (size_t)c.bytes);
}
}  // namespace

int cur_tid() { return cur; }
unsigned char *xslot(int w, int l) { return xbuf[w][l]; }
unsigned char *dyn_smem() { return smem; }
int sm_count() {
  const char *s = std::getenv("EMU_SMS");
  return s ? std::atoi(s) : 132;
}
void set_max_dyn_smem(const void *k, int bytes) { max_dyn[k] = bytes; }

void warp_sync() {
  const int w = cur / 32;
  const uint64_t g = warp_gen[w];
  events++;
  if (++warp_arrived[w] == 32) {
    warp_arrived[w] = 0;
    warp_gen[w]++;
    return;
  }
  while (warp_gen[w] == g) yield();
}
uint64_t leader_gen[32];
bool claim_warp_leader() {
  const int w = cur / 32;
  if (leader_gen[w] == warp_gen[w]) return false;
  leader_gen[w] = warp_gen[w];
  return true;
}
void block_sync() {
  const uint64_t g = bar_gen;
  events++;
  if (++bar_arrived == nthreads) {
    bar_arrived = 0;
    bar_gen++;
    return;
  }
  while (bar_gen == g) yield();
}

void check_smem(const void *p, size_t bytes, size_t align, const char *what) {
  const unsigned char *c = static_cast<const unsigned char *>(p);
  if (c < smem || c + bytes > smem + smem_limit)
    die(std::string(what) + ": address outside the dynamic shared memory of the launch");
  if ((reinterpret_cast<uintptr_t>(p) & (align - 1)) != 0) die(std::string(what) + ": misaligned shared address");
}

void cp_async16(void *dst, const void *src, int bytes) {
  check_smem(dst, 16, 16, "cp.async destination");
  if (bytes < 0 || bytes > 16) die("cp.async src-size outside 0..16");  // the rest is zero-filled
  if (bytes && (reinterpret_cast<uintptr_t>(src) & 15u)) die("cp.async: misaligned global source");
  ctxs[cur].open.push_back({dst, src, bytes});
}
void cp_async_commit() {
  Ctx &c = ctxs[cur];
  c.groups.push_back(std::move(c.open));
  c.open.clear();
}
void cp_async_wait(int n) {
  Ctx &c = ctxs[cur];
  while ((int)c.groups.size() > n) {
    for (const Copy &cp : c.groups.front()) run_copy(cp);
    c.groups.pop_front();
  }
}

void ldsm(uint32_t (&r)[4], const void *p, bool trans) {
  check_smem(p, 16, 16, "ldmatrix row address");
  const int t = cur, w = t / 32, l = t % 32;
  std::memcpy(xslot(w, l), &p, sizeof p);
  warp_sync();
  auto row = [&](int lane) {
    const void *q;
    std::memcpy(&q, xslot(w, lane), sizeof q);
    return static_cast<const uint16_t *>(q);
  };
  for (int i = 0; i < 4; i++) {
    uint16_t h0, h1;
    if (!trans) {  // thread l: row l/4, columns 2(l%4), +1 of matrix i
      h0 = row(8 * i + l / 4)[2 * (l % 4)];
      h1 = row(8 * i + l / 4)[2 * (l % 4) + 1];
    } else {  // transposed: rows 2(l%4), +1, column l/4
      h0 = row(8 * i + 2 * (l % 4))[l / 4];
      h1 = row(8 * i + 2 * (l % 4) + 1)[l / 4];
    }
    r[i] = (uint32_t)h0 | ((uint32_t)h1 << 16);
  }
  warp_sync();
}

void run_grid(const Cfg &cfg, const void *kernel, const std::function<void()> &fn) {
  const size_t limit = max_dyn.count(kernel) ? (size_t)max_dyn[kernel] : 48 * 1024;
  if (cfg.smem > limit) die("dynamic shared memory above the kernel's opt-in");
  if (cfg.smem > 163 * 1024) die("dynamic shared memory above the A100's 163 KB");
  if (cfg.grid.y > 65535 || cfg.grid.z > 65535 || cfg.grid.x == 0 || cfg.grid.y == 0) die("bad grid");
  const int n = (int)(cfg.block.x * cfg.block.y * cfg.block.z);
  if (n > 1024 || n % 32) die("bad block");
  grid_dim = cfg.grid;
  block_dim = cfg.block;
  smem_limit = cfg.smem;
  body = &fn;
  for (unsigned bz = 0; bz < cfg.grid.z; bz++)
    for (unsigned by = 0; by < cfg.grid.y; by++)
      for (unsigned bx = 0; bx < cfg.grid.x; bx++) {
        cur_block = dim3(bx, by, bz);
        std::memset(smem, 0xff, sizeof smem);  // NaN in every float dtype
        nthreads = n;
        bar_arrived = 0;
        for (int w = 0; w < 32; w++) {
          warp_arrived[w] = 0;
          leader_gen[w] = warp_gen[w];
        }
        ctxs.clear();
        ctxs.resize(n);
        for (int i = 0; i < n; i++) {
          Ctx &c = ctxs[i];
          c.stack.resize(256 * 1024);
          // Initial frame: 6 callee-saved registers (zeros), the return address (entry),
          // and one slot so that entry starts with rsp = 8 mod 16, as after a call.
          uintptr_t top = (reinterpret_cast<uintptr_t>(c.stack.data()) + c.stack.size()) & ~uintptr_t(15);
          void **f = reinterpret_cast<void **>(top) - 8;
          for (int k = 0; k < 6; k++) f[k] = nullptr;
          f[6] = reinterpret_cast<void *>(&entry);
          f[7] = nullptr;
          c.sp = f;
        }
        int live = n;
        while (live > 0) {
          const uint64_t ev0 = events;
          for (int i = 0; i < n; i++) {
            if (ctxs[i].done) continue;
            cur = i;
            cur_thread = dim3(i % cfg.block.x, (i / cfg.block.x) % cfg.block.y, i / (cfg.block.x * cfg.block.y));
            emu_switch(&sched_sp, ctxs[i].sp);
            if (ctxs[i].done) live--;
          }
          if (live > 0 && events == ev0) die("deadlock: every live thread waits");
        }
      }
}

}  // namespace emu

// ---------------------------------------------------------------- the backend on host memory

namespace l2c {
namespace cuda {

[[noreturn]] void throw_cuda_error(int err, const char *call, const char *file, int line) {
  fail(L2C_INTERNAL, std::string("emulated CUDA error in ") + call);
}
void require_device(int device) {
  if (device != 0) fail(L2C_DEVICE_UNAVAILABLE, "cuda:" + std::to_string(device) + " is not available (emulation: 1 device)");
}
void *stream(int) { return nullptr; }

bool compiled() { return true; }
int device_count() { return 1; }
void device_name(int, char *buf, size_t len) { std::snprintf(buf, len, "emulated"); }
void *alloc(int device, size_t bytes) {
  require_device(device);
  void *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
  std::memset(p, 0xA5, (bytes + 255) / 256 * 256);  // garbage, as fresh device memory
  return p;
}
void free(int, void *ptr) { std::free(ptr); }
l2c_memory_stats memory_stats(int) { return l2c_memory_stats{}; }
void empty_cache(int) {}
void synchronize(int) {}
void copy_h2d(int, void *dst, const void *src, size_t bytes) { std::memcpy(dst, src, bytes); }
void copy_d2h(int, void *dst, const void *src, size_t bytes) { std::memcpy(dst, src, bytes); }
void copy_d2d(int, void *dst, int, const void *src, size_t bytes) { std::memcpy(dst, src, bytes); }
static l2c_tensor on_cpu(l2c_tensor t) {
  t.device = l2c_device{L2C_CPU, 0};
  return t;
}
void cast(const l2c_tensor &dst, const l2c_tensor &src) { cpu::cast(on_cpu(dst), on_cpu(src)); }
void fill(const l2c_tensor &dst, double value) { cpu::fill(on_cpu(dst), value); }
void random(const l2c_tensor &dst, l2c_random_kind kind, uint64_t seed, double a, double b) {
  cpu::random(on_cpu(dst), kind, seed, a, b);
}
#ifndef EMU_NO_MATMUL_STUB  // build_lora.sh emulates native/cuda/matmul.cu instead
void matmul(int, const MatmulParams &p) { cpu::matmul(p); }
#endif

}  // namespace cuda
}  // namespace l2c
