// Layers: elementwise ops with broadcasting (add, sub, mul, scale), mulBackward,
// sumToShape, and the reductions sum / mean with their backward, against float64
// references, at the portable and the best CPU level, with poisoned outputs.
import { ops, tensor, DType, setCpuIsa, getCpuIsa, Tensor } from '../src';
import { setPoisonOutputs } from '../src/tensor';
import { expectCode, finiteDiff, hostRandom, relErr } from './helpers';
import { TOL32, bcastMap, close, disposeAll, host, isas, refSum, rnd, tolFor } from './layers-ref';

let seed = 1000;
const next = () => seed++;

beforeAll(() => setPoisonOutputs(true));
afterAll(() => setPoisonOutputs(false));

// [a shape, b shape] pairs: same shape, b along leading dims, size-1 dims both ways,
// scalars, and odd sizes.
const BCAST: [number[], number[]][] = [
  [[37, 65], [37, 65]],
  [[97, 40], [40]],
  [[1, 7], [1, 7]],
  [[3, 5, 7], [5, 7]],
  [[3, 5, 7], [3, 1, 7]],
  [[3, 1, 7], [1, 5, 1]],
  [[97, 128], [97, 1]],
  [[37, 1], [1, 65]],
  [[7, 40], []],
  [[], [7, 40]],
  [[7, 40], [1]],
  [[2, 3, 4, 5], [3, 1, 5]],
  [[0, 7], [7]],
  [[5, 0], [1]],
];

function refBinary(op: string, ah: Float64Array, aShape: number[], bh: Float64Array, bShape: number[], outShape: number[]): Float64Array {
  const ma = bcastMap(outShape, aShape), mb = bcastMap(outShape, bShape);
  const out = new Float64Array(ma.length);
  for (let i = 0; i < out.length; i++) {
    const x = ah[ma[i]], y = bh[mb[i]];
    out[i] = op === 'add' ? x + y : op === 'sub' ? x - y : x * y;
  }
  return out;
}

function bshape(a: number[], b: number[]): number[] {
  const n = Math.max(a.length, b.length), out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1, y = b[b.length - n + i] ?? 1;
    out.push(x === 1 ? y : x);
  }
  return out;
}

function checkBinary(op: 'add' | 'sub' | 'mul', aShape: number[], bShape: number[], dtype: DType = 'float32') {
  const a = rnd(aShape, next(), dtype), b = rnd(bShape, next(), dtype);
  const y = ops[op](a.t, b.t);
  const outShape = bshape(aShape, bShape);
  expect(y.shape).toEqual(outShape);
  expect(y.dtype).toBe(dtype);
  close(host(y), refBinary(op, a.h, aShape, b.h, bShape, outShape), tolFor(dtype), `${op} ${JSON.stringify([aShape, bShape])} ${dtype}`);
  disposeAll(a.t, b.t, y);
}

/** Reference of mul's backward: dy·b and dy·a summed to each operand's shape. */
function refMulBackward(dy: Float64Array, outShape: number[], a: Float64Array, aShape: number[], b: Float64Array, bShape: number[]) {
  const ma = bcastMap(outShape, aShape), mb = bcastMap(outShape, bShape);
  const da = new Float64Array(a.length), db = new Float64Array(b.length);
  for (let i = 0; i < dy.length; i++) {
    da[ma[i]] += dy[i] * b[mb[i]];
    db[mb[i]] += dy[i] * a[ma[i]];
  }
  return { da, db };
}

