// optim.test.ts: AdamW against a float64 reference of torch.optim.AdamW, master weights
// for bfloat16 parameters, decay selection, state round trip, schedule.
import { AdamW, F, cosineSchedule, tensor, tidy, nn } from '../src';
import { expectCode, hostRandom, relErr } from './helpers';

/** float64 AdamW (torch semantics) on loss = Σ c_i p_i² (gradient 2 c p). */
function refAdam(p0: Float64Array, c: Float64Array, steps: number, o: { lr: number; b1: number; b2: number; eps: number; wd: number; decay: boolean }): Float64Array {
  const p = p0.slice(), m = new Float64Array(p.length), v = new Float64Array(p.length);
  for (let t = 1; t <= steps; t++)
    for (let i = 0; i < p.length; i++) {
      const g = 2 * c[i] * p[i];
      if (o.decay) p[i] *= 1 - o.lr * o.wd;
      m[i] = o.b1 * m[i] + (1 - o.b1) * g;
      v[i] = o.b2 * v[i] + (1 - o.b2) * g * g;
      const mh = m[i] / (1 - o.b1 ** t), vh = v[i] / (1 - o.b2 ** t);
      p[i] -= (o.lr * mh) / (Math.sqrt(vh) + o.eps);
    }
  return p;
}

function lossOf(p: ReturnType<typeof tensor>, c: ReturnType<typeof tensor>) {
  return F.sum(F.mul(F.mul(p, p), c));
}

