// ops.matmul against a float64 reference: odd sizes (1, 7, 97, 1025), all transposes,
// batched with broadcast, bfloat16 / float16 inputs and outputs, every CPU SIMD level.
import { ops, tensor, Tensor, DType, getCpuIsa, setCpuIsa, CpuIsa, zeros } from '../src';
import { expectCode, firstBad, hostRandom, refMatmul } from './helpers';

// float32 accumulation of K products: |error| <= K·u·Σ|a||b| (u = 2^-24) bounds any
// summation order; it is far below the O(1) relative error of a wrong element.
const U32 = 2 ** -24;
// Rounding the result to a 16-bit output adds half an ulp of the result: 2^-9 (bf16), 2^-12 (f16).
const OUT_ROUND: Record<DType, number> = { float32: 0, bfloat16: 2 ** -8, float16: 2 ** -11, int32: 0 };

function roundTo(values: Float32Array, dtype: DType): Float32Array {
  if (dtype === 'float32') return values;
  return tensor(values, [values.length]).cast(dtype).toArray() as Float32Array;
}

function check(M: number, N: number, K: number, o: { transA?: boolean; transB?: boolean; dtype?: DType; outDtype?: DType; batch?: [number, number] } = {}) {
  const dtype = o.dtype ?? 'float32';
  const outDtype = o.outDtype ?? dtype;
  const [ba, bb] = o.batch ?? [0, 0];
  const batch = Math.max(ba, bb, 1);
  const aShape = o.transA ? [K, M] : [M, K], bShape = o.transB ? [N, K] : [K, N];
  // Inputs rounded to the input dtype first, so the reference sees the same values.
  const aHost = roundTo(hostRandom(Math.max(ba, 1) * M * K, M * 131 + K), dtype);
  const bHost = roundTo(hostRandom(Math.max(bb, 1) * K * N, N * 71 + K + 1), dtype);
  const a = tensor(aHost, ba ? [ba, ...aShape] : aShape, { dtype });
  const b = tensor(bHost, bb ? [bb, ...bShape] : bShape, { dtype });
  const c = ops.matmul(a, b, { transA: o.transA, transB: o.transB, outDtype });
  expect(c.shape).toEqual(ba || bb ? [batch, M, N] : [M, N]);
  expect(c.dtype).toBe(outDtype);
  const got = c.toArray();
  for (let i = 0; i < batch; i++) {
    const as = ba > 1 ? i * M * K : 0, bs = bb > 1 ? i * K * N : 0;
    const { c: want, mag } = refMatmul(aHost.subarray(as, as + M * K), bHost.subarray(bs, bs + K * N), M, N, K, !!o.transA, !!o.transB);
    const g = got.subarray(i * M * N, (i + 1) * M * N);
    const bad = firstBad(g, want, (j) => K * U32 * mag[j] + OUT_ROUND[outDtype] * Math.abs(want[j]) + 1e-30);
    if (bad >= 0)
      throw new Error(`matmul ${M}x${N}x${K} ${JSON.stringify(o)} batch ${i}: element ${bad} = ${g[bad]}, want ${want[bad]}`);
  }
  a.dispose(); b.dispose(); c.dispose();
}

const SIZES: [number, number, number][] = [
  [1, 1, 1], [7, 1, 97], [1, 7, 1], [97, 7, 1025], [1025, 97, 7], [7, 1025, 97], [97, 97, 97], [33, 65, 1025],
];

describe('matmul vs float64 reference', () => {
  const isas: CpuIsa[] = (['generic', 'avx2', 'avx512'] as CpuIsa[]).slice(0, ['generic', 'avx2', 'avx512'].indexOf(getCpuIsa()) + 1);
  const best = getCpuIsa();
  afterAll(() => setCpuIsa(best));
  for (const isa of isas) {
    describe(isa, () => {
      beforeAll(() => setCpuIsa(isa));
      for (const [M, N, K] of SIZES)
        for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]])
          test(`${M}x${N}x${K} transA=${transA} transB=${transB}`, () => check(M, N, K, { transA, transB }));
      test('1025 x 1025 x 97 (past every cache block)', () => check(1025, 1025, 97));
      test('batched with broadcast', () => {
        check(7, 97, 33, { batch: [3, 3] });
        check(7, 97, 33, { batch: [3, 1], transB: true });
        check(97, 7, 33, { batch: [1, 4], transA: true });
        check(5, 6, 7, { batch: [3, 0] });
        check(5, 6, 7, { batch: [0, 2] });
      });
      for (const dtype of ['bfloat16', 'float16'] as DType[])
        test(`${dtype} inputs, ${dtype} and float32 outputs`, () => {
          check(97, 33, 1025, { dtype });
          check(33, 97, 65, { dtype, outDtype: 'float32', transA: true, transB: true });
          check(7, 5, 3, { dtype, batch: [2, 2] });
        });
    });
  }

  test('K = 0 gives zeros; M or N = 0 gives an empty result', () => {
    const c = ops.matmul(zeros([3, 0]), zeros([0, 4]));
    expect(Array.from(c.toArray())).toEqual(new Array(12).fill(0));
    expect(ops.matmul(zeros([0, 5]), zeros([5, 4])).shape).toEqual([0, 4]);
  });

  test('NaN and Inf propagate', () => {
    const c = ops.matmul(tensor([NaN, 1], [1, 2]), tensor([1, 1], [2, 1])).toArray();
    expect(c[0]).toBeNaN();
    const d = ops.matmul(tensor([Infinity, 1], [1, 2]), tensor([1, 1], [2, 1])).toArray();
    expect(d[0]).toBe(Infinity);
  });
});

describe('matmul argument errors', () => {
  const a = zeros([2, 3]);
  test('inner dimension mismatch names both shapes', () => {
    expectCode(() => ops.matmul(a, zeros([2, 3])), 'SHAPE_MISMATCH', /\[2,3\].*\[2,3\]/);
    ops.matmul(a, zeros([2, 3]), { transB: true }).dispose();
  });
  test('ranks, batches, dtypes', () => {
    expectCode(() => ops.matmul(zeros([3]), a), 'SHAPE_MISMATCH', /2-D or 3-D/);
    expectCode(() => ops.matmul(zeros([2, 2, 3]), zeros([3, 3, 4])), 'SHAPE_MISMATCH', /batch/);
    expectCode(() => ops.matmul(a, zeros([3, 2], { dtype: 'bfloat16' })), 'DTYPE_MISMATCH', /bfloat16/);
    expectCode(() => ops.matmul(zeros([2, 3], { dtype: 'int32' }), zeros([3, 2], { dtype: 'int32' })), 'DTYPE_MISMATCH', /int32/);
    expectCode(() => ops.matmul(a, zeros([3, 2]), { outDtype: 'float16' }), 'DTYPE_MISMATCH', /outDtype/);
    expectCode(() => ops.matmul(a, 'x' as unknown as Tensor), 'INVALID_ARGUMENT', /b is not a Tensor/);
  });
});
