// ops.adamw / ops.gradNorm against a float64 reference of PyTorch's AdamW (+ clip_grad_norm_)
// over several steps: float32 params, bfloat16 / float16 params with float32 master weights,
// decay mask, clipping active and inactive, non-finite gradients skipped, every CPU level,
// error codes.
import { ops, setCpuIsa, getCpuIsa, DType, Tensor, tensor, zeros } from '../src';
import { describeGpu, expectClose, expectCode, relErr } from './helpers';
import { disposeAll, poisonOutputs, randTensor } from './train-util';

poisonOutputs();

interface Hyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  maxGradNorm?: number;
}

interface State {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

/** torch.nn.utils.clip_grad_norm_ then torch.optim.AdamW.step(), in float64. */
function refStep(st: State[], grads: Float64Array[], h: Hyper, decay: boolean[], step: number): { norm: number; skipped: boolean } {
  let sq = 0;
  for (const g of grads) for (const x of g) sq += x * x;
  const norm = Math.sqrt(sq);
  if (!Number.isFinite(norm)) return { norm, skipped: true };
  const clip = h.maxGradNorm ? Math.min(1, h.maxGradNorm / (norm + 1e-6)) : 1;
  const bc1 = 1 - h.beta1 ** step, bc2 = 1 - h.beta2 ** step;
  st.forEach((s, i) => {
    for (let j = 0; j < s.p.length; j++) {
      const g = grads[i][j] * clip;
      if (decay[i]) s.p[j] *= 1 - h.lr * h.weightDecay;
      s.m[j] = h.beta1 * s.m[j] + (1 - h.beta1) * g;
      s.v[j] = h.beta2 * s.v[j] + (1 - h.beta2) * g * g;
      s.p[j] -= (h.lr / bc1) * s.m[j] / (Math.sqrt(s.v[j]) / Math.sqrt(bc2) + h.eps);
    }
  });
  return { norm, skipped: false };
}

const SIZES = [[7], [40, 65], [70001]]; // the last spans two 65536-element work units

function bits(t: Tensor): Buffer {
  return Buffer.from(t.toArray().buffer);
}

let seed = 5000;
function runSteps(o: { pdtype?: DType; gdtype?: DType; hyper: Partial<Hyper>; decay?: boolean[]; steps?: number; clipFactor?: number }) {
  const pdtype = o.pdtype ?? 'float32', gdtype = o.gdtype ?? 'float32';
  const h: Hyper = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, ...o.hyper };
  const decay = o.decay ?? SIZES.map(() => true);
  const useMaster = pdtype !== 'float32';
  const init = SIZES.map((s) => randTensor(s, seed++));
  const master = useMaster ? init.map((x) => x.t) : null;
  const params = useMaster ? init.map((x) => x.t.cast(pdtype)) : init.map((x) => x.t);
  const expAvg = SIZES.map((s) => zeros(s)), expAvgSq = SIZES.map((s) => zeros(s));
  const st: State[] = init.map((x) => ({ p: Float64Array.from(x.host), m: new Float64Array(x.host.length), v: new Float64Array(x.host.length) }));
  for (let step = 1; step <= (o.steps ?? 4); step++) {
    const gs = SIZES.map((s, i) => randTensor(s, seed++, gdtype, 0.1 * (i + 1) * step));
    const hyper = { ...h };
    if (o.clipFactor) {
      // Clip relative to this step's norm (clipFactor < 1: active, > 1: inactive).
      let sq = 0;
      for (const g of gs) for (const x of g.host) sq += x * x;
      hyper.maxGradNorm = o.clipFactor * Math.sqrt(sq);
    }
    const ref = refStep(st, gs.map((g) => g.host), hyper, decay, step);
    const r = ops.adamw(
      { params, grads: gs.map((g) => g.t), expAvg, expAvgSq, master },
      { ...hyper, step, decay: o.decay },
    );
    expect(r.skipped).toBe(false);
    expect(Math.abs(r.gradNorm - ref.norm) / ref.norm).toBeLessThan(1e-12);
    st.forEach((s, i) => {
      const what = `${JSON.stringify(o)} step ${step} param ${i}`;
      // float32 state updated in float32 arithmetic from stored values: 1e-5 after each step.
      expectClose((master ? master[i] : params[i]).toArray(), s.p, 1e-5, `${what} p`);
      expectClose(expAvg[i].toArray(), s.m, 1e-5, `${what} m`);
      expectClose(expAvgSq[i].toArray(), s.v, 1e-5, `${what} v`);
      if (master) {
        // The 16-bit parameter is exactly the master rounded once.
        const rounded = master[i].cast(pdtype);
        expect(bits(params[i]).equals(bits(rounded))).toBe(true);
        rounded.dispose();
      }
    });
    disposeAll(gs.map((g) => g.t));
  }
  disposeAll(params, master ?? [], expAvg, expAvgSq);
}

