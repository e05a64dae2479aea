// retrieval.test.ts: Recall@K both ways and zero-shot accuracy on hand-made embeddings whose
// rankings are checked by eye (angles in the plane), exact chance values by hand, tie
// breaking, scale invariance, a Tensor input, a brute-force cross-check on random data
// larger than one query block, and argument errors.
import { evaluateRetrieval, evaluateZeroShot, tensor } from '../src';
import { expectCode, hostRandom } from './helpers';

const v = (...x: number[]): Float32Array => Float32Array.from(x);
const close = (a: Record<string, number>, b: Record<string, number>): void => {
  expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
  for (const k of Object.keys(b)) expect(a[k]).toBeCloseTo(b[k], 12);
};

// Images at 0, 90 and 45 degrees; texts at the angles below. Cosine falls with the angle
// difference, so every ranking can be read off the angles.
//   text:  T0 5.7deg (img 0)  T1 90deg (img 0)  T2 78.7deg (img 1)  T3 0deg (img 2)  T4 50.2deg (img 2)
const images = [v(1, 0), v(0, 1), v(1, 1)];
const texts = [v(1, 0.1), v(0, 1), v(0.2, 1), v(1, 0), v(1, 1.2)];
const textImage = Int32Array.from([0, 0, 1, 2, 2]);

