// Layout ops (permute / transpose, concat / split, slice and their backwards) and ViT
// patchify / unpatchify against JS index math, exactly (they are copies); backwards checked
// against finite differences of the float64 forward; float32 / bfloat16 / int32; poisoned
// outputs; error codes. The layout kernel has no SIMD-specific code (memcpy rows and scalar
// tiles), so one CPU level covers it.
import { ops, tensor, Tensor, DType } from '../src';
import { describeGpu, expectClose, expectCode, finiteDiff, hostRandom, refMatmul } from './helpers';
import { disposeAll, intTensor, poisonOutputs, randTensor } from './train-util';

poisonOutputs();

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
function stridesOf(s: readonly number[]): number[] {
  const st = new Array<number>(s.length);
  let acc = 1;
  for (let i = s.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}
function unravel(i: number, s: readonly number[]): number[] {
  const idx = new Array<number>(s.length);
  for (let d = s.length - 1; d >= 0; d--) {
    idx[d] = i % s[d];
    i = Math.floor(i / s[d]);
  }
  return idx;
}

function refPermute(x: ArrayLike<number>, shape: number[], dims: number[]): Float64Array {
  const out = dims.map((d) => shape[d]), xs = stridesOf(shape);
  const r = new Float64Array(size(out));
  for (let i = 0; i < r.length; i++) {
    const o = unravel(i, out);
    let off = 0;
    dims.forEach((d, k) => (off += o[k] * xs[d]));
    r[i] = x[off];
  }
  return r;
}
function refConcat(parts: ArrayLike<number>[], shapes: number[][], dim: number): Float64Array {
  const out = [...shapes[0]];
  out[dim] = shapes.reduce((a, s) => a + s[dim], 0);
  const r = new Float64Array(size(out));
  for (let i = 0; i < r.length; i++) {
    const o = unravel(i, out);
    let k = 0, at = o[dim];
    while (at >= shapes[k][dim]) at -= shapes[k++][dim];
    const idx = [...o];
    idx[dim] = at;
    r[i] = parts[k][idx.reduce((a, v, d) => a + v * stridesOf(shapes[k])[d], 0)];
  }
  return r;
}
function refSlice(x: ArrayLike<number>, shape: number[], dim: number, s: number, e: number): Float64Array {
  const out = [...shape];
  out[dim] = e - s;
  const xs = stridesOf(shape), r = new Float64Array(size(out));
  for (let i = 0; i < r.length; i++) {
    const o = unravel(i, out);
    o[dim] += s;
    r[i] = x[o.reduce((a, v, d) => a + v * xs[d], 0)];
  }
  return r;
}
function refSliceBackward(dy: ArrayLike<number>, shape: number[], dim: number, s: number, e: number): Float64Array {
  const r = new Float64Array(size(shape));
  const part = [...shape];
  part[dim] = e - s;
  const ws = stridesOf(shape);
  for (let i = 0; i < size(part); i++) {
    const o = unravel(i, part);
    o[dim] += s;
    r[o.reduce((a, v, d) => a + v * ws[d], 0)] = dy[i];
  }
  return r;
}
function refPatchify(img: ArrayLike<number>, B: number, C: number, H: number, W: number, p: number): Float64Array {
  const gh = H / p, gw = W / p, D = C * p * p;
  const r = new Float64Array(B * gh * gw * D);
  for (let b = 0; b < B; b++)
    for (let gy = 0; gy < gh; gy++)
      for (let gx = 0; gx < gw; gx++)
        for (let c = 0; c < C; c++)
          for (let py = 0; py < p; py++)
            for (let px = 0; px < p; px++)
              r[((b * gh + gy) * gw + gx) * D + (c * p + py) * p + px] = img[((b * C + c) * H + gy * p + py) * W + gx * p + px];
  return r;
}

function expectSame(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length}, want ${want.length}`);
  for (let i = 0; i < want.length; i++)
    if (got[i] !== want[i]) throw new Error(`${what}: element ${i} = ${got[i]}, want ${want[i]}`);
}

/** A tensor of dtype with seeded values (int32: small integers), and its stored values. */
function make(shape: number[], seed: number, dtype: DType = 'float32'): { t: Tensor; host: Float64Array } {
  if (dtype !== 'int32') return randTensor(shape, seed, dtype);
  const v = Int32Array.from(hostRandom(size(shape), seed), (x) => Math.round(x * 1000));
  return { t: intTensor(v, shape), host: Float64Array.from(v) };
}

const norm = (d: number, n: number) => (d < 0 ? d + n : d);

describe('permute / transpose vs index math', () => {
  const cases: [number[], number[]][] = [
    [[2, 3, 4, 5], [0, 2, 1, 3]],
    [[2, 3, 4, 5], [3, 1, 2, 0]],
    [[2, 3, 4, 5], [-1, 0, -2, 1]],
    [[2, 37, 4, 16], [0, 2, 1, 3]], // [B,S,H,D] -> [B,H,S,D]
    [[2, 4, 37, 16], [0, 2, 1, 3]], // and back
    [[65, 97], [1, 0]], // a transpose: tiles
    [[300, 257], [1, 0]], // several tile strips per thread
    [[5, 33, 40], [2, 1, 0]],
    [[3, 1, 7], [2, 0, 1]], // a size-1 dim
    [[1, 1, 1], [2, 1, 0]],
    [[0, 3], [1, 0]],
    [[], []],
    [[2, 3, 2, 3, 2, 3, 2, 2], [7, 6, 5, 4, 3, 2, 1, 0]], // 8 dims
  ];
  for (const dtype of ['float32', 'bfloat16', 'int32'] as DType[])
    test(dtype, () => {
      cases.forEach(([shape, dims], c) => {
        const x = make(shape, c + 1, dtype);
        const y = ops.permute(x.t, dims);
        const nd = dims.map((d) => norm(d, shape.length));
        expect(y.shape).toEqual(nd.map((d) => shape[d]));
        expect(y.dtype).toBe(dtype);
        expectSame(y.toArray(), refPermute(x.host, shape, nd), `${dtype} ${JSON.stringify([shape, dims])}`);
        // Backward: permute by the inverse gives x back.
        const back = ops.permute(y, ops.invertPermutation(dims));
        expectSame(back.toArray(), x.host, `${JSON.stringify([shape, dims])} inverse`);
        disposeAll(x.t, y, back);
      });
    });
  test('transpose(x, dim0, dim1) with negative dims, and invertPermutation', () => {
    const x = make([3, 4, 5], 20);
    const y = ops.transpose(x.t, -1, 0);
    expect(y.shape).toEqual([5, 4, 3]);
    expectSame(y.toArray(), refPermute(x.host, [3, 4, 5], [2, 1, 0]), 'transpose');
    const z = ops.transpose(x.t, 1, -2); // the same dim: a plain copy
    expectSame(z.toArray(), x.host, 'transpose(1, -2)');
    expect(ops.invertPermutation([2, 0, 1])).toEqual([1, 2, 0]);
    expect(ops.invertPermutation([-1, 0, 1])).toEqual([1, 2, 0]);
    disposeAll(x.t, y, z);
  });
});

describe('concat / split / concatBackward vs index math', () => {
  const cases: [number[][], number][] = [
    [[[2, 3, 4], [2, 0, 4], [2, 5, 4]], 1],
    [[[2, 3, 4], [2, 3, 1]], -1],
    [[[1, 7], [4, 7], [2, 7]], 0],
    [[[3, 65, 40], [3, 97, 40]], 1],
    [[[5], [0], [6]], 0],
  ];
  for (const dtype of ['float32', 'bfloat16', 'int32'] as DType[])
    test(dtype, () => {
      cases.forEach(([shapes, dim], c) => {
        const xs = shapes.map((s, i) => make(s, 10 * c + i + 1, dtype));
        const d = norm(dim, shapes[0].length);
        const y = ops.concat(xs.map((x) => x.t), dim);
        const want = refConcat(xs.map((x) => x.host), shapes, d);
        expectSame(y.toArray(), want, `${dtype} concat ${JSON.stringify(shapes)}`);
        const parts = ops.concatBackward(y, shapes.map((s) => s[d]), dim);
        parts.forEach((p, i) => {
          expect(p.shape).toEqual(shapes[i]);
          expectSame(p.toArray(), xs[i].host, `${dtype} split part ${i}`);
        });
        disposeAll(xs.map((x) => x.t), y, parts);
      });
    });
  test('split by a chunk length (the last piece shorter), as torch.split', () => {
    const x = make([3, 7, 2], 30);
    const parts = ops.split(x.t, 3, -2);
    expect(parts.map((p) => p.shape)).toEqual([[3, 3, 2], [3, 3, 2], [3, 1, 2]]);
    let at = 0;
    for (const p of parts) {
      expectSame(p.toArray(), refSlice(x.host, [3, 7, 2], 1, at, at + p.shape[1]), 'piece');
      at += p.shape[1];
    }
    const empty = ops.split(make([0, 2], 31).t, 4, 0);
    expect(empty.map((p) => p.shape)).toEqual([[0, 2]]);
    disposeAll(x.t, parts, empty);
  });
});

describe('slice / sliceBackward vs index math (Python bounds)', () => {
  const shape = [4, 7, 5];
  const cases: [number, number, number | undefined, number, number][] = [
    // dim, start, end -> normalized start, end along that dim
    [1, 2, 5, 2, 5],
    [1, -3, undefined, 4, 7],
    [1, -100, 100, 0, 7],
    [1, 5, 2, 5, 5], // empty
    [-1, 0, -1, 0, 4],
    [0, 3, 4, 3, 4],
    [2, 0, 5, 0, 5],
  ];
  for (const dtype of ['float32', 'bfloat16', 'int32'] as DType[])
    test(dtype, () => {
      cases.forEach(([dim, start, end, s, e], c) => {
        const x = make(shape, c + 40, dtype);
        const d = norm(dim, 3);
        const y = ops.slice(x.t, dim, start, end);
        const ps = [...shape];
        ps[d] = e - s;
        expect(y.shape).toEqual(ps);
        expectSame(y.toArray(), refSlice(x.host, shape, d, s, e), `${dtype} slice ${dim} ${start}:${end}`);
        const dx = ops.sliceBackward(y, shape, dim, start, end);
        expectSame(dx.toArray(), refSliceBackward(y.toArray(), shape, d, s, e), `${dtype} sliceBackward ${dim} ${start}:${end}`);
        disposeAll(x.t, y, dx);
      });
    });
  test('a large slice (rows split into pieces across threads)', () => {
    const x = make([3, 300000], 50);
    const y = ops.slice(x.t, 1, 7, 299000), dx = ops.sliceBackward(y, [3, 300000], 1, 7, 299000);
    const yv = y.toArray(), dv = dx.toArray(), L = 299000 - 7;
    for (let r = 0; r < 3; r++) {
      for (let j = 0; j < L; j++)
        if (yv[r * L + j] !== x.host[r * 300000 + 7 + j]) throw new Error(`slice [${r},${j}]`);
      for (let j = 0; j < 300000; j++) {
        const want = j >= 7 && j < 299000 ? x.host[r * 300000 + j] : 0;
        if (dv[r * 300000 + j] !== want) throw new Error(`sliceBackward [${r},${j}]`);
      }
    }
    disposeAll(x.t, y, dx);
  });
});

describe('patchify / unpatchify', () => {
  const cases: [number, number, number, number, number][] = [
    [2, 3, 8, 12, 4],
    [1, 1, 5, 5, 5],
    [3, 2, 6, 6, 1],
    [2, 3, 6, 4, 2],
    [2, 3, 28, 28, 14],
    [0, 3, 4, 4, 2],
  ];
  for (const dtype of ['float32', 'bfloat16'] as DType[])
    test(`${dtype}: against index math, and the round trip`, () => {
      cases.forEach(([B, C, H, W, p], c) => {
        const x = make([B, C, H, W], c + 60, dtype);
        const y = ops.patchify(x.t, p);
        expect(y.shape).toEqual([B, (H / p) * (W / p), C * p * p]);
        expectSame(y.toArray(), refPatchify(x.host, B, C, H, W, p), `patchify ${[B, C, H, W, p]}`);
        const back = ops.unpatchify(y, { channels: C, height: H, width: W, patchSize: p });
        expect(back.shape).toEqual([B, C, H, W]);
        expectSame(back.toArray(), x.host, `round trip ${[B, C, H, W, p]}`);
        disposeAll(x.t, y, back);
      });
    });
  test('patches · Wᵀ equals a stride-p Conv2d with weight [width, C, p, p]', () => {
    const B = 2, C = 3, H = 8, W = 12, p = 4, width = 5, gh = H / p, gw = W / p;
    const img = make([B, C, H, W], 70), wc = make([width, C, p, p], 71);
    const patches = ops.patchify(img.t, p);
    const emb = ops.matmul(patches.reshape([B * gh * gw, C * p * p]), wc.t.reshape([width, C * p * p]), { transB: true });
    const conv = new Float64Array(B * gh * gw * width); // [B, gh*gw, width]
    for (let b = 0; b < B; b++)
      for (let o = 0; o < width; o++)
        for (let gy = 0; gy < gh; gy++)
          for (let gx = 0; gx < gw; gx++) {
            let acc = 0;
            for (let c = 0; c < C; c++)
              for (let py = 0; py < p; py++)
                for (let px = 0; px < p; px++)
                  acc += wc.host[((o * C + c) * p + py) * p + px] * img.host[((b * C + c) * H + gy * p + py) * W + gx * p + px];
            conv[((b * gh + gy) * gw + gx) * width + o] = acc;
          }
    expectClose(emb.toArray(), conv, 1e-5, 'patch embedding vs conv');
    disposeAll(img.t, wc.t, patches, emb);
  });
});

describe('backwards vs finite differences of the float64 forwards', () => {
  // Each op is linear: with f(x) = Σ c · op(x), ∂f/∂x = backward(c).
  function check(n: number, fwd: (x: Float64Array) => Float64Array, c: { t: Tensor; host: Float64Array }, bwd: Tensor, what: string) {
    const x = Float64Array.from(hostRandom(n, 80));
    const f = (v: Float64Array) => fwd(v).reduce((a, y, i) => a + y * c.host[i], 0);
    expectClose(bwd.toArray(), finiteDiff(f, x), 1e-8, what);
    disposeAll(c.t, bwd);
  }
  test('permute, concat, slice, patchify', () => {
    const c1 = randTensor([4, 2, 3], 81);
    check(24, (x) => refPermute(x, [2, 3, 4], [2, 0, 1]), c1, ops.permute(c1.t, ops.invertPermutation([2, 0, 1])), 'permute');
    const c2 = randTensor([2, 5], 82);
    const parts = ops.concatBackward(c2.t, [2, 3], 1);
    const flat = parts.map((p) => p.reshape([-1]));
    const g2 = ops.concat(flat, 0); // x = [2,2] then [2,3], flattened
    check(10, (x) => refConcat([x.subarray(0, 4), x.subarray(4)], [[2, 2], [2, 3]], 1), c2, g2, 'concat');
    disposeAll(parts, flat);
    const c3 = randTensor([3, 2], 83);
    check(15, (x) => refSlice(x, [3, 5], 1, 1, 3), c3, ops.sliceBackward(c3.t, [3, 5], 1, 1, 3), 'slice');
    const c4 = randTensor([1, 4, 8], 84);
    check(32, (x) => refPatchify(x, 1, 2, 4, 4, 2), c4, ops.unpatchify(c4.t, { channels: 2, height: 4, width: 4, patchSize: 2 }), 'patchify');
  });
});

describe('layout errors', () => {
  const x = make([2, 3, 4], 90).t;
  afterAll(() => x.dispose());
  test('dims and bounds', () => {
    expectCode(() => ops.permute(x, [0, 1]), 'INVALID_ARGUMENT', /dims/);
    expectCode(() => ops.permute(x, [0, 1, 1]), 'INVALID_ARGUMENT', /not a permutation/);
    expectCode(() => ops.permute(x, [0, 1, 3]), 'INVALID_ARGUMENT', /outside \[-3, 3\)/);
    expectCode(() => ops.transpose(x, 0, -4), 'INVALID_ARGUMENT', /dim1/);
    expectCode(() => ops.slice(x, 3, 0, 1), 'INVALID_ARGUMENT', /dim 3/);
    expectCode(() => ops.slice(x, 0, 0.5, 1), 'INVALID_ARGUMENT', /start/);
    expectCode(() => ops.invertPermutation([0, 0]), 'INVALID_ARGUMENT', /permutation/);
  });
  test('shapes and dtypes', () => {
    expectCode(() => ops.concat([x, make([2, 3, 5], 91).t], 1), 'SHAPE_MISMATCH', /except along dim 1/);
    expectCode(() => ops.concat([x, make([2, 3, 4], 92, 'bfloat16').t], 0), 'DTYPE_MISMATCH', /bfloat16/);
    expectCode(() => ops.concat([], 0), 'INVALID_ARGUMENT', /non-empty/);
    expectCode(() => ops.split(x, [1, 1], 1), 'SHAPE_MISMATCH', /add up to 2/);
    expectCode(() => ops.split(x, 0, 1), 'INVALID_ARGUMENT', /sizes/);
    expectCode(() => ops.sliceBackward(x, [2, 5, 4], 1, 0, 2), 'SHAPE_MISMATCH', /must be \[2,2,4\]/);
    expectCode(() => ops.patchify(make([1, 3, 10, 12], 93).t, 4), 'SHAPE_MISMATCH', /H = 10 and W = 12 must be multiples of patchSize 4/);
    expectCode(() => ops.patchify(make([3, 8, 8], 94).t, 4), 'SHAPE_MISMATCH', /4-D/);
    expectCode(() => ops.unpatchify(make([1, 4, 48], 95).t, { channels: 3, height: 8, width: 8, patchSize: 2 }), 'SHAPE_MISMATCH', /\[B,16,12\]/);
    const d = tensor([1, 2], [2]);
    d.dispose();
    expectCode(() => ops.slice(d, 0, 0, 1), 'DISPOSED');
  });
});

describeGpu('layout ops on CUDA tensors', () => {
  test('permute, concat, split, slice, sliceBackward, patchify, unpatchify: bit for bit as on the CPU', () => {
    const same = (g: Tensor, c: Tensor) => {
      expect(g.device).toBe('cuda:0');
      expect(g.shape).toEqual(c.shape);
      expect(Array.from(g.toArray())).toEqual(Array.from(c.toArray()));
      disposeAll(g, c);
    };
    for (const dtype of ['float32', 'bfloat16', 'int32'] as DType[]) {
      const x = dtype === 'int32' ? intTensor(Array.from({ length: 2 * 3 * 5 * 7 }, (_, i) => i * 7 - 50), [2, 3, 5, 7]) : randTensor([2, 3, 5, 7], 81, dtype).t;
      const xg = x.to('cuda');
      same(ops.permute(xg, [2, 0, 3, 1]), ops.permute(x, [2, 0, 3, 1]));
      same(ops.transpose(xg, -1, 1), ops.transpose(x, -1, 1));
      const parts = ops.split(x, [1, 0, 4], 2), partsG = ops.split(xg, [1, 0, 4], 2);
      parts.forEach((p, i) => same(partsG[i], p));
      same(ops.concat([xg, xg], 3), ops.concat([x, x], 3));
      same(ops.slice(xg, 1, 1, -1), ops.slice(x, 1, 1, -1));
      const s = ops.slice(x, 3, 2, 6), sg = s.to('cuda');
      same(ops.sliceBackward(sg, x.shape, 3, 2, 6), ops.sliceBackward(s, x.shape, 3, 2, 6));
      disposeAll(x, xg, s, sg);
      const im = dtype === 'int32' ? intTensor(Array.from({ length: 2 * 3 * 8 * 12 }, (_, i) => i), [2, 3, 8, 12]) : randTensor([2, 3, 8, 12], 82, dtype).t;
      const img = im.to('cuda');
      const geo = { channels: 3, height: 8, width: 12, patchSize: 4 };
      const pt = ops.patchify(im, 4), ptg = ops.patchify(img, 4);
      const back = ops.unpatchify(ptg, geo);
      expect(Array.from(back.toArray())).toEqual(Array.from(im.toArray()));  // a round trip on the device
      same(back, ops.unpatchify(pt, geo));
      same(ptg, pt);
      disposeAll(im, img);
    }
  });
});
