// autograd.test.ts: the graph engine (chain rule, fan-out, broadcasting, accumulation,
// noGrad, detach, retainGraph, checkpointing) and the nn modules, with gradients checked
// against central finite differences of the float32 forward.
import { F, Tensor, tensor, tidy, noGrad, checkpoint, nn, randn, manualSeed } from '../src';
import { tensorCounts } from '../src/tensor';
import { expectCode, hostRandom, relErr } from './helpers';

function leaf(shape: number[], seed: number, scale = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tensor(hostRandom(n, seed).map((v) => v * scale), shape).setRequiresGrad();
}

/**
 * Central differences of loss() with respect to every element of the given float32 CPU
 * tensors (perturbed in place through view()). h = 1e-2 on O(1) values: truncation error
 * O(h²) ~ 1e-4 relative, float32 rounding ~ 1e-7 / h = 1e-5.
 */
function numericGrads(loss: () => number, params: Tensor[], h = 1e-2): Float64Array[] {
  return params.map((p) => {
    const v = p.view() as Float32Array;
    const g = new Float64Array(v.length);
    for (let i = 0; i < v.length; i++) {
      const x = v[i];
      v[i] = x + h;
      const fp = loss();
      v[i] = x - h;
      const fm = loss();
      v[i] = x;
      g[i] = (fp - fm) / (2 * h);
    }
    return g;
  });
}

function checkGrads(build: () => Tensor, params: Tensor[], tol = 2e-3): void {
  for (const p of params) p.zeroGrad();
  tidy(() => build().backward());
  const num = numericGrads(() => noGrad(() => tidy(() => build().item())), params);
  params.forEach((p, i) => {
    expect(p.grad).not.toBeNull();
    const e = relErr(p.grad!.toArray(), num[i]);
    if (!(e <= tol)) throw new Error(`gradient ${i} (${p.toString()}): relative error ${e} > ${tol}`);
  });
}