describe('AdamW', () => {
  test('matches a float64 AdamW over 7 steps, decay on matrices only', () => {
    const n = 13;
    const w0 = hostRandom(n, 1), b0 = hostRandom(5, 2), c0 = hostRandom(n, 3).map((v) => 1 + v * 0.5);
    const w = tensor(w0, [1, n]).setRequiresGrad();
    const b = tensor(b0, [5]).setRequiresGrad();
    const c = tensor(c0, [1, n]);
    const cb = tensor(new Float32Array(5).fill(1), [5]);
    const opt = new AdamW([['w', w], ['b', b]], { lr: 0.05, weightDecay: 0.1 });
    for (let s = 0; s < 7; s++) {
      opt.zeroGrad();
      tidy(() => F.add(lossOf(w, c), lossOf(b, cb)).backward());
      const r = opt.step();
      expect(r.skipped).toBe(false);
      expect(r.step).toBe(s + 1);
    }
    const o = { lr: 0.05, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.1 };
    expect(relErr(w.toArray(), refAdam(Float64Array.from(w0), Float64Array.from(c0), 7, { ...o, decay: true }))).toBeLessThan(1e-5);
    expect(relErr(b.toArray(), refAdam(Float64Array.from(b0), new Float64Array(5).fill(1), 7, { ...o, decay: false }))).toBeLessThan(1e-5);
  });

  test('lrScale: per-parameter learning rates with one global clipping norm, against float64', () => {
    // Two parameters at lr and lr/4, gradients clipped by their joint norm (clip active).
    const n = 11;
    const a0 = hostRandom(n, 21), b0 = hostRandom(7, 22), ca = hostRandom(n, 23).map((v) => 3 + v), cb = hostRandom(7, 24).map((v) => 2 + v);
    const a = tensor(a0, [1, n]).setRequiresGrad();
    const b = tensor(b0, [7]).setRequiresGrad();
    const [cat, cbt] = [tensor(ca, [1, n]), tensor(cb, [7])];
    const o = { lr: 0.03, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.2, max: 0.5 };
    const opt = new AdamW([['a', a], ['b', b]], { lr: o.lr, weightDecay: o.wd, maxGradNorm: o.max, lrScale: (name) => (name === 'b' ? 0.25 : 1) });
    // float64 reference: the same steps, clip coefficient from both gradients together.
    const P = [Float64Array.from(a0), Float64Array.from(b0)], C = [Float64Array.from(ca), Float64Array.from(cb)];
    const M = P.map((p) => new Float64Array(p.length)), V = P.map((p) => new Float64Array(p.length));
    const scale = [1, 0.25], dec = [true, false];
    let clipped = 0;
    for (let t = 1; t <= 6; t++) {
      opt.zeroGrad();
      tidy(() => F.add(lossOf(a, cat), lossOf(b, cbt)).backward());
      const r = opt.step();
      const G = P.map((p, k) => p.map((v, i) => 2 * C[k][i] * v));
      const norm = Math.sqrt(G.reduce((s, g) => s + g.reduce((q, v) => q + v * v, 0), 0));
      expect(relErr([r.gradNorm], [norm])).toBeLessThan(1e-5);
      const clip = Math.min(1, o.max / (norm + 1e-6));
      if (clip < 1) clipped++;
      P.forEach((p, k) => {
        const lr = o.lr * scale[k];
        for (let i = 0; i < p.length; i++) {
          const g = G[k][i] * clip;
          if (dec[k]) p[i] *= 1 - lr * o.wd;
          M[k][i] = o.b1 * M[k][i] + (1 - o.b1) * g;
          V[k][i] = o.b2 * V[k][i] + (1 - o.b2) * g * g;
          p[i] -= (lr * M[k][i] / (1 - o.b1 ** t)) / (Math.sqrt(V[k][i] / (1 - o.b2 ** t)) + o.eps);
        }
      });
    }
    expect(clipped).toBeGreaterThan(2);
    expect(relErr(a.toArray(), P[0])).toBeLessThan(1e-5);
    expect(relErr(b.toArray(), P[1])).toBeLessThan(1e-5);
    // A non-finite gradient still skips every group.
    opt.zeroGrad();
    const before = [a.toArray(), b.toArray()];
    tidy(() => F.add(F.sum(F.mul(a, tensor(new Float32Array(n).fill(NaN), [1, n]))), lossOf(b, cbt)).backward());
    expect(opt.step().skipped).toBe(true);
    expect(a.toArray()).toEqual(before[0]);
    expect(b.toArray()).toEqual(before[1]);
    expectCode(() => new AdamW([a], { lrScale: () => -1 }), 'INVALID_ARGUMENT', /lrScale/);
  });

  test('bfloat16 parameters train through float32 masters; state round trip continues identically', () => {
    const lin = new nn.Linear(8, 4, { seed: 5, dtype: 'bfloat16' });
    const x = tensor(hostRandom(24, 6), [3, 8]).cast('bfloat16');
    const train = (opt: AdamW, steps: number) => {
      for (let s = 0; s < steps; s++) {
        opt.zeroGrad();
        tidy(() => { const y = lin.forward(x); return F.mean(F.mul(y, y)); }).backward();
        opt.step();
      }
    };
    const w0 = lin.weight.toArray();
    const opt = new AdamW(lin.namedParameters(), { lr: 1e-2 });
    train(opt, 3);
    expect(relErr(lin.weight.toArray(), w0)).toBeGreaterThan(1e-3);
    expect(lin.weight.dtype).toBe('bfloat16');
    // Save model + optimiser, continue 2 steps; restore into fresh objects, continue 2 steps.
    const sd = Object.fromEntries(Object.entries(lin.stateDict()).map(([k, t]) => [k, t.detach().cast('float32')]));
    const os = opt.stateDict();
    const saved = { step: os.step, tensors: Object.fromEntries(Object.entries(os.tensors).map(([k, t]) => [k, t.clone()])) };
    train(opt, 2);
    const want = lin.weight.toArray();
    const lin2 = lin; // same module object, state restored in place
    lin2.loadStateDict(sd);
    const opt2 = new AdamW(lin2.namedParameters(), { lr: 1e-2 });
    opt2.loadStateDict(saved);
    expect(opt2.stepCount).toBe(3);
    train(opt2, 2);
    expect(relErr(lin2.weight.toArray(), want)).toBe(0);
  });

  test('a non-finite gradient skips the step; bad config is a typed error', () => {
    const p = tensor([1, 2], [2]).setRequiresGrad();
    const opt = new AdamW([p], { lr: 0.1 });
    tidy(() => F.sum(F.mul(p, tensor([Infinity, 1], [2]))).backward());
    const r = opt.step();
    expect(r.skipped).toBe(true);
    expect(Array.from(p.toArray())).toEqual([1, 2]);
    expectCode(() => new AdamW([p], { lr: -1 }), 'INVALID_ARGUMENT', /lr/);
    expectCode(() => new AdamW([p, p]), 'INVALID_ARGUMENT', /twice/);
    expectCode(() => new AdamW([]), 'INVALID_ARGUMENT');
  });

  test('cosine schedule: linear warmup, cosine to minLr', () => {
    const o = { lr: 1, warmupSteps: 4, totalSteps: 14, minLr: 0.1 };
    expect(cosineSchedule(0, o)).toBeCloseTo(0.25);
    expect(cosineSchedule(3, o)).toBeCloseTo(1);
    expect(cosineSchedule(9, o)).toBeCloseTo(0.55);
    expect(cosineSchedule(14, o)).toBeCloseTo(0.1);
    expect(cosineSchedule(100, o)).toBeCloseTo(0.1);
  });
});
