// refs.test.ts: sanity tests of the float64 references and fixture writers under test/ref/
// (self-consistency of the math, the safetensors writer's format and rounding, the HF
// directory layouts) and, where python3 with numpy is present, a cross-check against an
// independent vectorised numpy implementation (test/ref/np_ref.py) that reads the fixture
// directories with its own safetensors parser.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { relErr, expectClose, hostRandom } from '../helpers';
import {
  roundToDtype, storedValues, safetensorsBytes, writeSafetensorsFile, readSafetensorsHeader, readSafetensorsTensor, encodeTensor,
} from './safetensors-writer';
import { RefWeights, erf, gelu, makeRng, roundWeights } from './common';
import {
  randomLlamaConfig, randomLlamaWeights, llamaForwardRef, llamaLogitsRef, llamaInvFreq, applyRope, poolRef,
  positionIdsFromMask, arangePositionIds, writeHfLlamaDir, LlamaRefConfig, randomTokenIds,
} from './llama-ref';
import { randomClipVisionConfig, randomClipVisionWeights, clipVisionForwardRef, writeHfClipVisionDir, clipNumPatches } from './clip-ref';
import { randomAdapterWeights, adapterForwardRef, ADAPTER_LN_EPS } from './adapter-ref';
import { layerNormRow } from './common';

let tmp = '';
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llm2clip-refs-'));
});
afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const randomIds = randomTokenIds;

/** Rows [s0, s1) of sequence b of a [B, S, H] array. */
function rows(x: Float64Array, S: number, H: number, b: number, s0: number, s1: number): Float64Array {
  return x.slice((b * S + s0) * H, (b * S + s1) * H);
}