describe.each(isas())('elementwise at %s', (isa) => {
  const best = getCpuIsa();
  beforeAll(() => setCpuIsa(isa));
  afterAll(() => setCpuIsa(best));

  for (const op of ['add', 'sub', 'mul'] as const)
    test(`${op} with broadcasting`, () => {
      for (const [as, bs] of BCAST) checkBinary(op, as, bs);
    });

  test('add, sub, mul: large (past one parallel chunk) and [N,H] + [H]', () => {
    checkBinary('add', [300, 257], [300, 257]);
    checkBinary('mul', [513, 129], [129]);
    checkBinary('sub', [129, 513], [129, 1]);
  });

  test('scale', () => {
    for (const shape of [[1], [37, 7], [97, 65], [0], [], [5000, 13]]) {
      const x = rnd(shape, next());
      const y = ops.scale(x.t, -1.75);
      expect(y.shape).toEqual(shape);
      close(host(y), x.h.map((v) => -1.75 * v), TOL32, `scale ${shape}`);
      disposeAll(x.t, y);
    }
  });

  test('mulBackward: gradients reduced to each operand (broadcast cases)', () => {
    for (const [as, bs] of BCAST) {
      const a = rnd(as, next()), b = rnd(bs, next());
      const outShape = bshape(as, bs);
      const dy = rnd(outShape, next());
      const { da, db } = ops.mulBackward(dy.t, a.t, b.t);
      expect(da.shape).toEqual(as);
      expect(db.shape).toEqual(bs);
      const ref = refMulBackward(dy.h, outShape, a.h, as, b.h, bs);
      close(host(da), ref.da, TOL32, `mulBackward da ${JSON.stringify([as, bs])}`);
      close(host(db), ref.db, TOL32, `mulBackward db ${JSON.stringify([as, bs])}`);
      disposeAll(a.t, b.t, dy.t, da, db);
    }
  });

  test('sumToShape: the add / sub broadcast gradient', () => {
    const cases: [number[], number[]][] = [
      [[97, 40], [40]], [[97, 40], [1, 40]], [[97, 40], [97, 1]], [[3, 5, 7], [5, 1]], [[3, 5, 7], [3, 1, 7]],
      [[3, 5, 7], []], [[3, 5, 7], [1]], [[37, 65], [37, 65]], [[4000, 7], [7]], [[7, 9000], [7, 1]], [[2, 20000], [1]],
    ];
    for (const [ds, ts] of cases) {
      const dy = rnd(ds, next());
      const g = ops.sumToShape(dy.t, ts);
      expect(g.shape).toEqual(ts);
      const off = ds.length - ts.length;
      const dims = ds.map((_, d) => d).filter((d) => d < off || ts[d - off] === 1);
      close(host(g), refSum(dy.h, ds, dims), TOL32, `sumToShape ${JSON.stringify([ds, ts])}`);
      disposeAll(dy.t, g);
    }
  });

  // sum / mean over many dim patterns (kept / reduced inner dim, several groups, negative dims).
  const REDUCE: [number[], number | number[] | undefined][] = [
    [[37, 65], 1], [[37, 65], 0], [[37, 65], -1], [[37, 65], undefined], [[97, 7], [0, 1]],
    [[3, 5, 7], [0, 2]], [[3, 5, 7], 1], [[3, 5, 7], [-3, -2]], [[2, 3, 4, 5], [1, 3]], [[2, 3, 4, 5], [0, 2]],
    [[1, 128], 0], [[128, 1], 1], [[5], 0], [[1], undefined], [[40, 1, 7], [1]],
  ];
  test('sum and mean vs float64 (dims, negative dims, keepDim)', () => {
    for (const [shape, dim] of REDUCE)
      for (const keepDim of [false, true]) {
        const x = rnd(shape, next());
        const nd = shape.length;
        const dims = dim === undefined ? shape.map((_, i) => i) : (typeof dim === 'number' ? [dim] : dim).map((d) => (d < 0 ? d + nd : d));
        const ref = refSum(x.h, shape, dims);
        const count = dims.reduce((c, d) => c * shape[d], 1);
        const s = ops.sum(x.t, { dim, keepDim });
        const m = ops.mean(x.t, { dim, keepDim });
        const want = keepDim ? shape.map((v, d) => (dims.includes(d) ? 1 : v)) : shape.filter((_, d) => !dims.includes(d));
        expect(s.shape).toEqual(want);
        expect(m.shape).toEqual(want);
        close(host(s), ref, TOL32, `sum ${JSON.stringify([shape, dim, keepDim])}`);
        close(host(m), ref.map((v) => v / count), TOL32, `mean ${JSON.stringify([shape, dim, keepDim])}`);
        // Backward: dy broadcast back (/count for the mean).
        const dy = rnd(want, next());
        const gs = ops.sumBackward(dy.t, shape, { dim, keepDim });
        const gm = ops.meanBackward(dy.t, shape, { dim, keepDim });
        const map = bcastMap(shape, shape.map((v, d) => (dims.includes(d) ? 1 : v)));
        const refG = Float64Array.from(map, (j) => dy.h[j]);
        close(host(gs), refG, TOL32, `sumBackward ${JSON.stringify([shape, dim])}`);
        close(host(gm), refG.map((v) => v / count), TOL32, `meanBackward ${JSON.stringify([shape, dim])}`);
        disposeAll(x.t, s, m, dy.t, gs, gm);
      }
  });

  test('large sums stay accurate (pairwise): 2^22 elements, one and several outputs', () => {
    const n = 1 << 22;
    const v = new Float32Array(n);
    // Values with a big common offset: naive float32 accumulation drifts by ~n·u·|sum|.
    const r = hostRandom(n, next());
    for (let i = 0; i < n; i++) v[i] = 1 + 0.5 * r[i];
    const x = tensor(v, [n]);
    let ref = 0;
    for (let i = 0; i < n; i++) ref += v[i];
    const s = ops.sum(x);
    expect(Math.abs(s.item() - ref) / ref).toBeLessThan(2e-6);
    const m = ops.mean(x.reshape([4, n / 4]), { dim: 1 });
    const c = ops.sum(x.reshape([1024, 4096]), { dim: 0 }); // innermost kept, 1024 rows each
    const refC = new Float64Array(4096), refM = new Float64Array(4);
    for (let i = 0; i < n; i++) {
      refC[i & 4095] += v[i];
      refM[i >> 20] += v[i] / (n / 4);
    }
    close(host(c), refC, 2e-6, 'column sums');
    close(host(m), refM, 2e-6, 'row means');
    disposeAll(x, s, m, c);
  });

  test('float64 gradient of mul checked by finite differences (small case)', () => {
    const as = [3, 1, 4], bs = [5, 1];
    const outShape = bshape(as, bs);
    const a = Float64Array.from(hostRandom(12, next())), b = Float64Array.from(hostRandom(5, next()));
    const g = Float64Array.from(hostRandom(60, next()));
    const ref = refMulBackward(g, outShape, a, as, b, bs);
    const fa = finiteDiff((x) => refBinary('mul', x, as, b, bs, outShape).reduce((s, v, i) => s + v * g[i], 0), a);
    const fb = finiteDiff((x) => refBinary('mul', a, as, x, bs, outShape).reduce((s, v, i) => s + v * g[i], 0), b);
    expect(relErr(ref.da, fa)).toBeLessThan(1e-7);
    expect(relErr(ref.db, fb)).toBeLessThan(1e-7);
  });
});

