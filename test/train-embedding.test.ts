// ops.embedding / embeddingBackward against index math and a float64 scatter-add; the
// analytic gradient against finite differences; repeated ids, paddingIdx, 16-bit storage,
// every CPU level, determinism, poisoned outputs, error codes.
import { ops, setCpuIsa, getCpuIsa, DType, Tensor } from '../src';
import { describeGpu, expectClose, expectCode, finiteDiff, hostRandom } from './helpers';
import { cpuLevels, disposeAll, intTensor, poisonOutputs, randInts, randTensor } from './train-util';

poisonOutputs();

/** float64 dW = scatter-add of dy rows by id (row pad zero). */
function refScatter(dy: ArrayLike<number>, ids: ArrayLike<number>, V: number, H: number, pad = -1): Float64Array {
  const dw = new Float64Array(V * H);
  for (let p = 0; p < ids.length; p++) {
    if (ids[p] === pad) continue;
    for (let k = 0; k < H; k++) dw[ids[p] * H + k] += dy[p * H + k];
  }
  return dw;
}

describe('embedding forward', () => {
  for (const dtype of ['float32', 'bfloat16', 'float16'] as DType[])
    test(`${dtype}: rows copied exactly, ids of rank 1, 2, 3, repeated ids`, () => {
      const V = 37, H = 40;
      const w = randTensor([V, H], 1, dtype);
      for (const shape of [[7], [3, 5], [2, 3, 4], [1]]) {
        const n = shape.reduce((a, b) => a * b, 1);
        const ids = randInts(n, V, n + 2);
        ids[0] = V - 1;
        if (n > 1) ids[n - 1] = ids[0];
        const t = intTensor(ids, shape);
        const out = ops.embedding(w.t, t);
        expect(out.shape).toEqual([...shape, H]);
        expect(out.dtype).toBe(dtype);
        const got = out.toArray();
        for (let p = 0; p < n; p++)
          for (let k = 0; k < H; k++) if (got[p * H + k] !== w.host[ids[p] * H + k]) throw new Error(`${dtype} ${shape}: out[${p},${k}]`);
        disposeAll(t, out);
      }
      w.t.dispose();
    });
  test('empty ids and H = 0', () => {
    const w = randTensor([5, 3], 2);
    const e = ops.embedding(w.t, intTensor([], [0, 2]));
    expect(e.shape).toEqual([0, 2, 3]);
    const z = ops.embedding(randTensor([5, 0], 3).t, intTensor([1, 4], [2]));
    expect(z.shape).toEqual([2, 0]);
    disposeAll(w.t, e, z);
  });
});

describe('embedding backward vs float64 scatter-add', () => {
  test('the analytic gradient (scatter-add) matches finite differences of the forward', () => {
    const V = 5, H = 3, ids = [1, 3, 1, 1, 0];
    const dy = Float64Array.from(hostRandom(ids.length * H, 4));
    const W = Float64Array.from(hostRandom(V * H, 5));
    // f(W) = Σ dy · embedding(W, ids), with row 3 the padding row (no gradient).
    const f = (w: Float64Array) => {
      let s = 0;
      ids.forEach((id, p) => {
        if (id === 3) return;
        for (let k = 0; k < H; k++) s += dy[p * H + k] * w[id * H + k];
      });
      return s;
    };
    expectClose(refScatter(dy, ids, V, H, 3), finiteDiff(f, W), 1e-8, 'dW');
  });

  const best = getCpuIsa();
  afterAll(() => setCpuIsa(best));
  for (const isa of cpuLevels())
    describe(isa, () => {
      beforeAll(() => setCpuIsa(isa));
      for (const [V, H, shape, pad] of [
        [37, 40, [97], undefined],
        [1000, 65, [3, 37], 5],
        [1, 7, [4, 2], undefined],
        [50, 7, [2, 3, 5], -1],
      ] as [number, number, number[], number | undefined][])
        test(`V ${V}, H ${H}, ids ${JSON.stringify(shape)}, paddingIdx ${pad}`, () => {
          const n = shape.reduce((a, b) => a * b, 1);
          const ids = randInts(n, Math.min(V, 11), V + H); // few distinct ids: many repeats
          if (pad !== undefined) ids[1] = pad < 0 ? V + pad : pad;
          const t = intTensor(ids, shape);
          for (const dtype of ['float32', 'bfloat16', 'float16'] as DType[]) {
            const dy = randTensor([...shape, H], V + H + 1, dtype);
            const dw = ops.embeddingBackward(dy.t, t, V, { paddingIdx: pad });
            expect(dw.shape).toEqual([V, H]);
            expect(dw.dtype).toBe('float32');
            // dy holds the stored values; float32 sums of a few rows: 1e-5 for every dtype.
            expectClose(dw.toArray(), refScatter(dy.host, ids, V, H, pad === undefined ? -1 : pad < 0 ? V + pad : pad), 1e-5, `${dtype} dW`);
            disposeAll(dy.t, dw);
          }
          t.dispose();
        });
      test('one id repeated 5000 times, 4000 rows never used (deterministic bits)', () => {
        const V = 4001, H = 33, n = 5000;
        const ids = new Int32Array(n).fill(17);
        ids[7] = 4000;
        const t = intTensor(ids, [n]);
        const dy = randTensor([n, H], 6);
        const a = ops.embeddingBackward(dy.t, t, V), b = ops.embeddingBackward(dy.t, t, V);
        expectClose(a.toArray(), refScatter(dy.host, ids, V, H), 1e-5, 'dW');
        expect(Buffer.from(a.toArray().buffer).equals(Buffer.from(b.toArray().buffer))).toBe(true);
        disposeAll(t, dy.t, a, b);
      });
    });
});