describe('safetensors writer', () => {
  test('header layout, offsets and values round-trip (F32, BF16, F16, I64)', () => {
    const a = Float64Array.from(hostRandom(15, 11), (v) => v * 3);
    const b = Float64Array.from(hostRandom(6, 12));
    const tensors = {
      'x.weight': { dtype: 'BF16' as const, shape: [3, 5], data: a },
      'y': { dtype: 'F32' as const, shape: [6], data: b },
      'z.half': { dtype: 'F16' as const, shape: [2, 3], data: b },
      'ids': { dtype: 'I64' as const, shape: [1, 4], data: [0, 1, 2, -7] },
    };
    const file = path.join(tmp, 'a.safetensors');
    writeSafetensorsFile(file, tensors);
    const bytes = new Uint8Array(fs.readFileSync(file));
    const { header, headerLength, dataStart } = readSafetensorsHeader(file);
    expect(headerLength % 8).toBe(0);
    expect(dataStart % 8).toBe(0);
    // padding is spaces only, after the JSON
    const raw = Buffer.from(bytes.subarray(8, 8 + headerLength)).toString('utf8');
    expect(/^ *$/.test(raw.slice(raw.lastIndexOf('}') + 1))).toBe(true);
    expect(header.__metadata__).toEqual({ format: 'pt' });
    let end = 0;
    for (const [name, t] of Object.entries(tensors)) {
      const e = header[name] as { dtype: string; shape: number[]; data_offsets: [number, number] };
      expect(e.dtype).toBe(t.dtype);
      expect(e.shape).toEqual(t.shape);
      const eb = { F32: 4, BF16: 2, F16: 2, I64: 8 }[t.dtype];
      expect(e.data_offsets).toEqual([end, end + t.data.length * eb]);
      end = e.data_offsets[1];
      const back = readSafetensorsTensor(bytes, name);
      expect(Array.from(back.data)).toEqual(Array.from(storedValues(t.data, t.dtype)));
    }
    expect(bytes.length).toBe(dataStart + end);
    // the stored values really are rounded (bf16 keeps 8 significant bits)
    expect(relErr(storedValues(a, 'BF16'), a)).toBeGreaterThan(1e-4);
    expect(relErr(storedValues(a, 'BF16'), a)).toBeLessThan(2 ** -8);
    expect(() => safetensorsBytes({ bad: { dtype: 'F32', shape: [2, 2], data: [1, 2, 3] } })).toThrow(/bad/);
  });

  test('BF16 rounds to nearest even, once, from float64', () => {
    expect(roundToDtype(1 + 2 ** -8, 'BF16')).toBe(1); // tie -> even
    expect(roundToDtype(1 + 3 * 2 ** -8, 'BF16')).toBe(1 + 2 ** -6); // tie -> even (up)
    expect(roundToDtype(1 + 2 ** -8 + 2 ** -40, 'BF16')).toBe(1 + 2 ** -7); // no double rounding through float32
    expect(roundToDtype(-(1 + 2 ** -8 + 2 ** -40), 'BF16')).toBe(-(1 + 2 ** -7));
    expect(roundToDtype(3.4e38, 'BF16')).toBe(Infinity); // above the largest bf16 (~3.39e38) + half ulp
    expect(roundToDtype(2 ** -133, 'BF16')).toBe(2 ** -133); // smallest subnormal
    expect(roundToDtype(2 ** -134, 'BF16')).toBe(0); // tie with 0 -> even (0)
    // against the classic float32 bit trick (exact for float32 inputs: one rounding)
    const v = Float32Array.from(hostRandom(4000, 21), (x, i) => x * 2 ** ((i % 50) - 25));
    const enc = encodeTensor(v, 'BF16');
    const dv = new DataView(enc.buffer);
    const u = new Uint32Array(v.buffer);
    for (let i = 0; i < v.length; i++) {
      const want = ((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16) & 0xffff;
      if (dv.getUint16(i * 2, true) !== want) throw new Error(`bf16 bits differ at ${i} (${v[i]})`);
    }
  });

  test('F16 rounding: ties to even, subnormals, overflow, bit patterns', () => {
    expect(roundToDtype(1 + 2 ** -11, 'F16')).toBe(1);
    expect(roundToDtype(1 + 3 * 2 ** -11, 'F16')).toBe(1 + 2 ** -9);
    expect(roundToDtype(65504, 'F16')).toBe(65504);
    expect(roundToDtype(65519.99, 'F16')).toBe(65504);
    expect(roundToDtype(65520, 'F16')).toBe(Infinity);
    expect(roundToDtype(2 ** -24, 'F16')).toBe(2 ** -24);
    expect(roundToDtype(2 ** -25, 'F16')).toBe(0);
    expect(roundToDtype(3 * 2 ** -25, 'F16')).toBe(2 ** -23);
    const enc = encodeTensor([1 / 3, -2, 65504, 2 ** -24, Infinity, -0, 2 ** -14], 'F16');
    const dv = new DataView(enc.buffer);
    expect([0, 1, 2, 3, 4, 5, 6].map((i) => dv.getUint16(i * 2, true))).toEqual([0x3555, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x8000, 0x0400]);
  });
});

describe('math helpers', () => {
  test('erf and gelu against known values', () => {
    const known: [number, number][] = [[0, 0], [0.5, 0.5204998778130465], [1, 0.8427007929497149], [-1.5, -0.9661051464753108],
      [2.4, 0.9993114861033550], [3, 0.9999779095030014], [-4.2, -0.9999999971445058]];
    for (const [x, e] of known) expect(Math.abs(erf(x) - e)).toBeLessThan(2e-15);
    expect(gelu(1)).toBeCloseTo(0.8413447460685429, 14);
  });
});

describe('llama reference', () => {
  const cfg = randomLlamaConfig();
  const w = randomLlamaWeights(cfg, 101);
  const V = cfg.vocab_size, H = cfg.hidden_size;

  test('config and weight names follow HF (GQA, head_dim != hidden / heads, biases per model type)', () => {
    expect(w['layers.0.self_attn.q_proj.weight'].shape).toEqual([64, 48]);
    expect(w['layers.1.self_attn.k_proj.weight'].shape).toEqual([32, 48]);
    expect(w['layers.0.self_attn.o_proj.weight'].shape).toEqual([48, 64]);
    expect(w['lm_head.weight'].shape).toEqual([97, 48]);
    expect(w['layers.0.self_attn.q_proj.bias']).toBeUndefined();
    const q = randomLlamaWeights(randomLlamaConfig({ modelType: 'qwen2', tie_word_embeddings: true }), 3);
    expect(q['layers.0.self_attn.q_proj.bias'].shape).toEqual([64]);
    expect(q['layers.0.self_attn.o_proj.bias']).toBeUndefined();
    expect(q['lm_head.weight']).toBeUndefined();
    const l = randomLlamaWeights(randomLlamaConfig({ attention_bias: true }), 3);
    expect(l['layers.1.self_attn.o_proj.bias'].shape).toEqual([48]);
    expect(randomLlamaConfig({ modelType: 'mistral' }).attention_bias).toBe(false);
  });

  test('RoPE: identity at position 0, norm-preserving, relative (shift-invariant dot products)', () => {
    const inv = llamaInvFreq(cfg);
    const rng = makeRng(7);
    const q = Float64Array.from({ length: 16 }, rng), k = Float64Array.from({ length: 16 }, rng);
    const q0 = q.slice();
    applyRope(q0, 0, 16, 0, inv);
    expect(Array.from(q0)).toEqual(Array.from(q));
    const dot = (m: number, n: number) => {
      const a = q.slice(), b = k.slice();
      applyRope(a, 0, 16, m, inv);
      applyRope(b, 0, 16, n, inv);
      return a.reduce((s, x, i) => s + x * b[i], 0);
    };
    expect(Math.abs(dot(5, 2) - dot(13, 10))).toBeLessThan(1e-12);
    const q9 = q.slice();
    applyRope(q9, 0, 16, 9, inv);
    expect(Math.abs(Math.hypot(...q9) - Math.hypot(...q))).toBeLessThan(1e-13);
    expect(relErr(q9, q)).toBeGreaterThan(1e-3);
    expect(Math.abs(dot(5, 2) - dot(2, 5))).toBeGreaterThan(1e-6);
    // rotate_half pairs i with i + d/2: with only inv[0] nonzero, only x0 and x8 move
    const one = new Float64Array(8);
    one[0] = 1;
    const x = Float64Array.from({ length: 16 }, (_, i) => i + 1);
    applyRope(x, 0, 16, Math.PI / 2, one);
    expect(x[0]).toBeCloseTo(-9, 12);
    expect(x[8]).toBeCloseTo(1, 12);
    expect(x[1]).toBe(2);
  });

  test('llama3 inv_freq: the three bands of _compute_llama3_parameters; factor 1 is the identity', () => {
    const base = llamaInvFreq(randomLlamaConfig({ ropeScaling: null }));
    const sc = llamaInvFreq(cfg); // factor 8, low 1, high 4, original 64
    expect(sc[0]).toBe(base[0]); // wavelength 6.3 < 16: kept
    for (let i = 3; i < 8; i++) expect(sc[i]).toBeCloseTo(base[i] / 8, 15); // wavelength > 64: divided
    for (const i of [1, 2]) {
      const wl = (2 * Math.PI) / base[i];
      expect(wl >= 16 && wl <= 64).toBe(true);
      const s = (64 / wl - 1) / (4 - 1);
      expect(sc[i]).toBeCloseTo((1 - s) * base[i] / 8 + s * base[i], 15);
      expect(sc[i] < base[i] && sc[i] > base[i] / 8).toBe(true);
    }
    const id = llamaInvFreq(randomLlamaConfig({ ropeScaling: { rope_type: 'llama3', factor: 1, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } }));
    for (let i = 0; i < 8; i++) expect(id[i]).toBeCloseTo(base[i], 15);
  });

  test('causal vs bidirectional; causal prefix property; right padding (both modes) matches the unpadded run', () => {
    const S = 7;
    const ids = randomIds(1, S, V, 5);
    const ones = [Array(S).fill(1)];
    const bi = llamaForwardRef(cfg, w, ids, ones, { bidirectional: true });
    const ca = llamaForwardRef(cfg, w, ids, ones, { bidirectional: false });
    expect(relErr(ca, bi)).toBeGreaterThan(1e-2);
    for (const v of bi) expect(Number.isFinite(v)).toBe(true);
    // O(1) activations after the final norm
    const rms = Math.sqrt(bi.reduce((s, x) => s + x * x, 0) / bi.length);
    expect(rms > 0.3 && rms < 3).toBe(true);
    // causal: the first 4 positions only see themselves
    const pre = llamaForwardRef(cfg, w, [ids[0].slice(0, 4)], [[1, 1, 1, 1]], { bidirectional: false });
    expectClose(rows(ca, S, H, 0, 0, 4), pre, 1e-13, 'causal prefix');
    // bidirectional: the prefix does see the future
    const preBi = llamaForwardRef(cfg, w, [ids[0].slice(0, 4)], [[1, 1, 1, 1]], { bidirectional: true });
    expect(relErr(rows(bi, S, H, 0, 0, 4), preBi)).toBeGreaterThan(1e-2);
    // batch with right padding: row 1 is the first 4 tokens then 3 pads
    const ids2 = [ids[0], [...ids[0].slice(0, 4), 0, 0, 0]];
    const mask2 = [Array(S).fill(1), [1, 1, 1, 1, 0, 0, 0]];
    for (const bidirectional of [true, false]) {
      const out = llamaForwardRef(cfg, w, ids2, mask2, { bidirectional });
      expectClose(rows(out, S, H, 0, 0, S), bidirectional ? bi : ca, 1e-13, 'row 0');
      expectClose(rows(out, S, H, 1, 0, 4), bidirectional ? preBi : pre, 1e-13, `right-padded row (${bidirectional})`);
      for (const v of rows(out, S, H, 1, 4, S)) expect(Number.isFinite(v)).toBe(true); // pad rows still produce values
    }
  });

  test('left padding: valid rows equal the unpadded run, with arange or mask-derived position ids', () => {
    const S = 6;
    const ids = randomIds(1, 4, V, 9)[0];
    const padded = [[0, 0, ...ids]], mask = [[0, 0, 1, 1, 1, 1]];
    expect(positionIdsFromMask(mask)).toEqual([[1, 1, 0, 1, 2, 3]]);
    expect(positionIdsFromMask(mask, 0)).toEqual([[0, 0, 0, 1, 2, 3]]);
    for (const bidirectional of [true, false]) {
      const ref = llamaForwardRef(cfg, w, [ids], [[1, 1, 1, 1]], { bidirectional });
      const a = llamaForwardRef(cfg, w, padded, mask, { bidirectional });
      const b = llamaForwardRef(cfg, w, padded, mask, { bidirectional, positionIds: positionIdsFromMask(mask) });
      expectClose(rows(a, S, H, 0, 2, S), ref, 1e-12, `left padding, arange positions (${bidirectional})`);
      expectClose(rows(b, S, H, 0, 2, S), ref, 1e-12, `left padding, mask positions (${bidirectional})`);
      for (const v of a) expect(Number.isFinite(v)).toBe(true);
    }
    // position ids do matter in absolute terms when not a constant shift
    const ones = [Array(S).fill(1)];
    const ids6 = randomIds(1, S, V, 10);
    const p1 = llamaForwardRef(cfg, w, ids6, ones, { bidirectional: true });
    const p2 = llamaForwardRef(cfg, w, ids6, ones, { bidirectional: true, positionIds: [[0, 2, 4, 6, 8, 10]] });
    expect(relErr(p2, p1)).toBeGreaterThan(1e-3);
    expect(arangePositionIds(2, 3)).toEqual([[0, 1, 2], [0, 1, 2]]);
  });

  test('GQA equals multi-head attention with the kv heads repeated', () => {
    const c2 = randomLlamaConfig({ attention_bias: true, num_key_value_heads: 2 });
    const w2 = randomLlamaWeights(c2, 33);
    const c4: LlamaRefConfig = { ...c2, num_key_value_heads: 4 };
    const w4: RefWeights = { ...w2 };
    const hd = c2.head_dim;
    for (let l = 0; l < c2.num_hidden_layers; l++)
      for (const n of ['k_proj', 'v_proj']) {
        const W = w2[`layers.${l}.self_attn.${n}.weight`].data, bb = w2[`layers.${l}.self_attn.${n}.bias`].data;
        const Wr = new Float64Array(4 * hd * H), br = new Float64Array(4 * hd);
        for (let h = 0; h < 4; h++) {
          const g = Math.floor(h / 2); // head h uses kv head floor(h / (heads / kv_heads))
          Wr.set(W.subarray(g * hd * H, (g + 1) * hd * H), h * hd * H);
          br.set(bb.subarray(g * hd, (g + 1) * hd), h * hd);
        }
        w4[`layers.${l}.self_attn.${n}.weight`] = { shape: [4 * hd, H], data: Wr };
        w4[`layers.${l}.self_attn.${n}.bias`] = { shape: [4 * hd], data: br };
      }
    const ids = randomIds(2, 5, V, 44), mask = [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]];
    const a = llamaForwardRef(c2, w2, ids, mask, { bidirectional: true });
    const b = llamaForwardRef(c4, w4, ids, mask, { bidirectional: true });
    expectClose(a, b, 1e-14, 'GQA vs repeated kv');
  });

  test('logits: lm_head, or embed_tokens when tied', () => {
    const ids = randomIds(1, 3, V, 1), mask = [[1, 1, 1]];
    const h = llamaForwardRef(cfg, w, ids, mask, { bidirectional: false });
    const lg = llamaLogitsRef(cfg, w, h, 1, 3);
    let s = 0;
    for (let j = 0; j < H; j++) s += h[H + j] * w['lm_head.weight'].data[5 * H + j];
    expect(lg[V + 5]).toBeCloseTo(s, 12);
    const tied = { ...cfg, tie_word_embeddings: true };
    const lt = llamaLogitsRef(tied, w, h, 1, 3);
    s = 0;
    for (let j = 0; j < H; j++) s += h[2 * H + j] * w['embed_tokens.weight'].data[7 * H + j];
    expect(lt[2 * V + 7]).toBeCloseTo(s, 12);
  });

  test('LLM2Vec pooling modes', () => {
    // B = 2, S = 4, H = 1: hidden value = 10 b + s
    const hid = Float64Array.from([0, 1, 2, 3, 10, 11, 12, 13]);
    const left = [[0, 1, 1, 1], [1, 1, 1, 1]];
    expect(Array.from(poolRef(hid, left, 2, 4, 1, 'mean'))).toEqual([2, 11.5]);
    expect(Array.from(poolRef(hid, left, 2, 4, 1, 'eos'))).toEqual([3, 13]);
    expect(Array.from(poolRef(hid, left, 2, 4, 1, 'bos'))).toEqual([1, 10]);
    const wm = poolRef(hid, left, 2, 4, 1, 'weighted_mean');
    expect(wm[0]).toBeCloseTo((1 * 1 + 2 * 2 + 3 * 3) / 6, 14);
    expect(wm[1]).toBeCloseTo((10 + 2 * 11 + 3 * 12 + 4 * 13) / 10, 14);
    const right = [[1, 1, 0, 0], [1, 1, 1, 0]];
    expect(Array.from(poolRef(hid, right, 2, 4, 1, 'eos'))).toEqual([1, 12]);
    expect(Array.from(poolRef(hid, right, 2, 4, 1, 'bos'))).toEqual([0, 10]);
    expect(Array.from(poolRef(hid, [[0, 0, 0, 0], [0, 0, 0, 1]], 2, 4, 1, 'mean'))).toEqual([0, 13]);
  });
});