describe('float64 gradients of add / sub / sum / mean match finite differences', () => {
  test('add and sub with broadcast: the gradient of the broadcast operand is sumToShape', () => {
    const as = [4, 3, 5], bs = [3, 1];
    const a = Float64Array.from(hostRandom(60, 31)), b = Float64Array.from(hostRandom(3, 32)), g = Float64Array.from(hostRandom(60, 33));
    for (const op of ['add', 'sub']) {
      const fb = finiteDiff((x) => refBinary(op, a, as, x, bs, as).reduce((s, v, i) => s + v * g[i], 0), b);
      const want = refSum(g, as, [0, 2]).map((v) => (op === 'add' ? v : -v));
      expect(relErr(want, fb)).toBeLessThan(1e-7);
    }
  });
  test('sum and mean backward (broadcast of dy, / count)', () => {
    const shape = [3, 4, 5], x = Float64Array.from(hostRandom(60, 34)), dims = [0, 2];
    const g = Float64Array.from(hostRandom(4, 35));
    const map = bcastMap(shape, [1, 4, 1]);
    const fd = finiteDiff((t) => refSum(t, shape, dims).reduce((s, v, i) => s + (v / 15) * g[i], 0), x);
    expect(relErr(Float64Array.from(map, (j) => g[j] / 15), fd)).toBeLessThan(1e-7);
  });
});

describe('elementwise with bfloat16 / float16 storage', () => {
  for (const dtype of ['bfloat16', 'float16'] as DType[])
    test(dtype, () => {
      for (const [as, bs] of [[[97, 40], [40]], [[37, 65], [37, 65]], [[3, 1, 7], [1, 5, 1]]] as [number[], number[]][]) {
        checkBinary('add', as, bs, dtype);
        checkBinary('mul', as, bs, dtype);
        const a = rnd(as, next(), dtype), b = rnd(bs, next(), dtype), outShape = bshape(as, bs);
        const dy = rnd(outShape, next(), dtype);
        const { da, db } = ops.mulBackward(dy.t, a.t, b.t);
        expect(da.dtype).toBe(dtype);
        const ref = refMulBackward(dy.h, outShape, a.h, as, b.h, bs);
        close(host(da), ref.da, tolFor(dtype), `${dtype} mulBackward da`);
        close(host(db), ref.db, tolFor(dtype), `${dtype} mulBackward db`);
        const s = ops.sum(dy.t, { dim: 0 });
        expect(s.dtype).toBe(dtype);
        close(host(s), refSum(dy.h, outShape, [0]), tolFor(dtype), `${dtype} sum`);
        disposeAll(a.t, b.t, dy.t, da, db, s);
      }
      const x = rnd([37, 65], next(), dtype);
      const y = ops.scale(x.t, 3);
      close(host(y), x.h.map((v) => 3 * v), tolFor(dtype), `${dtype} scale`);
      disposeAll(x.t, y);
    });
});