describe('adamw vs float64 PyTorch reference', () => {
  const best = getCpuIsa();
  afterAll(() => setCpuIsa(best));
  // The update has an AVX-512 body and a portable one (used by the avx2 level too).
  for (const isa of [...new Set(['generic', best] as const)])
    describe(isa, () => {
      beforeAll(() => setCpuIsa(isa));
      test('float32 params, defaults but lr / weight decay, 4 steps', () => runSteps({ hyper: {} }));
      test('decay mask, betas 0.8 / 0.95, eps 1e-6', () =>
        runSteps({ hyper: { beta1: 0.8, beta2: 0.95, eps: 1e-6 }, decay: [true, false, true] }));
      test('clipping active (max = 0.3 x norm) and inactive (max = 3 x norm)', () => {
        runSteps({ hyper: {}, clipFactor: 0.3 });
        runSteps({ hyper: {}, clipFactor: 3 });
      });
      test('bfloat16 params with float32 master, bfloat16 grads, clipping, decay mask', () =>
        runSteps({ pdtype: 'bfloat16', gdtype: 'bfloat16', hyper: {}, clipFactor: 0.5, decay: [false, true, true] }));
      test('float16 params with float32 master, float16 and float32 grads', () => {
        runSteps({ pdtype: 'float16', gdtype: 'float16', hyper: {}, steps: 3 });
        runSteps({ pdtype: 'float16', gdtype: 'float32', hyper: { weightDecay: 0 }, steps: 2 });
      });
    });

  for (const bad of [NaN, Infinity])
    test(`a ${bad} gradient skips the step: nothing written, skipped reported`, () => {
      const p = [randTensor([5], 1).t, randTensor([70001], 2).t];
      const g = [randTensor([5], 3).t, randTensor([70001], 4).t];
      (g[1].view() as Float32Array)[69999] = bad;
      const m = [randTensor([5], 5).t, randTensor([70001], 6).t], v = [randTensor([5], 7, 'float32', 0.5).t, randTensor([70001], 8).t];
      const before = [...p, ...m, ...v].map(bits);
      for (const maxGradNorm of [undefined, 1]) {
        const r = ops.adamw({ params: p, grads: g, expAvg: m, expAvgSq: v }, { lr: 0.1, step: 3, maxGradNorm });
        expect(r.skipped).toBe(true);
        if (Number.isNaN(bad)) expect(r.gradNorm).toBeNaN();
        else expect(r.gradNorm).toBe(Infinity);
        [...p, ...m, ...v].forEach((t, i) => expect(bits(t).equals(before[i])).toBe(true));
      }
      disposeAll(p, g, m, v);
    });

  test('an empty list and empty parameters', () => {
    expect(ops.adamw({ params: [], grads: [], expAvg: [], expAvgSq: [] }, { lr: 1, step: 1 })).toEqual({ gradNorm: 0, skipped: false });
    const e = [zeros([0, 3])];
    expect(ops.adamw({ params: e, grads: [zeros([0, 3])], expAvg: [zeros([0, 3])], expAvgSq: [zeros([0, 3])] }, { lr: 1, step: 1 }).gradNorm).toBe(0);
  });
});

describe('gradNorm', () => {
  test('float32, bfloat16 and float16 tensors together, float64 accumulation', () => {
    const gs = [randTensor([97], 11), randTensor([40, 65], 12, 'bfloat16'), randTensor([70001], 13, 'float16'), randTensor([0], 14)];
    let sq = 0;
    for (const g of gs) for (const x of g.host) sq += x * x;
    const got = ops.gradNorm(gs.map((g) => g.t));
    expect(Math.abs(got - Math.sqrt(sq)) / Math.sqrt(sq)).toBeLessThan(1e-12);
    expect(ops.gradNorm([])).toBe(0);
    disposeAll(gs.map((g) => g.t));
  });
});