describe('adapter reference', () => {
  const d = 12, E = 10, k = 4;
  const w = randomAdapterWeights(d, E, k, 77);
  const x = Float64Array.from(hostRandom(3 * d, 78));

  test('input normalisation: scale-invariant; normalize=false differs', () => {
    const a = adapterForwardRef(w, x, d, k);
    expect(a.length).toBe(3 * E);
    expectClose(adapterForwardRef(w, x.map((v) => v * 7.5), d, k), a, 1e-13, 'scale invariance');
    expect(relErr(adapterForwardRef(w, x, d, k, { normalize: false }), a)).toBeGreaterThan(1e-3);
  });

  test('blocks are residual: zero fc2 makes them identities; k = 0 is proj(LN(x / |x|))', () => {
    const z: RefWeights = { ...w };
    for (let i = 0; i < k; i++) {
      z[`blocks.${i}.fc2.weight`] = { shape: [d, 2 * d], data: new Float64Array(2 * d * d) };
      z[`blocks.${i}.fc2.bias`] = { shape: [d], data: new Float64Array(d) };
    }
    const y0 = adapterForwardRef(z, x, d, k);
    expectClose(adapterForwardRef(w, x, d, 0), y0, 1e-14, 'identity blocks');
    // k = 0 by hand for row 1
    const r = x.slice(d, 2 * d);
    const n = Math.sqrt(r.reduce((s, v) => s + v * v, 0));
    const ln = layerNormRow(r.map((v) => v / n), w['norm.weight'].data, w['norm.bias'].data, ADAPTER_LN_EPS);
    for (let e = 0; e < E; e++) {
      let s = w['proj.bias'].data[e];
      for (let i = 0; i < d; i++) s += w['proj.weight'].data[e * d + i] * ln[i];
      expect(y0[E + e]).toBeCloseTo(s, 12);
    }
    expect(relErr(adapterForwardRef(w, x, d, k), y0)).toBeGreaterThan(1e-3);
  });
});

