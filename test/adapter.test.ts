// adapter.test.ts: LLM2CLIP's TextAdapter (src/models/adapter.ts) against the float64
// reference (test/ref/adapter-ref.ts), its gradients against finite differences, the
// parameter names and initialisation, and argument errors.
import { TextAdapter, F, Tensor, tensor, tidy, noGrad, zeros } from '../src';
import { expectCode, hostRandom, relErr } from './helpers';
import { randomAdapterWeights, adapterForwardRef } from './ref/adapter-ref';
import { RefWeights } from './ref/common';

/** The reference's weights as float32 tensors. */
function toTensors(w: RefWeights): Record<string, Tensor> {
  return Object.fromEntries(Object.entries(w).map(([k, t]) => [k, tensor(Float32Array.from(t.data), t.shape)]));
}

/** The reference's weights rounded to float32 (what the module holds). */
function asF32(w: RefWeights): RefWeights {
  return Object.fromEntries(Object.entries(w).map(([k, t]) => [k, { shape: t.shape, data: Float64Array.from(Float32Array.from(t.data)) }]));
}

function loadInto(m: TextAdapter, w: RefWeights): void {
  const t = toTensors(w);
  m.loadStateDict(t);
  for (const v of Object.values(t)) v.dispose();
}

describe('TextAdapter', () => {
  test.each([
    { d: 24, E: 10, k: 4, N: 5 },
    { d: 17, E: 33, k: 2, N: 3 },
    { d: 8, E: 8, k: 0, N: 4 },
  ])('forward vs the float64 reference (d $d, embedDim $E, $k blocks)', ({ d, E, k, N }) => {
    const m = new TextAdapter(d, E, { numBlocks: k, seed: 1 });
    const ref = randomAdapterWeights(d, E, k, 10 + d);
    // The same names as the reference (and the LLM2CLIP layout).
    expect(Object.keys(m.stateDict()).sort()).toEqual(Object.keys(ref).sort());
    loadInto(m, ref);
    // Raw embeddings of varied norms (the adapter normalises them) and one zero row.
    const x = hostRandom(N * d, 50 + d).map((v, i) => v * (1 + Math.floor(i / d) * 3));
    x.fill(0, 0, d);
    const want = adapterForwardRef(asF32(ref), Float64Array.from(x), d, k);
    const y = noGrad(() => m.forward(tensor(x, [N, d])));
    expect(y.shape).toEqual([N, E]);
    expect(relErr(y.toArray(), want)).toBeLessThan(1e-5);
    // Scaling a row does not change its output (the L2 normalisation is inside).
    const x2 = x.map((v) => v * 7.5);
    const y2 = noGrad(() => m.forward(tensor(x2, [N, d])));
    expect(relErr(y2.toArray(), y.toArray())).toBeLessThan(1e-5);
    y.dispose();
    y2.dispose();
    m.dispose();
  });

  test('gradients of the input and parameters vs finite differences', () => {
    const d = 12, E = 7, k = 2, N = 4;
    const m = new TextAdapter(d, E, { numBlocks: k, seed: 2 });
    loadInto(m, randomAdapterWeights(d, E, k, 3));
    const x = tensor(hostRandom(N * d, 4), [N, d]).setRequiresGrad();
    const r = tensor(hostRandom(N * E, 5), [N, E]);
    const build = () => F.sum(F.mul(m.forward(x), r));
    tidy(() => build().backward());
    const sd = m.stateDict();
    const probes: [Tensor, number][] = [];
    for (const name of ['blocks.0.norm.weight', 'blocks.0.fc1.weight', 'blocks.1.fc2.bias', 'blocks.1.fc1.bias', 'norm.bias', 'proj.weight', 'proj.bias'])
      for (let j = 0; j < 4; j++) probes.push([sd[name], (j * 37 + name.length) % sd[name].size]);
    for (let i = 0; i < N * d; i += 3) probes.push([x, i]);
    const analytic = probes.map(([t, i]) => {
      expect(t.grad).not.toBeNull();
      return t.grad!.toArray()[i];
    });
    const h = 1e-2;
    const loss = () => noGrad(() => tidy(() => build().item()));
    const numeric = probes.map(([t, i]) => {
      const v = t.view() as Float32Array;
      const x0 = v[i];
      v[i] = x0 + h;
      const fp = loss();
      v[i] = x0 - h;
      const fm = loss();
      v[i] = x0;
      return (fp - fm) / (2 * h);
    });
    // h = 1e-2: truncation O(h²) ~ 1e-4 relative; float32 rounding of the loss ~1e-6 / h.
    expect(relErr(analytic, numeric)).toBeLessThan(3e-3);
    // The input's gradient is orthogonal to each row (the normalisation's invariance).
    const gx = x.grad!.toArray(), xv = x.toArray();
    for (let n = 0; n < N; n++) {
      let dot = 0, g2 = 0;
      for (let j = 0; j < d; j++) {
        dot += gx[n * d + j] * xv[n * d + j];
        g2 += gx[n * d + j] ** 2;
      }
      expect(Math.abs(dot)).toBeLessThan(1e-5 * Math.sqrt(g2) * d);
    }
    expect(m.parameters().every((p) => p.grad !== null)).toBe(true);
    m.dispose();
    x.dispose();
    r.dispose();
  });

  test('defaults (4 blocks, hidden 2d), torch-like init, deterministic per seed, bfloat16', () => {
    const m = new TextAdapter(16, 6, { seed: 9 });
    expect(m.numBlocks).toBe(4);
    expect(m.hiddenDim).toBe(32);
    const sd = m.stateDict();
    expect(Object.keys(sd)).toHaveLength(4 * 6 + 4);
    expect(sd['blocks.3.fc1.weight'].shape).toEqual([32, 16]);
    expect(sd['blocks.3.fc2.weight'].shape).toEqual([16, 32]);
    expect(sd['proj.weight'].shape).toEqual([6, 16]);
    const w = Array.from(sd['blocks.0.fc1.weight'].toArray());
    expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(16));
    expect(Math.max(...w.map(Math.abs))).toBeGreaterThan(0.2);
    // Distinct tensors get distinct draws; the same seed gives the same adapter.
    expect(sd['blocks.0.fc1.weight'].toArray()[0]).not.toBe(sd['blocks.1.fc1.weight'].toArray()[0]);
    const m2 = new TextAdapter(16, 6, { seed: 9 });
    expect(relErr(m2.stateDict()['proj.weight'].toArray(), sd['proj.weight'].toArray())).toBe(0);
    const mb = new TextAdapter(16, 6, { seed: 9, dtype: 'bfloat16', hiddenMultiplier: 3 });
    expect(mb.stateDict()['blocks.0.fc1.weight'].shape).toEqual([48, 16]);
    const y = noGrad(() => mb.forward(tensor(hostRandom(32, 1), [2, 16])));
    expect(y.dtype).toBe('bfloat16');
    expect(Array.from(y.toArray()).every(Number.isFinite)).toBe(true);
    y.dispose();
    for (const a of [m, m2, mb]) a.dispose();
  });

  test('argument errors', () => {
    expectCode(() => new TextAdapter(0, 4), 'INVALID_ARGUMENT', /inDim/);
    expectCode(() => new TextAdapter(4, 2.5), 'INVALID_ARGUMENT', /embedDim/);
    expectCode(() => new TextAdapter(4, 4, { numBlocks: -1 }), 'INVALID_ARGUMENT', /numBlocks/);
    expectCode(() => new TextAdapter(4, 4, { hiddenMultiplier: 0 }), 'INVALID_ARGUMENT', /hiddenMultiplier/);
    expectCode(() => new TextAdapter(3, 4, { hiddenMultiplier: 0.5 }), 'INVALID_ARGUMENT', /hiddenMultiplier/);
    expectCode(() => new TextAdapter(4, 4, { dtype: 'int32' }), 'DTYPE_MISMATCH');
    const m = new TextAdapter(4, 3, { numBlocks: 1, seed: 1 });
    const z = zeros([2, 5]);
    expectCode(() => m.forward(z), 'SHAPE_MISMATCH', /x float32\[2,5\] must be \[N,4\]/);
    const z3 = zeros([2, 1, 4]);
    expectCode(() => m.forward(z3), 'SHAPE_MISMATCH', /\[N,4\]/);
    expectCode(() => m.forward([1, 2, 3, 4] as unknown as Tensor), 'INVALID_ARGUMENT', /x must be a Tensor/);
    const bad = { ...m.stateDict(), 'proj.weight': zeros([4, 4]) };
    expectCode(() => m.loadStateDict(bad), 'SHAPE_MISMATCH', /proj\.weight/);
    for (const t of [z, z3, bad['proj.weight']]) t.dispose();
    m.dispose();
  });
});