describe('embedding errors', () => {
  const w = randTensor([10, 4], 7).t;
  afterAll(() => w.dispose());
  test('ids out of range name the first bad id and its position', () => {
    expectCode(() => ops.embedding(w, intTensor([1, 2, 3, 10, -1, 11], [2, 3])), 'INVALID_ARGUMENT', /ids\[1,0\] = 10 is outside \[0, 10\)/);
    expectCode(() => ops.embedding(w, intTensor([1, -3], [2])), 'INVALID_ARGUMENT', /ids\[1\] = -3/);
    const dy = randTensor([2, 4], 8).t;
    expectCode(() => ops.embeddingBackward(dy, intTensor([1, 12], [2]), 10), 'INVALID_ARGUMENT', /ids\[1\] = 12/);
    dy.dispose();
  });
  test('dtypes, shapes, options', () => {
    expectCode(() => ops.embedding(w, randTensor([3], 9).t), 'DTYPE_MISMATCH', /ids float32\[3\] must be int32/);
    expectCode(() => ops.embedding(randTensor([10], 10).t, intTensor([1], [1])), 'SHAPE_MISMATCH', /weight/);
    expectCode(() => ops.embedding(intTensor([1, 2], [2, 1]), intTensor([1], [1])), 'DTYPE_MISMATCH', /weight/);
    const ids = intTensor([1, 2, 3], [3]);
    expectCode(() => ops.embeddingBackward(randTensor([3, 2, 4], 11).t, ids, 10), 'SHAPE_MISMATCH', /dy/);
    expectCode(() => ops.embeddingBackward(randTensor([2, 4], 12).t, ids, 10), 'SHAPE_MISMATCH', /dy/);
    expectCode(() => ops.embeddingBackward(randTensor([3, 4], 13).t, ids, 10, { paddingIdx: 10 }), 'INVALID_ARGUMENT', /paddingIdx/);
    expectCode(() => ops.embeddingBackward(randTensor([3, 4], 14).t, ids, 2.5), 'INVALID_ARGUMENT', /numEmbeddings/);
    expectCode(() => ops.embedding(w, null as unknown as Tensor), 'INVALID_ARGUMENT', /ids is not a Tensor/);
    ids.dispose();
  });
});

describeGpu('embedding on CUDA tensors', () => {
  test('forward bit for bit, backward value for value (same sums in the same order), as the CPU', () => {
    for (const dtype of ['float32', 'bfloat16', 'float16'] as DType[]) {
      const V = 37, H = 65;
      const w = randTensor([V, H], 41, dtype), dy = randTensor([3, 33, H], 42, dtype);
      const ids = intTensor(randInts(99, V, 43), [3, 33]);
      const [wg, dyg, ig] = [w.t, dy.t, ids].map((t) => t.to('cuda'));
      const out = ops.embedding(w.t, ids), og = ops.embedding(wg, ig);
      expect(og.device).toBe('cuda:0');
      expect(Array.from(og.toArray())).toEqual(Array.from(out.toArray()));
      for (const paddingIdx of [null, 5]) {
        const dw = ops.embeddingBackward(dy.t, ids, V, { paddingIdx });
        const dwg = ops.embeddingBackward(dyg, ig, V, { paddingIdx });
        expect(Array.from(dwg.toArray())).toEqual(Array.from(dw.toArray()));
        disposeAll(dw, dwg);
      }
      disposeAll(w.t, dy.t, ids, wg, dyg, ig, out, og);
    }
  });
  test('a bad id is INVALID_ARGUMENT naming it, as on the CPU; mixed devices are DEVICE_MISMATCH', () => {
    const w = randTensor([5, 3], 44).t.to('cuda');
    const ids = intTensor([1, 4, 7, -1], [2, 2]).to('cuda');
    expectCode(() => ops.embedding(w, ids), 'INVALID_ARGUMENT', /ids\[1,0\] = 7 is outside \[0, 5\)/);
    expectCode(() => ops.embedding(w, intTensor([1], [1])), 'DEVICE_MISMATCH');
    disposeAll(w, ids);
  });
});
