// Memory: native accounting returns to baseline, dispose frees at once, shared storage
// is freed by its last tensor, tidy() scopes, V8 external-memory accounting, and the
// FinalizationRegistry safety net (needs --expose-gc, which `npm test` passes).
import { zeros, tidy, keep, memoryStats, tensor, ops, randn, emptyCache } from '../src';
import { describeGpu, expectCode } from './helpers';

const cpuBytes = () => memoryStats().cpu.allocatedBytes;

describe('memory', () => {
  test('create / dispose returns allocated bytes to baseline; peak is tracked', () => {
    const base = cpuBytes();
    const t = zeros([1000, 250]);
    expect(cpuBytes()).toBe(base + 1e6);
    expect(memoryStats().cpu.peakAllocatedBytes).toBeGreaterThanOrEqual(base + 1e6);
    t.dispose();
    expect(cpuBytes()).toBe(base);
  });

  test('large freed blocks are cached for reuse and released by emptyCache()', () => {
    emptyCache();
    const s0 = memoryStats().cpu;
    zeros([1 << 20]).dispose(); // 4 MiB
    const s1 = memoryStats().cpu;
    expect(s1.allocatedBytes).toBe(s0.allocatedBytes);
    expect(s1.reservedBytes).toBeGreaterThanOrEqual(s0.reservedBytes + 4 * 2 ** 20);
    zeros([1 << 20]).dispose(); // the same size class: no new system allocation
    expect(memoryStats().cpu.numDeviceMallocs).toBe(s1.numDeviceMallocs);
    emptyCache();
    expect(memoryStats().cpu.reservedBytes).toBe(s0.reservedBytes);
  });

  test('shared storage is freed by the last tensor on it', () => {
    const base = cpuBytes();
    const a = zeros([256]);
    const r = a.reshape([16, 16]);
    a.dispose();
    expect(cpuBytes()).toBe(base + 1024);
    r.dispose();
    expect(cpuBytes()).toBe(base);
  });

  test('tidy disposes intermediates and keeps what is returned', () => {
    const base = cpuBytes();
    const liveBefore = memoryStats().liveTensors;
    let kept: ReturnType<typeof zeros> | undefined;
    const out = tidy(() => {
      const a = randn([64, 64], { seed: 1 });
      const b = randn([64, 64], { seed: 2 });
      kept = keep(zeros([8]));
      const inner = tidy(() => ops.matmul(a, b).reshape([-1]));
      return { c: inner, list: [tensor([1])] };
    });
    expect(out.c.isDisposed).toBe(false);
    expect(out.list[0].isDisposed).toBe(false);
    expect(kept!.isDisposed).toBe(false);
    expect(memoryStats().liveTensors).toBe(liveBefore + 3);
    out.c.dispose();
    out.list[0].dispose();
    kept!.dispose();
    expect(cpuBytes()).toBe(base);
  });

  test('tidy disposes on throw and refuses async functions', () => {
    const base = cpuBytes();
    expect(() => tidy(() => { zeros([100]); throw new Error('x'); })).toThrow('x');
    expect(cpuBytes()).toBe(base);
    expect(() => tidy(() => Promise.resolve(zeros([1])) as never)).toThrow(/synchronous/);
  });

  test('V8 external memory follows native allocations', () => {
    const before = process.memoryUsage().external;
    const t = zeros([16, 1 << 20]); // 64 MiB
    expect(process.memoryUsage().external - before).toBeGreaterThanOrEqual(60 * 2 ** 20);
    t.dispose();
    expect(process.memoryUsage().external - before).toBeLessThan(4 * 2 ** 20);
  });

  test('10,000 create / dispose cycles hold native memory flat', () => {
    const base = cpuBytes();
    for (let i = 0; i < 10000; i++) zeros([64]).dispose();
    expect(cpuBytes()).toBe(base);
  });

  const gc = (globalThis as { gc?: () => void }).gc;
  (gc ? test : test.skip)('tensors dropped without dispose are released after GC', async () => {
    // Earlier tests left tensors undisposed on purpose too: count at least ours.
    const base = cpuBytes();
    const collected0 = memoryStats().collectedUndisposed;
    (() => {
      for (let i = 0; i < 10; i++) zeros([1 << 16]);
    })();
    expect(cpuBytes()).toBe(base + 10 * 4 * (1 << 16));
    for (let i = 0; i < 50 && memoryStats().collectedUndisposed - collected0 < 10; i++) {
      gc!();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(memoryStats().collectedUndisposed - collected0).toBeGreaterThanOrEqual(10);
    expect(cpuBytes()).toBeLessThanOrEqual(base);
  });
});

describeGpu('GPU memory', () => {
  test('out of memory during a step is a catchable OUT_OF_MEMORY, after which a smaller step runs', () => {
    // 1 TiB of float32: more than any card; the allocator's error, not a crash.
    expectCode(() => zeros([2 ** 20, 2 ** 18], { device: 'cuda' }), 'OUT_OF_MEMORY', /cuda/i);
    const y = tidy(() => {
      const a = randn([512, 512], { device: 'cuda' });
      return ops.matmul(a, a).to('cpu');
    });
    expect(Array.from(y.toArray() as Float32Array).every(Number.isFinite)).toBe(true);
    y.dispose();
  });
});
