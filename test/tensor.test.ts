// Tensor basics: factories, shapes, dtypes, toArray / data / item, to(), reshape(),
// views, random draws.
import { tensor, zeros, ones, full, rand, randn, Tensor, manualSeed } from '../src';
import { expectCode } from './helpers';

describe('factories', () => {
  test('tensor() from a flat array with a shape, nested arrays, typed arrays', () => {
    const a = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    expect(a.shape).toEqual([2, 3]);
    expect(a.dtype).toBe('float32');
    expect(a.device).toBe('cpu');
    expect(a.size).toBe(6);
    expect(Array.from(a.toArray())).toEqual([1, 2, 3, 4, 5, 6]);
    const b = tensor([[1, 2], [3, 4], [5, 6]]);
    expect(b.shape).toEqual([3, 2]);
    expect(Array.from(b.toArray())).toEqual([1, 2, 3, 4, 5, 6]);
    const c = tensor(new Int32Array([7, -8]));
    expect(c.dtype).toBe('int32');
    expect(c.toArray()).toBeInstanceOf(Int32Array);
    expect(Array.from(c.toArray())).toEqual([7, -8]);
    const s = tensor([3.5], []);
    expect(s.shape).toEqual([]);
    expect(s.item()).toBe(3.5);
    for (const t of [a, b, c, s]) t.dispose();
  });

  test('zeros / ones / full in every dtype', () => {
    for (const dtype of ['float32', 'bfloat16', 'float16', 'int32'] as const) {
      const z = zeros([3, 5], { dtype }), o = ones([7], { dtype }), f = full([2, 2], -3, { dtype });
      expect(Array.from(z.toArray())).toEqual(new Array(15).fill(0));
      expect(Array.from(o.toArray())).toEqual(new Array(7).fill(1));
      expect(Array.from(f.toArray())).toEqual([-3, -3, -3, -3]);
      expect(z.dtype).toBe(dtype);
      z.dispose(); o.dispose(); f.dispose();
    }
  });

  test('empty shapes and zero-size tensors', () => {
    const e = zeros([0, 4]);
    expect(e.size).toBe(0);
    expect(e.toArray().length).toBe(0);
    e.dispose();
  });

  test('rand / randn: same seed same values, another seed other values, ranges and moments', () => {
    const a = randn([1001], { seed: 42 }), b = randn([1001], { seed: 42 }), c = randn([1001], { seed: 43 });
    expect(Array.from(a.toArray())).toEqual(Array.from(b.toArray()));
    expect(Array.from(a.toArray())).not.toEqual(Array.from(c.toArray()));
    const n = 100003;
    const u = rand([n], { seed: 5, low: 2, high: 3 }).toArray();
    let mean = 0;
    for (const v of u) {
      expect(v >= 2 && v < 3).toBe(true);
      mean += v / n;
    }
    // 5 standard errors of the mean of U(2,3): sd 1/sqrt(12).
    expect(Math.abs(mean - 2.5)).toBeLessThan((5 * 0.2887) / Math.sqrt(n));
    const g = randn([n], { seed: 9, mean: 1, std: 3 }).toArray();
    let m = 0, v2 = 0;
    for (const x of g) m += x / n;
    for (const x of g) v2 += (x - m) ** 2 / n;
    expect(Math.abs(m - 1)).toBeLessThan((5 * 3) / Math.sqrt(n));
    expect(Math.abs(Math.sqrt(v2) - 3)).toBeLessThan(0.05);
    // bfloat16 draws are the float32 draws rounded.
    const f = randn([257], { seed: 11 }), h = randn([257], { seed: 11, dtype: 'bfloat16' });
    expect(Array.from(h.toArray())).toEqual(Array.from(f.cast('bfloat16').toArray()));
  });

  test('manualSeed makes unseeded draws reproducible', () => {
    manualSeed(123);
    const a = randn([17]).toArray();
    const b = randn([17]).toArray();
    manualSeed(123);
    expect(Array.from(randn([17]).toArray())).toEqual(Array.from(a));
    expect(Array.from(randn([17]).toArray())).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(b));
  });
});

describe('tensor methods', () => {
  test('reshape shares memory and infers -1', () => {
    const a = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    const r = a.reshape([3, -1]);
    expect(r.shape).toEqual([3, 2]);
    (a.view() as Float32Array)[0] = 10;
    expect(r.toArray()[0]).toBe(10);
    a.dispose();
    expect(r.toArray()[0]).toBe(10); // r still holds the memory
    r.dispose();
    expectCode(() => tensor([1, 2, 3]).reshape([2, 2]), 'SHAPE_MISMATCH', /\[3\]/);
    expectCode(() => tensor([1, 2, 3, 4]).reshape([-1, -1]), 'INVALID_ARGUMENT');
  });

  test('view() is zero-copy and detached after dispose', () => {
    const a = zeros([4]);
    const v = a.view() as Float32Array;
    v[2] = 5;
    expect(Array.from(a.toArray())).toEqual([0, 0, 5, 0]);
    a.dispose();
    expect(v.length).toBe(0);
  });

  test('item() needs exactly one element; data() resolves to the values', async () => {
    const t = tensor([1, 2]);
    expectCode(() => t.item(), 'SHAPE_MISMATCH', /2 elements/);
    expect(Array.from(await t.data())).toEqual([1, 2]);
    const h = tensor([1.5, -2], [2], { dtype: 'float16' });
    expect(Array.from(await h.data())).toEqual([1.5, -2]);
  });

  test('to("cpu") on a CPU tensor shares memory; cast to the same dtype too', () => {
    const a = tensor([1, 2]);
    const b = a.to('cpu');
    const c = a.cast('float32');
    (a.view() as Float32Array)[0] = 9;
    expect(b.toArray()[0]).toBe(9);
    expect(c.toArray()[0]).toBe(9);
    expect(b).not.toBe(a);
  });

  test('using disposes at scope end', () => {
    let t: Tensor;
    {
      using u = zeros([3]);
      t = u;
      expect(t.isDisposed).toBe(false);
    }
    expect(t.isDisposed).toBe(true);
  });

  test('toString names dtype, shape and device', () => {
    expect(String(zeros([2, 3], { dtype: 'bfloat16' }))).toBe('Tensor(bfloat16[2,3], cpu)');
  });
});