describe('adamw errors', () => {
  const p = randTensor([4], 21).t, g = randTensor([4], 22).t, m = zeros([4]), v = zeros([4]);
  afterAll(() => disposeAll(p, g, m, v));
  const T = { params: [p], grads: [g], expAvg: [m], expAvgSq: [v] };
  test('dtypes and shapes', () => {
    const pb = p.cast('bfloat16');
    expectCode(() => ops.adamw({ ...T, params: [pb] }, { lr: 1, step: 1 }), 'DTYPE_MISMATCH', /params\[0\] bfloat16\[4\] needs a float32 master/);
    expectCode(() => ops.adamw({ ...T, params: [pb], master: [pb] }, { lr: 1, step: 1 }), 'DTYPE_MISMATCH', /master\[0\]/);
    expectCode(() => ops.adamw({ ...T, grads: [randTensor([5], 23).t] }, { lr: 1, step: 1 }), 'SHAPE_MISMATCH', /grads\[0\] float32\[5\]/);
    expectCode(() => ops.adamw({ ...T, expAvg: [m.cast('float16')] }, { lr: 1, step: 1 }), 'DTYPE_MISMATCH', /expAvg\[0\]/);
    expectCode(() => ops.adamw({ ...T, expAvgSq: [zeros([2, 2])] }, { lr: 1, step: 1 }), 'SHAPE_MISMATCH', /expAvgSq\[0\]/);
    expectCode(() => ops.adamw({ ...T, grads: [] }, { lr: 1, step: 1 }), 'INVALID_ARGUMENT', /grads has 0 entries/);
    expectCode(() => ops.gradNorm([zeros([2], { dtype: 'int32' })]), 'DTYPE_MISMATCH', /int32/);
    pb.dispose();
  });
  test('hyperparameters', () => {
    expectCode(() => ops.adamw(T, { lr: 1, step: 0 }), 'INVALID_ARGUMENT', /step/);
    expectCode(() => ops.adamw(T, { lr: -1, step: 1 }), 'INVALID_ARGUMENT', /lr/);
    expectCode(() => ops.adamw(T, { lr: NaN, step: 1 }), 'INVALID_ARGUMENT', /lr/);
    expectCode(() => ops.adamw(T, { lr: 1, step: 1, beta1: 1 }), 'INVALID_ARGUMENT', /beta1/);
    expectCode(() => ops.adamw(T, { lr: 1, step: 1, beta2: -0.1 }), 'INVALID_ARGUMENT', /beta2/);
    expectCode(() => ops.adamw(T, { lr: 1, step: 1, maxGradNorm: 0 }), 'INVALID_ARGUMENT', /maxGradNorm/);
    expectCode(() => ops.adamw(T, { lr: 1, step: 1, decay: [true, false] }), 'INVALID_ARGUMENT', /decay/);
    expectCode(() => ops.adamw(T, { lr: 1, step: 1, weightDecay: -1 }), 'INVALID_ARGUMENT', /weightDecay/);
  });
});

describeGpu('adamw on CUDA tensors', () => {
  test('three steps with a bfloat16 parameter and its master, clipping, a decay mask: as on the CPU', () => {
    const shapes = [[37, 65], [1000], [7]];
    const mk = (seed: number) => {
      const p0 = randTensor(shapes[0], seed), p1m = randTensor(shapes[1], seed + 1), p2 = randTensor(shapes[2], seed + 2);
      return { params: [p0.t, p1m.t.cast('bfloat16'), p2.t], master: [null, p1m.t, null] as (Tensor | null)[],
        expAvg: shapes.map((s) => zeros(s)), expAvgSq: shapes.map((s) => zeros(s)) };
    };
    const cpu = mk(61);
    const gpu = { params: cpu.params.map((t) => t.to('cuda')), master: cpu.master.map((t) => (t ? t.to('cuda') : null)),
      expAvg: cpu.expAvg.map((t) => t.to('cuda')), expAvgSq: cpu.expAvgSq.map((t) => t.to('cuda')) };
    for (let step = 1; step <= 3; step++) {
      const grads = shapes.map((s, i) => randTensor(s, 70 + 3 * step + i, i === 1 ? 'bfloat16' : 'float32').t);
      const gradsG = grads.map((g) => g.to('cuda'));
      const opts = { lr: 1e-2, weightDecay: 0.1, step, decay: [true, true, false], maxGradNorm: step === 2 ? 0.5 : null };
      const rc = ops.adamw({ ...cpu, grads }, opts), rg = ops.adamw({ ...gpu, grads: gradsG }, opts);
      expect(rg.skipped).toBe(false);
      expect(Math.abs(rg.gradNorm - rc.gradNorm)).toBeLessThanOrEqual(1e-12 * rc.gradNorm);
      for (let i = 0; i < 3; i++) {
        const tolP = i === 1 ? 1e-3 : 1e-6;
        expect(relErr(gpu.params[i].toArray(), cpu.params[i].toArray())).toBeLessThan(tolP);
        expect(relErr(gpu.expAvg[i].toArray(), cpu.expAvg[i].toArray())).toBeLessThan(1e-6);
        expect(relErr(gpu.expAvgSq[i].toArray(), cpu.expAvgSq[i].toArray())).toBeLessThan(1e-6);
      }
      expect(relErr(gpu.master[1]!.toArray(), cpu.master[1]!.toArray())).toBeLessThan(1e-6);
      disposeAll(grads, gradsG);
    }
    // A non-finite gradient skips the step on the device too (nothing written).
    const before = gpu.params[0].toArray();
    const bad = [zeros(shapes[0], { device: 'cuda' }), zeros(shapes[1], { device: 'cuda', dtype: 'bfloat16' })];
    const nanHost = tensor(new Float32Array(7).fill(NaN), [7]), nanGrad = nanHost.to('cuda');
    const r = ops.adamw({ ...gpu, grads: [...bad, nanGrad] }, { lr: 1e-2, step: 4 });
    expect(r.skipped).toBe(true);
    expect(Array.from(gpu.params[0].toArray())).toEqual(Array.from(before));
    const nc = ops.gradNorm(cpu.params), ng = ops.gradNorm(gpu.params);
    expect(Math.abs(ng - nc)).toBeLessThanOrEqual(1e-6 * nc);
    disposeAll(bad, nanHost, nanGrad, cpu.params, cpu.expAvg, cpu.expAvgSq, gpu.params, gpu.expAvg, gpu.expAvgSq);
    disposeAll(cpu.master[1], gpu.master[1]);
  });
});
