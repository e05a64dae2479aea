// pairs.test.ts: the caption pair sampler: determinism, resume from a saved state equals the
// uninterrupted stream, epochs cover every unit, no two pairs of one image in a batch, hard
// negatives from images outside the batch, short/long pairs, explicit pairs, bad states;
// and its PRNG (xoshiro128** against the reference algorithm's outputs).
import { PairSampler, CaptionDataset, PairSamplerOptions, SampledPair, Rng } from '../src';
import { expectCode } from './helpers';

/** n images with 1..maxCaps captions ("g<i>c<j>", unique), sizes from a seeded stream. */
function dataset(n: number, maxCaps: number, seed: number): CaptionDataset {
  const r = new Rng(seed);
  const images = Array.from({ length: n }, (_, g) => ({
    id: `img${g}`,
    captions: Array.from({ length: 1 + r.below(maxCaps) }, (_, j) => `g${g}c${j}`),
  }));
  return { format: 'captions', source: 'test', images };
}
const groupOf = (text: string): number => Number(/^g(\d+)[a-z]/.exec(text)![1]);

function take(s: PairSampler, batches: number, n: number): SampledPair[][] {
  return Array.from({ length: batches }, () => s.nextBatch(n));
}

describe('PairSampler', () => {
  const ds = dataset(23, 5, 1);
  const opts: PairSamplerOptions = { seed: 7 };

  test('pairs are two different captions of one image; the negative is of another image', () => {
    const s = new PairSampler(ds, opts);
    for (const p of take(s, 40, 6).flat()) {
      expect(p.anchor).not.toBe(p.positive);
      expect(groupOf(p.anchor)).toBe(p.group);
      expect(groupOf(p.positive)).toBe(p.group);
      expect(groupOf(p.negative!)).not.toBe(p.group);
    }
  });

  test('deterministic for a seed, different for another seed', () => {
    const a = take(new PairSampler(ds, opts), 30, 4);
    const b = take(new PairSampler(ds, opts), 30, 4);
    const c = take(new PairSampler(ds, { seed: 8 }), 30, 4);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
  });

  test('resuming from a JSON round trip of state() equals the uninterrupted stream (across epochs)', () => {
    const s = new PairSampler(ds, opts);
    const per = s.pairsPerEpoch;
    const full = take(new PairSampler(ds, opts), 60, 7); // 420 pairs: several epochs
    expect(60 * 7).toBeGreaterThan(3 * per);
    let deferred = 0;
    for (const cut of [1, 9, 23, 41]) {
      const t = new PairSampler(ds, opts);
      const head = take(t, cut, 7);
      const saved = JSON.parse(JSON.stringify(t.state()));
      deferred += saved.pending.length;
      const resumed = PairSampler.fromState(ds, opts, saved);
      const tail = take(resumed, 60 - cut, 7);
      expect([...head, ...tail]).toEqual(full);
    }
    expect(deferred).toBeGreaterThan(0); // some cut had deferred units in its state
  });

  test('an epoch of single pairs visits every caption once as anchor', () => {
    const s = new PairSampler(ds, opts);
    const want = ds.images.filter((im) => im.captions.length >= 2).flatMap((im) => im.captions).sort();
    expect(s.pairsPerEpoch).toBe(want.length);
    for (let e = 0; e < 2; e++) {
      const anchors = Array.from({ length: want.length }, () => s.next().anchor).sort();
      expect(anchors).toEqual(want);
    }
    expect(s.epoch).toBe(1);
  });

  test('no two pairs of one image in a batch; negatives from outside the batch; deferred units are not lost', () => {
    const big = dataset(61, 6, 2);
    const s = new PairSampler(big, { seed: 3 });
    const n = 12, batches = Math.ceil((3 * s.pairsPerEpoch) / n);
    const count = new Map<string, number>();
    for (const batch of take(s, batches, n)) {
      const groups = batch.map((p) => p.group);
      expect(new Set(groups).size).toBe(n);
      for (const p of batch) {
        expect(groups).not.toContain(groupOf(p.negative!));
        count.set(p.anchor, (count.get(p.anchor) ?? 0) + 1);
      }
    }
    // 3 epochs' worth of pairs: every anchor 3 times, give or take a deferral across the end
    for (const im of big.images.filter((i) => i.captions.length >= 2))
      for (const c of im.captions) expect(Math.abs((count.get(c) ?? 0) - 3)).toBeLessThanOrEqual(1);
    expect(s.state().pending.length).toBeLessThan(n);
  });

  test('fewer images than the batch: groups repeat in rounds, no hang', () => {
    const small = dataset(3, 1, 3);
    small.images.forEach((im) => im.captions.push(`g${im.id.slice(3)}c9`));
    const s = new PairSampler(small, { seed: 1 });
    for (const batch of take(s, 10, 7)) {
      const c = new Map<number, number>();
      for (const p of batch) c.set(p.group, (c.get(p.group) ?? 0) + 1);
      expect(Math.max(...c.values())).toBeLessThanOrEqual(3); // ceil(7 / 3)
      for (const p of batch) expect(groupOf(p.negative!)).not.toBe(p.group);
    }
  });

  test('one image with far more captions than batches: deferral is bounded, then the image repeats', () => {
    const skew = dataset(10, 1, 6);
    skew.images.forEach((im, g) => im.captions.push(`g${g}c1`));
    skew.images[0].captions = Array.from({ length: 300 }, (_, j) => `g0c${j}`);
    const s = new PairSampler(skew, { seed: 4, hardNegatives: false });
    let maxPending = 0, repeats = 0;
    for (let b = 0; b < 600; b++) {
      const batch = s.nextBatch(4);
      const pending = s.state().pending.length;
      if (new Set(batch.map((p) => p.group)).size < 4) repeats++;
      else if (pending < 1024) expect(repeats).toBe(0); // no repeat before the cap is reached
      maxPending = Math.max(maxPending, pending);
    }
    expect(maxPending).toBeLessThanOrEqual(1024);
    expect(repeats).toBeGreaterThan(0);
  });

  test('short/long images: one short and one long, both directions, negative of the positive kind', () => {
    const images = Array.from({ length: 20 }, (_, g) => ({
      id: `i${g}`,
      captions: [`g${g}s0`, `g${g}l0`, `g${g}l1`],
      kinds: ['short', 'long', 'long'] as ('short' | 'long')[],
    }));
    const iiw: CaptionDataset = { format: 'iiw', source: 'test', images };
    const s = new PairSampler(iiw, { seed: 5 });
    expect(s.pairsPerEpoch).toBe(40); // one per long caption
    let longFirst = 0;
    const pairs = take(s, 25, 8).flat();
    for (const p of pairs) {
      const kinds = [p.anchor, p.positive].map((t) => t[t.length - 2]).sort().join('');
      expect(kinds).toBe('ls');
      if (p.anchor[p.anchor.length - 2] === 'l') longFirst++;
      expect(p.negative![p.negative!.length - 2]).toBe(p.positive[p.positive.length - 2]);
    }
    expect(longFirst / pairs.length).toBeGreaterThan(0.4);
    expect(longFirst / pairs.length).toBeLessThan(0.6);
    // mode 'captions' ignores the kinds: any two captions, three anchors per image
    expect(new PairSampler(iiw, { seed: 5, mode: 'captions' }).pairsPerEpoch).toBe(60);
  });

  test('explicit pairs: given negatives kept, missing ones drawn, a shared anchor never twice in a batch', () => {
    const pairs = Array.from({ length: 30 }, (_, i) => ({ anchor: `g${i % 10}a`, positive: `g${i % 10}p${i}`, ...(i % 3 === 0 ? { negative: `neg${i}` } : {}) }));
    const d: CaptionDataset = { format: 'pairs', source: 'test', images: [], pairs };
    const s = new PairSampler(d, { seed: 2 });
    expect(s.pairsPerEpoch).toBe(30);
    for (const batch of take(s, 20, 6)) {
      expect(new Set(batch.map((p) => p.anchor)).size).toBe(6);
      for (const p of batch) {
        const i = Number(/p(\d+)$/.exec(p.positive)![1]);
        expect(p.anchor).toBe(pairs[i].anchor);
        if (i % 3 === 0) expect(p.negative).toBe(`neg${i}`);
        else expect(groupOf(p.negative!)).not.toBe(groupOf(p.anchor));
      }
    }
    const noNeg = new PairSampler(d, { seed: 2, hardNegatives: false });
    expect(noNeg.nextBatch(5).every((p) => p.negative === undefined)).toBe(true);
  });

  test('bad options, states of other data, impossible datasets', () => {
    const s = new PairSampler(ds, opts);
    s.nextBatch(3);
    const st = s.state();
    expectCode(() => PairSampler.fromState(dataset(23, 5, 99), opts, st), 'INVALID_ARGUMENT', 'another dataset or options');
    expectCode(() => PairSampler.fromState(ds, { seed: 8 }, st), 'INVALID_ARGUMENT', 'another dataset or options');
    expectCode(() => PairSampler.fromState(ds, opts, { ...st, rngState: [0, 0, 0, 0] }), 'INVALID_ARGUMENT', 'rngState');
    expectCode(() => PairSampler.fromState(ds, opts, { ...st, index: -1 }), 'INVALID_ARGUMENT', 'index');
    expectCode(() => PairSampler.fromState(ds, opts, { ...st, pending: [1e9] }), 'INVALID_ARGUMENT', 'pending');
    expectCode(() => s.nextBatch(0), 'INVALID_ARGUMENT', 'positive integer');
    expectCode(() => new PairSampler(ds, { seed: 1.5 }), 'INVALID_ARGUMENT', 'seed');
    expectCode(() => new PairSampler(dataset(5, 1, 4), {}), 'INVALID_ARGUMENT', 'no pairs can be formed');
    expectCode(() => new PairSampler(ds, { mode: 'shortLong' }), 'INVALID_ARGUMENT', 'a short and a long caption');
  });
});