describe('clip vision reference', () => {
  const cfg = randomClipVisionConfig();
  const w = randomClipVisionWeights(cfg, 55);
  const H = cfg.hidden_size, T = clipNumPatches(cfg) + 1;

  test('names and shapes; pooled = post_layernorm(CLS); batch rows independent', () => {
    expect(w['vision_model.embeddings.patch_embedding.weight'].shape).toEqual([32, 3, 5, 5]);
    expect(w['vision_model.embeddings.position_embedding.weight'].shape).toEqual([17, 32]);
    expect(w['visual_projection.weight'].shape).toEqual([24, 32]);
    expect(w['vision_model.embeddings.patch_embedding.bias']).toBeUndefined();
    const px = Float64Array.from(hostRandom(2 * 3 * 20 * 20, 56));
    const o = clipVisionForwardRef(cfg, w, px, 2);
    expect(o.lastHidden.length).toBe(2 * T * H);
    const pl = layerNormRow(o.lastHidden.subarray(T * H, T * H + H), w['vision_model.post_layernorm.weight'].data, w['vision_model.post_layernorm.bias'].data, 1e-5);
    expectClose(o.pooled.subarray(H), pl, 1e-15, 'pooled');
    const o1 = clipVisionForwardRef(cfg, w, px.slice(3 * 400), 1);
    expectClose(o.imageEmbeds.subarray(24), o1.imageEmbeds, 1e-15, 'batch row 1');
    expect(relErr(o.imageEmbeds.subarray(0, 24), o1.imageEmbeds)).toBeGreaterThan(1e-2);
    const g = clipVisionForwardRef({ ...cfg, hidden_act: 'gelu' }, w, px, 2);
    expect(relErr(g.lastHidden, o.lastHidden)).toBeGreaterThan(1e-4);
  });

  test('patch embedding is a stride-p convolution over row-major patches', () => {
    // zero everything after the embeddings except the norms: use a 0-layer model and an
    // identity-free check: change one pixel and see exactly one patch token move
    const c0 = { ...cfg, num_hidden_layers: 0 };
    const px = Float64Array.from(hostRandom(3 * 400, 57));
    const a = clipVisionForwardRef(c0, w, px, 1).lastHidden;
    const px2 = px.slice();
    px2[2 * 400 + 7 * 20 + 13] += 1; // channel 2, y 7, x 13 -> patch (1, 2) -> token 1 + 1*4 + 2 = 7
    const b = clipVisionForwardRef(c0, w, px2, 1).lastHidden;
    for (let t = 0; t < T; t++) {
      const moved = relErr(b.subarray(t * H, (t + 1) * H), a.subarray(t * H, (t + 1) * H)) > 1e-8;
      expect(moved).toBe(t === 7);
    }
  });
});