describe('autograd engine', () => {
  test('chain of ops: linear, rmsNorm, gelu, fan-out, broadcasting, mean', () => {
    const x = leaf([5, 7], 1);
    const w = leaf([6, 7], 2, 0.5);
    const b = leaf([6], 3);
    const nw = leaf([6], 4);
    const s = leaf([1, 6], 5);
    const build = () => {
      const h = F.linear(x, w, b);
      const n = F.rmsNorm(h, nw);
      const g = F.gelu(n);
      const m = F.mul(g, h); // h used twice (fan-out)
      const t = F.add(m, s); // broadcast [1,6] over [5,6]
      return F.mean(F.mul(t, t));
    };
    checkGrads(build, [x, w, b, nw, s]);
  });

  test('attention, rope, swiglu, layerNorm, l2Normalize, pooling and reshape/permute', () => {
    const B = 2, S = 5, H = 2, D = 8;
    const q = leaf([B, S, H * D], 11);
    const kv = leaf([B, S, H * D], 12);
    const lw = leaf([H * D], 13);
    const lb = leaf([H * D], 14);
    const pos = tensor(new Int32Array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4]), [B, S]);
    const mask = tensor(new Int32Array([1, 1, 1, 1, 1, 0, 1, 1, 1, 1]), [B, S]);
    const build = () => {
      const qh = F.rope(F.reshape(q, [B, S, H, D]), pos, { theta: 100 });
      const kh = F.rope(F.reshape(kv, [B, S, H, D]), pos, { theta: 100 });
      const vh = F.reshape(F.swiglu(kv, q), [B, S, H, D]);
      const o = F.attention(qh, kh, vh, { keyPaddingMask: mask });
      const n = F.layerNorm(F.reshape(o, [B, S, H * D]), lw, lb);
      const p = F.l2Normalize(F.maskedMeanPool(n, mask));
      const t = F.permute(F.reshape(n, [B, S, H, D]), [0, 2, 1, 3]);
      return F.add(F.sum(F.mul(p, p)), F.mean(F.mul(t, F.slice(t, 3, 0, D))));
    };
    checkGrads(build, [q, kv, lw, lb], 5e-3);
  });

  test('losses: crossEntropy and infoNCE with a learnable scale', () => {
    const h = leaf([6, 8], 21);
    const w = leaf([11, 8], 22);
    const tg = tensor(new Int32Array([1, 5, -100, 10, 0, 3]), [6]);
    const a = leaf([5, 8], 23);
    const bb = leaf([5, 8], 24);
    const sc = tensor([2.5], []).setRequiresGrad();
    const build = () => F.add(F.crossEntropy(h, w, tg), F.add(F.infoNCE(F.l2Normalize(a), F.l2Normalize(bb), { scale: sc, symmetric: true }), F.infoNCE(a, bb, { scale: 0.5 })));
    checkGrads(build, [h, w, a, bb, sc]);
  });

  test('embedding, concat, split, dropout (fixed seed), softmax, transpose', () => {
    const E = leaf([9, 4], 31);
    const z = leaf([3, 4], 32);
    const ids = tensor(new Int32Array([1, 3, 3, 8, 0, 1]), [2, 3]);
    const build = () => {
      const e = F.embedding(E, ids); // [2,3,4]
      const c = F.concat([F.reshape(e, [6, 4]), z], 0); // [9,4]
      const [u, v] = F.split(c, [4, 5], 0);
      const d = F.dropout(v, 0.3, { seed: 1234 });
      const sm = F.softmax(F.transpose(d, 0, 1)); // [4,5]
      return F.add(F.sum(F.mul(sm, sm)), F.mean(F.mul(u, u)));
    };
    checkGrads(build, [E, z]);
  });

  test('gradients accumulate across backward calls and zeroGrad clears them', () => {
    const x = leaf([4], 41);
    tidy(() => F.sum(F.mul(x, x)).backward());
    const g1 = x.grad!.toArray();
    tidy(() => F.sum(F.mul(x, x)).backward());
    const g2 = x.grad!.toArray();
    const xs = x.toArray();
    for (let i = 0; i < 4; i++) {
      expect(g1[i]).toBeCloseTo(2 * xs[i], 5);
      expect(g2[i]).toBeCloseTo(4 * xs[i], 5);
    }
    x.zeroGrad();
    expect(x.grad).toBeNull();
  });

  test('noGrad records nothing; detach cuts the graph; non-leaf requiresGrad cannot be unset', () => {
    const x = leaf([3], 51);
    const y = noGrad(() => F.mul(x, x));
    expect(y.requiresGrad).toBe(false);
    expect(y.gradFn).toBeNull();
    const z = F.mul(x, x);
    expect(z.requiresGrad).toBe(true);
    expect(z.detach().requiresGrad).toBe(false);
    expectCode(() => (z.requiresGrad = false), 'INVALID_ARGUMENT', /detach/);
    expectCode(() => y.backward(), 'INVALID_ARGUMENT', /does not require grad/);
    expectCode(() => z.backward(), 'SHAPE_MISMATCH', /3 elements/);
    expectCode(() => tensor(new Int32Array([1]), [1]).setRequiresGrad(), 'DTYPE_MISMATCH');
    [y, z].forEach((t) => t.dispose());
  });

  test('a freed graph is a clear error; retainGraph allows a second backward', () => {
    const x = leaf([3], 61);
    const y = F.sum(F.mul(x, x));
    y.backward(null, { retainGraph: true });
    y.backward();
    const xs = x.toArray(), g = x.grad!.toArray();
    for (let i = 0; i < 3; i++) expect(g[i]).toBeCloseTo(4 * xs[i], 5);
    expectCode(() => y.backward(), 'INVALID_ARGUMENT', /already freed/);
  });

  test('intermediates may be disposed after the forward; no tensor leaks', () => {
    const x = leaf([4, 4], 71);
    const w = leaf([4, 4], 72);
    const before = tensorCounts().liveTensors;
    const loss = tidy(() => {
      const h = F.linear(x, w);
      const a = F.gelu(h);
      h.dispose();
      return F.mean(F.mul(a, a));
    });
    loss.backward();
    loss.dispose();
    // x.grad and w.grad are the only new live tensors.
    expect(tensorCounts().liveTensors - before).toBe(2);
    expect(relErr(x.grad!.toArray(), x.grad!.toArray())).toBe(0);
  });

  test('bfloat16 parameters get bfloat16 gradients (float32 kernel gradients cast back)', () => {
    const x = leaf([3, 8], 81).cast('bfloat16');
    const nw = leaf([8], 82).detach().cast('bfloat16').setRequiresGrad();
    const y = F.sum(F.rmsNorm(x.detach(), nw));
    y.backward();
    expect(nw.grad!.dtype).toBe('bfloat16');
    expect(nw.grad!.shape).toEqual([8]);
  });

  test('checkpoint gives the same gradients as the plain graph, dropout included', () => {
    manualSeed(5);
    const lin = new nn.Linear(6, 6, { seed: 3 });
    const x = leaf([4, 6], 91);
    const block = (t: Tensor) => F.gelu(F.dropout(lin.forward(t), 0.25));
    const run = (ck: boolean) => {
      lin.zeroGrad();
      x.zeroGrad();
      manualSeed(77);
      const loss = tidy(() => F.mean(F.mul(ck ? checkpoint(block, x) : block(x), F.scale(x, 1))));
      const lv = loss.item();
      loss.backward();
      loss.dispose();
      return { lv, gx: x.grad!.toArray(), gw: lin.weight.grad!.toArray(), gb: lin.bias!.grad!.toArray() };
    };
    const a = run(false), b = run(true);
    expect(b.lv).toBe(a.lv);
    expect(relErr(b.gx, a.gx)).toBeLessThan(1e-6);
    expect(relErr(b.gw, a.gw)).toBeLessThan(1e-6);
    expect(relErr(b.gb, a.gb)).toBeLessThan(1e-6);
  });
});

