// train-util.ts: shared pieces of the train family's tests (test/train-*.test.ts): tensors
// made from seeded host data rounded to their storage dtype (so float64 references see the
// stored values), the CPU levels to run at, and poisoned outputs.
import { tensor, Tensor, DType, getCpuIsa, CpuIsa } from '../src';
import { setPoisonOutputs } from '../src/tensor';
import { hostRandom } from './helpers';

/** Levels up to the best this CPU has: generic, avx2, avx512. */
export function cpuLevels(): CpuIsa[] {
  const all: CpuIsa[] = ['generic', 'avx2', 'avx512'];
  return all.slice(0, all.indexOf(getCpuIsa()) + 1);
}

/** Every op output starts as NaN (int32: -2^31) for the whole file. */
export function poisonOutputs(): void {
  let was = false;
  beforeAll(() => {
    was = setPoisonOutputs(true);
  });
  afterAll(() => {
    setPoisonOutputs(was);
  });
}

/** A float tensor of seeded values in [-scale, scale), and those values as stored (float64). */
export function randTensor(shape: number[], seed: number, dtype: DType = 'float32', scale = 1): { t: Tensor; host: Float64Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = hostRandom(n, seed).map((x) => x * scale);
  const f = tensor(v, shape);
  const t = dtype === 'float32' ? f : f.cast(dtype);
  if (t !== f) f.dispose();
  return { t, host: Float64Array.from(t.toArray()) };
}

/** An int32 tensor. */
export function intTensor(values: ArrayLike<number>, shape: number[]): Tensor {
  return tensor(Int32Array.from(values), shape, { dtype: 'int32' });
}

/** Seeded integers in [0, n). */
export function randInts(count: number, n: number, seed: number): Int32Array {
  return Int32Array.from(hostRandom(count, seed), (x) => Math.min(n - 1, Math.floor(((x + 1) / 2) * n)));
}

/** Half an ulp of a 16-bit storage dtype, relative (the rounding of one output). */
export const HALF_ULP: Record<DType, number> = { float32: 2 ** -24, bfloat16: 2 ** -9, float16: 2 ** -12, int32: 0 };

export function disposeAll(...ts: (Tensor | null | undefined | Tensor[])[]): void {
  for (const t of ts) {
    if (Array.isArray(t)) t.forEach((x) => x.dispose());
    else t?.dispose();
  }
}