describe('HF directory writers', () => {
  test('llama: prefix, shards and index; returns the stored weights', () => {
    const cfg = randomLlamaConfig();
    const w = randomLlamaWeights(cfg, 5);
    const dir = path.join(tmp, 'llama-sharded');
    const stored = writeHfLlamaDir(dir, cfg, w, { prefix: 'model.', dtype: 'BF16', shards: 3 });
    const files = fs.readdirSync(dir).sort();
    expect(files).toEqual(['config.json', 'model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors', 'model.safetensors.index.json']);
    const idx = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    const names = Object.keys(idx.weight_map);
    expect(names.length).toBe(Object.keys(w).length);
    expect(names).toContain('lm_head.weight');
    expect(names).toContain('model.embed_tokens.weight');
    expect(names.filter((n) => !n.startsWith('model.'))).toEqual(['lm_head.weight']);
    let total = 0;
    for (const f of files.filter((f) => f.startsWith('model-'))) {
      const { header, dataStart } = readSafetensorsHeader(path.join(dir, f));
      total += fs.statSync(path.join(dir, f)).size - dataStart;
      for (const n of Object.keys(header)) if (n !== '__metadata__') expect(idx.weight_map[n]).toBe(f);
    }
    expect(idx.metadata.total_size).toBe(total);
    const conf = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(conf.torch_dtype).toBe('bfloat16');
    expect(conf.head_dim).toBe(16);
    const bytes = new Uint8Array(fs.readFileSync(path.join(dir, idx.weight_map['model.norm.weight'])));
    expect(Array.from(readSafetensorsTensor(bytes, 'model.norm.weight').data)).toEqual(Array.from(stored['norm.weight'].data));
    expect(stored['norm.weight'].data).toEqual(roundWeights(w, 'BF16')['norm.weight'].data);
    // single file, no prefix
    const d2 = path.join(tmp, 'llama-single');
    writeHfLlamaDir(d2, cfg, w, { prefix: '', dtype: 'F32' });
    expect(fs.readdirSync(d2).sort()).toEqual(['config.json', 'model.safetensors']);
    expect(Object.keys(readSafetensorsHeader(path.join(d2, 'model.safetensors')).header)).toContain('embed_tokens.weight');
  });

  test('clip: vision config or full CLIPConfig, optional position_ids', () => {
    const cfg = randomClipVisionConfig();
    const w = randomClipVisionWeights(cfg, 6);
    const d1 = path.join(tmp, 'clip-vision');
    writeHfClipVisionDir(d1, cfg, w, 'F16');
    const c1 = JSON.parse(fs.readFileSync(path.join(d1, 'config.json'), 'utf8'));
    expect(c1.model_type).toBe('clip_vision_model');
    expect(c1.hidden_size).toBe(32);
    const d2 = path.join(tmp, 'clip-full');
    writeHfClipVisionDir(d2, cfg, w, 'F32', { full: true, includePositionIds: true });
    const c2 = JSON.parse(fs.readFileSync(path.join(d2, 'config.json'), 'utf8'));
    expect(c2.model_type).toBe('clip');
    expect(c2.vision_config.patch_size).toBe(5);
    expect(c2.projection_dim).toBe(24);
    const bytes = new Uint8Array(fs.readFileSync(path.join(d2, 'model.safetensors')));
    const pid = readSafetensorsTensor(bytes, 'vision_model.embeddings.position_ids');
    expect(pid.dtype).toBe('I64');
    expect(Array.from(pid.data)).toEqual(Array.from({ length: 17 }, (_, i) => i));
  });
});