describe('nn modules', () => {
  test('Linear matches x·Wᵀ + b and its gradients', () => {
    const lin = new nn.Linear(7, 5, { seed: 1 });
    const x = leaf([3, 2, 7], 101);
    checkGrads(() => F.mean(F.mul(lin.forward(x), lin.forward(x))), [x, lin.weight, lin.bias!]);
    expect(lin.namedParameters().map(([n]) => n)).toEqual(['weight', 'bias']);
    expect(new nn.Linear(3, 2, { bias: false }).bias).toBeNull();
  });

  test('LoRALinear: zero B changes nothing, gradients reach A and B only, merge equals unmerged', () => {
    const base = new nn.Linear(9, 6, { seed: 2 });
    const lora = new nn.LoRALinear(base, { r: 3, alpha: 6, seed: 4 });
    const x = leaf([5, 9], 111);
    const y0 = noGrad(() => base.forward(x)).toArray();
    const y1 = noGrad(() => lora.forward(x)).toArray();
    expect(relErr(y1, y0)).toBeLessThan(1e-6);
    // Make B nonzero, then check the gradients of A, B and x.
    noGrad(() => nn.copyInto(lora.loraB, randn([6, 3], { seed: 9, std: 0.5 })));
    checkGrads(() => F.mean(F.mul(lora.forward(x), lora.forward(x))), [x, lora.loraA, lora.loraB]);
    expect(base.weight.grad).toBeNull();
    expect(base.weight.requiresGrad).toBe(false);
    expect(lora.trainableParameters().length).toBe(2);
    const unmerged = noGrad(() => lora.forward(x)).toArray();
    lora.merge();
    expect(lora.merged).toBe(true);
    const merged = noGrad(() => lora.forward(x)).toArray();
    expect(relErr(merged, unmerged)).toBeLessThan(1e-6);
    lora.unmerge();
    expect(relErr(noGrad(() => lora.forward(x)).toArray(), unmerged)).toBeLessThan(1e-6);
    expect(lora.namedParameters().map(([n]) => n)).toEqual(['lora_A', 'lora_B', 'base_layer.weight', 'base_layer.bias']);
  });

  test('stateDict / loadStateDict round trip, strictness, shape errors, to()', () => {
    const a = new nn.MLP(4, 8, 'quick_gelu', { seed: 1 });
    const b = new nn.MLP(4, 8, 'quick_gelu', { seed: 2 });
    const x = leaf([3, 4], 121);
    const ya = noGrad(() => a.forward(x)).toArray();
    expect(relErr(noGrad(() => b.forward(x)).toArray(), ya)).toBeGreaterThan(1e-3);
    const wRef = b.fc1.weight;
    b.loadStateDict(a.stateDict());
    expect(b.fc1.weight).toBe(wRef); // in place
    expect(relErr(noGrad(() => b.forward(x)).toArray(), ya)).toBe(0);
    expect(Object.keys(a.stateDict())).toEqual(['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
    const partial = { 'fc1.weight': a.fc1.weight };
    expectCode(() => b.loadStateDict(partial), 'INVALID_ARGUMENT', /missing fc1.bias/);
    expect(b.loadStateDict(partial, { strict: false }).missingKeys).toEqual(['fc1.bias', 'fc2.weight', 'fc2.bias']);
    expectCode(() => b.loadStateDict({ ...a.stateDict(), extra: a.fc1.bias! }), 'INVALID_ARGUMENT', /unexpected extra/);
    expectCode(() => b.loadStateDict({ ...a.stateDict(), 'fc1.bias': a.fc2.bias! }), 'SHAPE_MISMATCH', /fc1.bias/);
    a.to({ dtype: 'bfloat16' });
    expect(a.fc2.weight.dtype).toBe('bfloat16');
    expect(a.fc2.weight.requiresGrad).toBe(true);
    b.eval();
    expect(b.fc1.training).toBe(false);
    a.dispose();
    expect(a.fc1.weight.isDisposed).toBe(true);
  });

  test('Embedding, RMSNorm, LayerNorm, Dropout (train vs eval)', () => {
    const e = new nn.Embedding(10, 4, { seed: 3 });
    const n1 = new nn.RMSNorm(4);
    const n2 = new nn.LayerNorm(4);
    const d = new nn.Dropout(0.5);
    const ids = tensor(new Int32Array([1, 2, 9]), [3]);
    // Fresh modules have unit norm weights, where layerNorm(rmsNorm(e)·w) barely depends
    // on w (a gradient near 0 that finite differences cannot check): randomise them.
    for (const [p, seed] of [[n1.weight, 1], [n2.weight, 2], [n2.bias, 3]] as const)
      nn.copyInto(p, tensor(hostRandom(4, 130 + seed).map((v) => 1 + 0.5 * v), [4]));
    checkGrads(() => F.mean(F.mul(n2.forward(n1.forward(e.forward(ids))), e.forward(ids))), [e.weight, n1.weight, n2.weight, n2.bias]);
    const x = randn([1000], { seed: 4 });
    const yTrain = noGrad(() => d.forward(x)).toArray();
    const zeros = yTrain.filter((v) => v === 0).length;
    expect(zeros).toBeGreaterThan(400);
    expect(zeros).toBeLessThan(600);
    d.eval();
    expect(relErr(noGrad(() => d.forward(x)).toArray(), x.toArray())).toBe(0);
    expectCode(() => new nn.Dropout(1), 'INVALID_ARGUMENT', /p must be/);
    expectCode(() => new nn.Linear(0, 3), 'INVALID_ARGUMENT', /inFeatures/);
  });
});
