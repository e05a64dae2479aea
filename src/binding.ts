// binding.ts: the only place that loads the compiled addon (build/Release/llm2clip.node,
// from cmake-js or node-gyp), with the exact TypeScript types of what it exports.
// LLM2CLIP_ADDON overrides the path (e.g. a sanitizer build).
import * as path from 'path';
import { ErrorCode, Llm2ClipError } from './errors';

/** Native memory block (CPU or CUDA). */
export interface NativeStorage {
  readonly bytes: number;
  readonly freed: boolean;
  /** CPU only: an external ArrayBuffer over the block (detached by free()). */
  arrayBuffer(): ArrayBuffer;
  free(): void;
}

export interface NativeMemoryStats {
  allocatedBytes: number;
  peakAllocatedBytes: number;
  reservedBytes: number;
  numAllocs: number;
  numDeviceMallocs: number;
}

/** A tensor as the addon takes it: storage, dtype code, shape. */
type T3 = [NativeStorage, number, number[]];

export interface Addon {
  Storage: new (deviceType: number, deviceIndex: number, bytes: number) => NativeStorage;
  setErrorFactory(f: (code: string, message: string) => Error): void;
  abiVersion(): number;
  numThreads(): number;
  setNumThreads(n: number): void;
  cpuIsa(): string;
  setCpuIsa(isa: string): void;
  memoryStats(deviceType: number, deviceIndex: number): NativeMemoryStats;
  emptyCache(deviceType: number, deviceIndex: number): void;
  synchronize(deviceType: number, deviceIndex: number): void;
  cudaCompiled(): boolean;
  cudaDeviceCount(): number;
  cudaDeviceName(index: number): string;
  /** The whole file memory-mapped (private copy-on-write), unmapped when collected. */
  mapFile(path: string): ArrayBuffer;
  copy(...args: [...T3, ...T3]): void;
  copyAsync(...args: [...T3, ...T3]): Promise<void>;
  cast(...args: [...T3, ...T3]): void;
  fill(...args: [...T3, number]): void;
  random(...args: [...T3, number, bigint, number, number]): void;
  matmul(...args: [...T3, ...T3, ...T3, boolean, boolean]): void;
}

/** The package root: the nearest folder above this file with our package.json (src/ or dist/src/). */
function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      if (require(path.join(dir, 'package.json')).name === 'llm2clip') return dir;
    } catch {
      /* not here */
    }
    const up = path.dirname(dir);
    if (up === dir) return path.join(__dirname, '..', '..');
    dir = up;
  }
}

function load(): Addon {
  const file = process.env.LLM2CLIP_ADDON ?? path.join(packageRoot(), 'build', 'Release', 'llm2clip.node');
  let addon: Addon;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    addon = require(file) as Addon;
  } catch (e) {
    throw new Llm2ClipError(
      'INTERNAL',
      `llm2clip: cannot load the native addon ${file} (${(e as Error).message}); ` +
        'build it with `npm install` (or `npm run build:native`)',
    );
  }
  addon.setErrorFactory((code, message) => new Llm2ClipError(code as ErrorCode, message));
  return addon;
}

export const native: Addon = load();