// ---- cross-check against the independent numpy implementation ------------------------------
const py = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' });
const hasNumpy = py.status === 0;
if (!hasNumpy) console.warn('refs.test.ts: python3 with numpy not found: the numpy cross-check is SKIPPED');
const describeNp = hasNumpy ? describe : describe.skip;

/** Runs the numpy implementation on a list of requests (one python start); their results. */
function runNp(reqs: object[]): Record<string, number[]>[] {
  const rq = path.join(tmp, `req-${Math.random().toString(36).slice(2)}.json`), out = rq.replace('req-', 'out-');
  fs.writeFileSync(rq, JSON.stringify(reqs));
  const r = spawnSync('python3', [path.join(__dirname, 'np_ref.py'), rq, out], { encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0) throw new Error(`np_ref.py failed: ${r.stderr}`);
  return JSON.parse(fs.readFileSync(out, 'utf8'));
}

describeNp('numpy cross-check (independent vectorised implementation reading the fixture files)', () => {
  test('F16 rounding equals numpy astype(float16); BF16/F16 files decode to the stored values', () => {
    const vals = Array.from(hostRandom(3000, 90), (v, i) => v * 2 ** ((i % 40) - 28));
    vals.push(1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -25, 3 * 2 ** -25, 65504, 65519);
    const file = path.join(tmp, 'dec.safetensors');
    writeSafetensorsFile(file, { a: { dtype: 'BF16', shape: [vals.length], data: vals }, b: { dtype: 'F16', shape: [vals.length], data: vals } });
    const [r16, dec] = runNp([{ kind: 'f16', values: vals }, { kind: 'decode', file }]);
    expect(r16.values).toEqual(Array.from(storedValues(vals, 'F16')));
    expect(dec.a).toEqual(Array.from(storedValues(vals, 'BF16')));
    expect(dec.b).toEqual(Array.from(storedValues(vals, 'F16')));
  });

  const cases: { name: string; cfg: LlamaRefConfig; dtype: 'F32' | 'BF16' | 'F16'; prefix: 'model.' | ''; shards: number }[] = [
    { name: 'llama3-scaled GQA, BF16, 3 shards, model. prefix', cfg: randomLlamaConfig(), dtype: 'BF16', prefix: 'model.', shards: 3 },
    { name: 'qwen2 (q/k/v biases), tied, F16, no prefix', cfg: randomLlamaConfig({ modelType: 'qwen2', tie_word_embeddings: true, ropeScaling: null, rope_theta: 1e6 }), dtype: 'F16', prefix: '', shards: 1 },
    { name: 'llama with attention_bias, MHA, F32', cfg: randomLlamaConfig({ attention_bias: true, num_key_value_heads: 4, head_dim: 12, hidden_size: 40 }), dtype: 'F32', prefix: 'model.', shards: 2 },
  ];
  for (const [ci, c] of cases.entries())
    test(`llama forward: ${c.name}`, () => {
      const dir = path.join(tmp, `np-llama-${ci}`);
      const w = writeHfLlamaDir(dir, c.cfg, randomLlamaWeights(c.cfg, 200 + ci), { prefix: c.prefix, dtype: c.dtype, shards: c.shards });
      const S = 6, ids = randomIds(3, S, c.cfg.vocab_size, 300 + ci);
      const mask = [[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]];
      const variants = [true, false].flatMap((bidirectional) => [undefined, positionIdsFromMask(mask)].map((positionIds) => ({ bidirectional, positionIds })));
      const nps = runNp(variants.map(({ bidirectional, positionIds }) => (
        { kind: 'llama', dir, prefix: c.prefix, input_ids: ids, attention_mask: mask, bidirectional, position_ids: positionIds ?? null })));
      variants.forEach(({ bidirectional, positionIds }, vi) => {
        const ref = llamaForwardRef(c.cfg, w, ids, mask, { bidirectional, positionIds });
        const what = `(bidirectional ${bidirectional}, positions ${positionIds ? 'mask' : 'arange'})`;
        expectClose(ref, nps[vi].hidden, 1e-12, `hidden ${what}`);
        expectClose(llamaLogitsRef(c.cfg, w, ref, 3, S), nps[vi].logits, 1e-12, `logits ${what}`);
      });
    });

  for (const [ci, c] of [
    { act: 'quick_gelu' as const, dtype: 'BF16' as const, full: false },
    { act: 'gelu' as const, dtype: 'F32' as const, full: true },
  ].entries())
    test(`clip vision forward: ${c.act}, ${c.dtype}, ${c.full ? 'full CLIPConfig' : 'CLIPVisionConfig'}`, () => {
      const cfg = randomClipVisionConfig({ hidden_act: c.act });
      const dir = path.join(tmp, `np-clip-${ci}`);
      const w = writeHfClipVisionDir(dir, cfg, randomClipVisionWeights(cfg, 400 + ci), c.dtype, { full: c.full, includePositionIds: c.full });
      const B = 2, px = Float64Array.from(hostRandom(B * 3 * 400, 500 + ci));
      const ref = clipVisionForwardRef(cfg, w, px, B);
      const [np] = runNp([{ kind: 'clip', dir, pixels: Array.from(px), batch: B }]);
      expectClose(ref.lastHidden, np.lastHidden, 1e-12, 'lastHidden');
      expectClose(ref.pooled, np.pooled, 1e-12, 'pooled');
      expectClose(ref.imageEmbeds, np.imageEmbeds, 1e-12, 'imageEmbeds');
    });
});

// PyTorch / transformers are not used: this image's python3 has neither (only numpy); the
// numpy implementation above is the independent cross-check.