describe('evaluateRetrieval', () => {
  test('hand example: recall both ways and exact chance', () => {
    const r = evaluateRetrieval({ imageEmbeds: images, textEmbeds: texts, textImage, ks: [1, 2, 3] });
    // t2i ranks of the own image: T0 -> [I0, I2, I1] 0; T1 -> [I1, I2, I0] 2; T2 -> [I1, I2, I0] 0;
    // T3 -> [I0, I2, I1] 1; T4 -> [I2, I1, I0] 0
    close(r.t2i, { r1: 3 / 5, r2: 4 / 5, r3: 1 });
    // i2t: I0 -> [T3, T0, ...] best own T0 at 1; I1 -> [T1, T2, ...] T2 at 1; I2 -> [T4, ...] T4 at 0
    close(r.i2t, { r1: 1 / 3, r2: 1, r3: 1 });
    // chance t2i = k / 3; i2t with T = 5 and c = (2, 1, 2):
    //   k=1: (2/5 + 1/5 + 2/5) / 3 = 1/3
    //   k=2: (1 - 3/10, 1 - 6/10, 1 - 3/10) -> (0.7 + 0.4 + 0.7) / 3 = 0.6
    //   k=3: (1 - 1/10, 1 - 4/10, 1 - 1/10) -> (0.9 + 0.6 + 0.9) / 3 = 0.8
    close(r.chance.t2i, { r1: 1 / 3, r2: 2 / 3, r3: 1 });
    close(r.chance.i2t, { r1: 1 / 3, r2: 0.6, r3: 0.8 });
    expect(r.images).toBe(3);
    expect(r.captions).toBe(5);
  });

  test('default ks, K past the candidates, scale invariance, a Tensor input, float64 rows', () => {
    const r = evaluateRetrieval({ imageEmbeds: images, textEmbeds: texts, textImage });
    close(r.t2i, { r1: 3 / 5, r5: 1, r10: 1 });
    close(r.i2t, { r1: 1 / 3, r5: 1, r10: 1 });
    close(r.chance.t2i, { r1: 1 / 3, r5: 1, r10: 1 });
    close(r.chance.i2t, { r1: 1 / 3, r5: 1, r10: 1 });
    const scaled = texts.map((t, i) => Float64Array.from(t, (x) => x * (0.01 + 7 * i)));
    const t = tensor(Float32Array.from(images.flatMap((x) => [...x].map((y) => y * 3))), [3, 2]);
    try {
      const s = evaluateRetrieval({ imageEmbeds: t, textEmbeds: scaled, textImage, ks: [1, 2, 3] });
      close(s.t2i, { r1: 3 / 5, r2: 4 / 5, r3: 1 });
      close(s.i2t, { r1: 1 / 3, r2: 1, r3: 1 });
    } finally {
      t.dispose();
    }
  });

  test('ties go to the lower index; an image without captions is left out of i2t', () => {
    // images 0 and 1 identical; image 2 has no caption
    const imgs = [v(1, 0), v(1, 0), v(0, 1)];
    const txts = [v(2, 0), v(3, 0)];
    const r = evaluateRetrieval({ imageEmbeds: imgs, textEmbeds: txts, textImage: Int32Array.from([0, 1]), ks: [1, 2] });
    // text 0 -> image 0 wins the tie (rank 0); text 1 -> image 1 loses it (rank 1)
    close(r.t2i, { r1: 1 / 2, r2: 1 });
    // image 0: its T0 ties with T1 and comes first; image 1: its T1 comes after T0 (rank 1)
    close(r.i2t, { r1: 1 / 2, r2: 1 });
    // chance over the 2 captioned images, T = 2, c = 1 each: k=1 -> 1/2, k=2 -> 1
    close(r.chance.i2t, { r1: 1 / 2, r2: 1 });
    close(r.chance.t2i, { r1: 1 / 3, r2: 2 / 3 });
    // a zero vector scores 0 against everything (a tie with orthogonal candidates)
    const z = evaluateRetrieval({ imageEmbeds: [v(0, 1), v(0, 0)], textEmbeds: [v(1, 0)], textImage: Int32Array.from([1]), ks: [1] });
    expect(z.t2i.r1).toBe(0); // image 0 scores 0 too and has the lower index
  });

  test('matches a brute-force ranking on random data over several query blocks', () => {
    const I = 70, T = 151, d = 7;
    const imgs = Array.from({ length: I }, (_, i) => hostRandom(d, 1000 + i));
    const ti = Int32Array.from({ length: T }, (_, t) => (t * 37) % (I - 3)); // 3 images without captions
    // texts near their image, with noise, so recall is neither 0 nor 1
    const txts = Array.from({ length: T }, (_, t) => {
      const n = hostRandom(d, 5000 + t);
      return Float32Array.from(imgs[ti[t]], (x, k) => x + 1.2 * n[k]);
    });
    const ks = [1, 3, 10];
    const r = evaluateRetrieval({ imageEmbeds: imgs, textEmbeds: txts, textImage: ti, ks });
    const cos = (a: Float32Array, b: Float32Array): number => {
      let s = 0, na = 0, nb = 0;
      for (let k = 0; k < d; k++) {
        s += a[k] * b[k];
        na += a[k] * a[k];
        nb += b[k] * b[k];
      }
      return s / Math.sqrt(na * nb);
    };
    const order = (q: Float32Array, cands: Float32Array[]): number[] =>
      cands.map((c, i) => [cos(q, c), i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).map((x) => x[1]);
    const t2i = ks.map(() => 0), i2t = ks.map(() => 0);
    txts.forEach((q, t) => {
      const rank = order(q, imgs).indexOf(ti[t]);
      ks.forEach((k, j) => (t2i[j] += rank < k ? 1 : 0));
    });
    let captioned = 0;
    imgs.forEach((q, i) => {
      const o = order(q, txts);
      const own = o.map((t, pos) => (ti[t] === i ? pos : Infinity));
      const rank = Math.min(...own);
      if (rank === Infinity) return;
      captioned++;
      ks.forEach((k, j) => (i2t[j] += rank < k ? 1 : 0));
    });
    expect(captioned).toBe(I - 3);
    ks.forEach((k, j) => {
      expect(r.t2i[`r${k}`]).toBeCloseTo(t2i[j] / T, 12);
      expect(r.i2t[`r${k}`]).toBeCloseTo(i2t[j] / captioned, 12);
    });
    expect(r.t2i.r10).toBeGreaterThan(r.t2i.r1);
    expect(r.t2i.r1).toBeGreaterThan(0);
    expect(r.t2i.r10).toBeLessThan(1);
    expect(r.t2i.r1).toBeGreaterThan(r.chance.t2i.r1);
  });

  test('bad arguments name what is wrong', () => {
    expectCode(() => evaluateRetrieval({ imageEmbeds: images, textEmbeds: [v(1, 0, 0)], textImage: Int32Array.from([0]) }), 'SHAPE_MISMATCH', 'dims');
    expectCode(() => evaluateRetrieval({ imageEmbeds: images, textEmbeds: texts, textImage: Int32Array.from([0, 1]) }), 'SHAPE_MISMATCH', 'textImage');
    expectCode(() => evaluateRetrieval({ imageEmbeds: images, textEmbeds: texts, textImage: Int32Array.from([0, 0, 1, 2, 3]) }), 'INVALID_ARGUMENT', 'textImage[4]');
    expectCode(() => evaluateRetrieval({ imageEmbeds: images, textEmbeds: texts, textImage: [0, 0, 1, 2, 2] as unknown as Int32Array }), 'INVALID_ARGUMENT', 'Int32Array');
    expectCode(() => evaluateRetrieval({ imageEmbeds: [v(1, NaN), v(0, 1), v(1, 1)], textEmbeds: texts, textImage }), 'INVALID_ARGUMENT', 'imageEmbeds row 0');
    expectCode(() => evaluateRetrieval({ imageEmbeds: images, textEmbeds: texts, textImage, ks: [0] }), 'INVALID_ARGUMENT', 'ks');
    expectCode(() => evaluateRetrieval({ imageEmbeds: [], textEmbeds: texts, textImage }), 'INVALID_ARGUMENT', 'empty');
    expectCode(() => evaluateRetrieval({ imageEmbeds: [v(1, 0), v(1)], textEmbeds: texts, textImage }), 'SHAPE_MISMATCH', 'imageEmbeds[1]');
    const t = tensor(Float32Array.from([1, 2, 3]), [3]);
    try {
      expectCode(() => evaluateRetrieval({ imageEmbeds: t, textEmbeds: texts, textImage }), 'SHAPE_MISMATCH', '2-D');
    } finally {
      t.dispose();
    }
  });
});

describe('evaluateZeroShot', () => {
  test('hand example: predictions, accuracy, per class, chance', () => {
    // classes along the axes (and class 3 opposite class 0, with no images)
    const classEmbeds = [v(1, 0, 0), v(0, 1, 0), v(0, 0, 1), v(-1, 0, 0)];
    // (2,1,0) -> 0; (0,0.5,3) -> 2; (1,1.5,0) -> 1; (1,1,0) ties 0 and 1 -> 0 (lower index)
    const imageEmbeds = [v(2, 1, 0), v(0, 0.5, 3), v(1, 1.5, 0), v(1, 1, 0)];
    const labels = Int32Array.from([0, 2, 2, 1]);
    const r = evaluateZeroShot({ imageEmbeds, classEmbeds, labels });
    expect(Array.from(r.predictions)).toEqual([0, 2, 1, 0]);
    expect(r.accuracy).toBe(0.5);
    expect(r.perClass).toEqual([1, 0, 0.5, null]);
    expect(r.chance).toBe(0.25);
    expect(r.classes).toBe(4);
    expect(r.images).toBe(4);
  });

  test('bad arguments', () => {
    const c = [v(1, 0), v(0, 1)];
    expectCode(() => evaluateZeroShot({ imageEmbeds: [v(1, 0)], classEmbeds: c, labels: Int32Array.from([2]) }), 'INVALID_ARGUMENT', 'labels[0]');
    expectCode(() => evaluateZeroShot({ imageEmbeds: [v(1, 0)], classEmbeds: c, labels: Int32Array.from([0, 1]) }), 'SHAPE_MISMATCH', 'labels');
    expectCode(() => evaluateZeroShot({ imageEmbeds: [v(1, 0, 0)], classEmbeds: c, labels: Int32Array.from([0]) }), 'SHAPE_MISMATCH', 'classEmbeds');
    expectCode(() => evaluateZeroShot({ imageEmbeds: [v(Infinity, 0)], classEmbeds: c, labels: Int32Array.from([0]) }), 'INVALID_ARGUMENT', 'non-finite');
  });
});
