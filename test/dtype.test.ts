// Conversions: bfloat16 / float16 round to nearest even and keep NaN / Inf / signed
// zero; exhaustive 16-bit round trips; int32 casts truncate and saturate.
import { tensor, zeros, Tensor } from '../src';

function bits16(t: Tensor): number[] {
  return Array.from(t.view() as Uint16Array);
}

/** Reference rounding of x to a binary format with `mant` mantissa bits (ties to even). */
function roundRef(x: number, mant: number, emin: number, emax: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const ax = Math.abs(x);
  let e = Math.floor(Math.log2(ax));
  if (2 ** e > ax) e--;
  if (2 ** (e + 1) <= ax) e++;
  e = Math.max(e, emin);
  const ulp = 2 ** (e - mant);
  const q = ax / ulp;
  let r = Math.floor(q);
  const frac = q - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r++;
  let v = r * ulp;
  if (v > (2 - 2 ** -mant) * 2 ** emax) v = Infinity;
  return Math.sign(x) * v;
}

describe('16-bit float conversions', () => {
  test('bfloat16 rounding, ties to even, NaN / Inf / -0 kept', () => {
    const values = [1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -0, Infinity, -Infinity, NaN, 3.0e38, 3.4028234e38, 1e-40, -1e-45];
    const got = tensor(values, [values.length], { dtype: 'bfloat16' }).toArray();
    const f32 = Float32Array.from(values);
    for (let i = 0; i < values.length; i++) {
      const want = roundRef(f32[i], 7, -126, 127);
      if (Number.isNaN(want)) expect(got[i]).toBeNaN();
      else expect(Object.is(got[i], want) || got[i] === want).toBe(true);
    }
    expect(got[1]).toBe(1); // tie -> even
    expect(got[2]).toBe(1 + 2 ** -6); // tie -> even (up)
    expect(Object.is(got[4], -0)).toBe(true);
  });

  test('float16 rounding: overflow to Inf at 65520, subnormals, underflow', () => {
    const values = [65504, 65519, 65520, 1e6, 2 ** -24, 2 ** -25, 2 ** -25 * 1.0001, 3 * 2 ** -25, 1 / 3, -1e-8, NaN, -Infinity];
    const got = tensor(values, [values.length], { dtype: 'float16' }).toArray();
    const f32 = Float32Array.from(values);
    for (let i = 0; i < values.length; i++) {
      const want = roundRef(f32[i], 10, -14, 15);
      if (Number.isNaN(want)) expect(got[i]).toBeNaN();
      else expect(got[i]).toBe(want);
    }
    expect(got[1]).toBe(65504);
    expect(got[2]).toBe(Infinity);
    expect(got[5]).toBe(0); // 2^-25 ties to 0 (even)
    expect(got[7]).toBe(2 ** -23); // 3·2^-25 ties to even 4·2^-25
  });

  test('random float32 values round like the reference (both formats)', () => {
    const n = 20001;
    const u = new Uint32Array(n);
    let x = 12345;
    for (let i = 0; i < n; i++) {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      u[i] = x;
    }
    const f = new Float32Array(u.buffer);
    const src = tensor(f, [n]);
    const b = src.cast('bfloat16').toArray(), h = src.cast('float16').toArray();
    for (let i = 0; i < n; i++) {
      if (Number.isNaN(f[i])) {
        expect(b[i]).toBeNaN();
        expect(h[i]).toBeNaN();
        continue;
      }
      expect(b[i]).toBe(roundRef(f[i], 7, -126, 127));
      expect(h[i]).toBe(roundRef(f[i], 10, -14, 15));
    }
  });

  test('every 16-bit pattern survives widening and narrowing', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const t = zeros([65536], { dtype });
      (t.view() as Uint16Array).set(all);
      const wide = t.cast('float32');
      const back = wide.cast(dtype);
      const got = bits16(back), w = wide.toArray(), backF = back.toArray();
      for (let i = 0; i < 65536; i++) {
        if (Number.isNaN(w[i])) expect(Number.isNaN(backF[i])).toBe(true);
        else if (got[i] !== i) throw new Error(`${dtype} pattern ${i} came back as ${got[i]}`);
      }
    }
  });

  test('int32 casts: truncation toward zero, saturation, NaN -> 0', () => {
    const f = tensor([2.7, -2.7, NaN, 3e9, -3e9, Infinity]);
    expect(Array.from(f.cast('int32').toArray())).toEqual([2, -2, 0, 2147483647, -2147483648, 2147483647]);
    const i = tensor(new Int32Array([16777217, -3, 2147483647]));
    expect(Array.from(i.cast('float32').toArray())).toEqual([16777216, -3, 2147483648]);
    expect(Array.from(i.cast('bfloat16').toArray())).toEqual([16777216, -3, 2147483648]);
  });
});