describe('Rng', () => {
  test('xoshiro128** from state [1, 2, 3, 4] gives the C reference outputs', () => {
    const r = Rng.fromState([1, 2, 3, 4]);
    // next() of xoshiro128starstar.c (Blackman & Vigna), run by hand in Python
    expect(Array.from({ length: 6 }, () => r.nextU32())).toEqual([11520, 0, 5927040, 70819200, 2031721883, 1637235492]);
  });

  test('seeded streams: reproducible, distinct per seed part, resumable from state()', () => {
    const a = new Rng(42, 3), b = new Rng(42, 3), c = new Rng(42, 4);
    const xa = Array.from({ length: 50 }, () => a.nextU32());
    expect(Array.from({ length: 50 }, () => b.nextU32())).toEqual(xa);
    expect(Array.from({ length: 50 }, () => c.nextU32())).not.toEqual(xa);
    const s = a.state(), cont = Rng.fromState(JSON.parse(JSON.stringify(s)));
    expect(Array.from({ length: 20 }, () => cont.nextU32())).toEqual(Array.from({ length: 20 }, () => a.nextU32()));
  });

  test('below(n) is in range and near uniform; shuffle permutes', () => {
    const r = new Rng(9), n = 7, draws = 70000, counts = new Array(n).fill(0);
    for (let i = 0; i < draws; i++) counts[r.below(n)]++;
    // chi-square with 6 degrees of freedom: 22.5 is its 0.999 quantile
    const chi2 = counts.reduce((s, c) => s + (c - draws / n) ** 2 / (draws / n), 0);
    expect(chi2).toBeLessThan(22.5);
    const p = r.shuffle([...Array(100).keys()]);
    expect([...p].sort((x, y) => x - y)).toEqual([...Array(100).keys()]);
    expect(p).not.toEqual([...Array(100).keys()]);
    expectCode(() => r.below(0), 'INVALID_ARGUMENT', 'below');
    expectCode(() => new Rng(0.5), 'INVALID_ARGUMENT', 'safe integers');
  });
});
