// runtime.ts: process-level queries and settings: memory statistics, CPU threads and
// SIMD level, and the `cuda` namespace (compiled / available / devices).
import { native, NativeMemoryStats } from './binding';
import { parseDevice } from './dtype';
import { fail } from './errors';
import { tensorCounts } from './tensor';

export type MemoryStats = NativeMemoryStats;

export interface ProcessMemoryStats {
  /** Tensor handles alive (not disposed, not collected). */
  liveTensors: number;
  /** Tensors the garbage collector released that were never disposed (leaks caught by the safety net). */
  collectedUndisposed: number;
  cpu: MemoryStats;
  /** One entry per visible CUDA device (empty without CUDA). */
  cuda: MemoryStats[];
}

/** Native memory in use, per device, and live tensor counts. */
export function memoryStats(): ProcessMemoryStats {
  const n = cuda.isAvailable() ? native.cudaDeviceCount() : 0;
  return {
    ...tensorCounts(),
    cpu: native.memoryStats(0, 0),
    cuda: Array.from({ length: n }, (_, i) => native.memoryStats(1, i)),
  };
}

export const cuda = {
  /** True when this build of the addon contains the CUDA backend. */
  compiled(): boolean {
    return native.cudaCompiled();
  },
  /** True when CUDA is compiled and at least one GPU with a working driver is present. */
  isAvailable(): boolean {
    return native.cudaCompiled() && native.cudaDeviceCount() > 0;
  },
  deviceCount(): number {
    return native.cudaCompiled() ? native.cudaDeviceCount() : 0;
  },
  deviceName(index = 0): string {
    parseDevice(`cuda:${index}`, 'cuda.deviceName(index)');
    return native.cudaDeviceName(index);
  },
  /** Allocator statistics of one GPU. */
  memoryStats(device = 'cuda'): MemoryStats {
    const d = parseDevice(device, 'cuda.memoryStats(device)');
    if (d.type !== 'cuda') fail('INVALID_ARGUMENT', `cuda.memoryStats(device): ${device} is not a CUDA device`);
    return native.memoryStats(1, d.index);
  },
  /** Returns the caching allocator's free blocks to the driver. */
  emptyCache(device = 'cuda'): void {
    const d = parseDevice(device, 'cuda.emptyCache(device)');
    native.emptyCache(1, d.index);
  },
  /** Waits until all work queued on the device has finished. */
  synchronize(device = 'cuda'): void {
    const d = parseDevice(device, 'cuda.synchronize(device)');
    native.synchronize(1, d.index);
  },
};

/**
 * Returns cached memory to the system: the CPU's cache of large freed blocks (kept for
 * reuse, up to LLM2CLIP_CPU_CACHE_BYTES, default 2 GiB) or a GPU's caching allocator.
 */
export function emptyCache(device = 'cpu'): void {
  const d = parseDevice(device, 'emptyCache(device)');
  native.emptyCache(d.type === 'cpu' ? 0 : 1, d.index);
}

/** Threads of the native CPU pool (LLM2CLIP_NUM_THREADS, default: all cores). */
export function getNumThreads(): number {
  return native.numThreads();
}
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) fail('INVALID_ARGUMENT', `setNumThreads(n): a positive integer is required (got ${n})`);
  native.setNumThreads(n);
}

export type CpuIsa = 'avx512' | 'avx2' | 'generic';
/** The SIMD level the CPU kernels use. */
export function getCpuIsa(): CpuIsa {
  return native.cpuIsa() as CpuIsa;
}
/** Forces a lower SIMD level (tests, benchmarks); INVALID_ARGUMENT if the CPU lacks it. */
export function setCpuIsa(isa: CpuIsa): void {
  if (!['avx512', 'avx2', 'generic'].includes(isa))
    fail('INVALID_ARGUMENT', `setCpuIsa(isa): unknown level ${JSON.stringify(isa)} (avx512, avx2 or generic)`);
  native.setCpuIsa(isa);
}