describe('elementwise edge cases', () => {
  test('mean of an empty dim is NaN, sum is 0; empty results are fine', () => {
    const x = tensor(new Float32Array(0), [3, 0]);
    expect(Array.from(ops.sum(x, { dim: 1 }).toArray())).toEqual([0, 0, 0]);
    expect(Array.from(ops.mean(x, { dim: 1 }).toArray()).every(Number.isNaN)).toBe(true);
    expect(ops.sum(x, { dim: 0 }).shape).toEqual([0]);
    expect(ops.sumBackward(ops.sum(x, { dim: 0 }), [3, 0], { dim: 0 }).shape).toEqual([3, 0]);
  });

  test('dim of a 0-d tensor, dim = [] reduces nothing', () => {
    const x = tensor([2.5], []);
    expect(ops.sum(x).item()).toBe(2.5);
    expect(ops.sum(x, { dim: 0 }).item()).toBe(2.5);
    const y = tensor([1, 2, 3, 4], [2, 2]);
    expect(Array.from(ops.mean(y, { dim: [] }).toArray())).toEqual([1, 2, 3, 4]);
  });

  test('NaN propagates', () => {
    const a = tensor([1, NaN, 3], [3]), b = tensor([1], [1]);
    expect(Number.isNaN(ops.add(a, b).toArray()[1])).toBe(true);
    expect(Number.isNaN(ops.sum(a).item())).toBe(true);
  });
});

describe('elementwise errors', () => {
  const f = (shape: number[], dtype: DType = 'float32') => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, { dtype });
  test('shapes that do not broadcast', () => {
    expectCode(() => ops.add(f([3, 4]), f([5])), 'SHAPE_MISMATCH', /add: a float32\[3,4\] and b float32\[5\] do not broadcast/);
    expectCode(() => ops.mul(f([2, 3, 4]), f([3, 3, 4])), 'SHAPE_MISMATCH');
    expectCode(() => ops.mulBackward(f([3, 5]), f([3, 4]), f([4])), 'SHAPE_MISMATCH', /mulBackward: dy/);
    expectCode(() => ops.sumToShape(f([3, 4]), [4, 4]), 'SHAPE_MISMATCH', /sumToShape/);
    expectCode(() => ops.sumToShape(f([4]), [3, 4]), 'SHAPE_MISMATCH');
    expectCode(() => ops.sumBackward(f([3]), [3, 4], { dim: 0 }), 'SHAPE_MISMATCH', /sumBackward: dy/);
  });
  test('dtypes', () => {
    expectCode(() => ops.add(f([3]), f([3], 'bfloat16')), 'DTYPE_MISMATCH', /add/);
    expectCode(() => ops.sub(f([3], 'int32'), f([3], 'int32')), 'DTYPE_MISMATCH', /int32/);
    expectCode(() => ops.sum(f([3], 'int32')), 'DTYPE_MISMATCH', /sum: x int32\[3\]/);
    expectCode(() => ops.scale(f([3], 'int32'), 2), 'DTYPE_MISMATCH');
  });
  test('arguments', () => {
    expectCode(() => ops.scale(f([3]), NaN), 'INVALID_ARGUMENT', /scale: s/);
    expectCode(() => ops.sum(f([3, 4]), { dim: 2 }), 'INVALID_ARGUMENT', /dim 2 is out of range/);
    expectCode(() => ops.sum(f([3, 4]), { dim: -3 }), 'INVALID_ARGUMENT');
    expectCode(() => ops.mean(f([3, 4]), { dim: [0, -2] }), 'INVALID_ARGUMENT', /twice/);
    expectCode(() => ops.sum(f([3, 4]), { dim: 0.5 }), 'INVALID_ARGUMENT');
    expectCode(() => ops.add(f([3]), 3 as unknown as Tensor), 'INVALID_ARGUMENT', /b is not a Tensor/);
    const d = f([3]);
    d.dispose();
    expectCode(() => ops.add(d, f([3])), 'DISPOSED');
  });
});
