// llama.test.ts: LlamaEncoder against the float64 reference of HF's LlamaModel
// (test/ref/llama-ref.ts): HF-format folders (GQA, head_dim != hidden/heads, llama3 RoPE
// scaling, both name prefixes, shards, bf16 on disk), bidirectional and causal attention
// with left / right padding, LLM2Vec pooling, qwen2 biases, finite-difference gradients,
// checkpointing, LoRA (merge, PEFT files), the MNTP loss, and typed errors.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { LlamaEncoder, parseLlamaConfig, Tensor, tensor, tidy, noGrad, F, manualSeed } from '../src';
import { loadSafetensors } from '../src/io/safetensors';
import { copyInto } from '../src/nn';
import { tensorCounts } from '../src/tensor';
import { trainBpeTokenizer } from '../src/tokenizer';
import { describeGpu, expectCode, hostRandom, relErr, expectCodeAsync } from './helpers';
import {
  randomLlamaConfig, randomLlamaWeights, llamaForwardRef, llamaLogitsRef, poolRef, writeHfLlamaDir, LlamaRefConfig, PoolMode,
} from './ref/llama-ref';
import { RefWeights } from './ref/common';

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-test-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));
let dirCount = 0;
function tmpDir(): string {
  return path.join(tmpRoot, `d${dirCount++}`);
}

// A batch with a full row, a right-padded row and a left-padded row (S odd).
const B = 3, S = 7;
const MASK = [
  [1, 1, 1, 1, 1, 1, 1],
  [1, 1, 1, 1, 0, 0, 0],
  [0, 0, 1, 1, 1, 1, 1],
];
function randomIds(seed: number, V: number): number[][] {
  const r = hostRandom(B * S, seed);
  return MASK.map((row, b) => row.map((m, s) => (m ? Math.floor(((r[b * S + s] + 1) / 2) * (V - 3)) + 3 : 0)));
}
function idsTensor(ids: number[][]): Tensor {
  return tensor(new Int32Array(ids.flat()), [ids.length, ids[0].length], { dtype: 'int32' });
}
/** cumsum(mask) − 1 clamped at 0: the encoder's default positions. */
function defaultPositions(mask: number[][]): number[][] {
  return mask.map((row) => {
    let c = 0;
    return row.map((m) => {
      c += m;
      return Math.max(c - 1, 0);
    });
  });
}
/** The [B,S,H] values of the rows where keep[b][s] is 1. */
function rows(x: ArrayLike<number>, keep: number[][], H: number): Float64Array {
  const out: number[] = [];
  keep.forEach((row, b) => row.forEach((k, s) => {
    if (k) for (let j = 0; j < H; j++) out.push(x[(b * row.length + s) * H + j]);
  }));
  return Float64Array.from(out);
}
function forwardArray(model: LlamaEncoder, ids: number[][], mask: number[][], options: { causal?: boolean } = {}): Float32Array {
  return noGrad(() => tidy(() => model.forward(idsTensor(ids), idsTensor(mask), options).toArray() as Float32Array));
}
const ALL = MASK.map((r) => r.map(() => 1));

interface Fixture {
  config: LlamaRefConfig;
  weights: RefWeights;
  dir: string;
}
function fixture(seed: number, cfg: LlamaRefConfig, opts: { prefix: 'model.' | ''; dtype: 'F32' | 'BF16' | 'F16'; shards?: number }): Fixture {
  const dir = tmpDir();
  const stored = writeHfLlamaDir(dir, cfg, randomLlamaWeights(cfg, seed), opts);
  return { config: cfg, weights: stored, dir };
}

describe('LlamaEncoder vs the float64 HF reference', () => {
  // GQA (4 heads, 2 kv heads), head_dim 16 with hidden 48, llama3 rope scaling.
  const cfg = randomLlamaConfig();
  const fx = fixture(101, cfg, { prefix: 'model.', dtype: 'F32', shards: 3 });
  let model: LlamaEncoder;
  beforeAll(async () => {
    model = await LlamaEncoder.fromPretrained(fx.dir);
  });
  afterAll(() => model.dispose());
  const ids = randomIds(7, cfg.vocab_size);

  test('config: GQA, head_dim from config, llama3 scaling; HF parameter names', () => {
    const c = model.config;
    expect(c.headDim).toBe(16);
    expect(c.hiddenSize).toBe(48);
    expect(c.numKeyValueHeads).toBe(2);
    expect(c.ropeScaling).toEqual({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 });
    const names = Object.keys(model.stateDict()).sort();
    expect(names).toEqual(Object.keys(fx.weights).sort());
    expect(model.stateDict()['layers.0.self_attn.q_proj.weight'].shape).toEqual([64, 48]);
    expect(model.stateDict()['layers.1.self_attn.k_proj.weight'].shape).toEqual([32, 48]);
    expect(model.training).toBe(false);
  });

  test('bidirectional: every row (pads included) with the same positions; token rows with HF default positions', () => {
    const got = forwardArray(model, ids, MASK);
    const want = llamaForwardRef(cfg, fx.weights, ids, MASK, { bidirectional: true, positionIds: defaultPositions(MASK) });
    expect(relErr(got, want)).toBeLessThan(1e-5);
    // HF's default arange positions: the full and right-padded rows are the same positions;
    // the left-padded row's tokens are shifted by a constant, which RoPE does not see.
    const hfDefault = llamaForwardRef(cfg, fx.weights, ids, MASK, { bidirectional: true });
    expect(relErr(rows(got, MASK, 48), rows(hfDefault, MASK, 48))).toBeLessThan(1e-5);
    for (const v of got) expect(Number.isFinite(v)).toBe(true);
  });

  test('causal: the token rows, left and right padding; pad rows finite', () => {
    const got = forwardArray(model, ids, MASK, { causal: true });
    const want = llamaForwardRef(cfg, fx.weights, ids, MASK, { bidirectional: false, positionIds: defaultPositions(MASK) });
    expect(relErr(rows(got, MASK, 48), rows(want, MASK, 48))).toBeLessThan(1e-5);
    for (const v of got) expect(Number.isFinite(v)).toBe(true);
    // causal differs from bidirectional (the mode is honoured)
    const bi = forwardArray(model, ids, MASK);
    expect(relErr(rows(got, MASK, 48), rows(bi, MASK, 48))).toBeGreaterThan(1e-2);
  });

  test('padding invariance: a row gives the same token states alone, left- or right-padded', () => {
    const tok = ids[0].slice(0, 4);
    const right = [[...tok, 0, 0]], left = [[0, 0, ...tok]];
    const a = forwardArray(model, [tok], [[1, 1, 1, 1]]);
    const r = forwardArray(model, right, [[1, 1, 1, 1, 0, 0]]);
    const l = forwardArray(model, left, [[0, 0, 1, 1, 1, 1]]);
    expect(relErr(r.slice(0, 4 * 48), a)).toBeLessThan(1e-5);
    expect(relErr(l.slice(2 * 48), a)).toBeLessThan(1e-5);
  });

  test('explicit positionIds override the default', () => {
    const pos = [[3, 4, 5, 6, 7, 8, 9], [0, 1, 2, 3, 4, 5, 6], [9, 9, 2, 3, 4, 5, 6]];
    const got = noGrad(() => tidy(() => model.forward(idsTensor(ids), idsTensor(MASK), { positionIds: idsTensor(pos) }).toArray()));
    const want = llamaForwardRef(cfg, fx.weights, ids, MASK, { bidirectional: true, positionIds: pos });
    expect(relErr(got, want)).toBeLessThan(1e-5);
  });

  test('pooling in every mode vs poolRef, with the attention mask and an embed mask (instruction skipped)', () => {
    const hidden = llamaForwardRef(cfg, fx.weights, ids, MASK, { bidirectional: true, positionIds: defaultPositions(MASK) });
    // embed mask: the first two tokens of each row are an instruction (attended, not pooled)
    const embed = MASK.map((row) => {
      let k = 0;
      return row.map((m) => (m && k++ >= 2 ? 1 : 0));
    });
    for (const mask of [MASK, embed])
      for (const mode of ['mean', 'weighted_mean', 'eos', 'bos'] as PoolMode[]) {
        const got = noGrad(() => tidy(() => {
          const h = model.forward(idsTensor(ids), idsTensor(MASK));
          return model.pool(h, idsTensor(mask), mode).toArray();
        }));
        const want = poolRef(hidden, mask, B, S, 48, mode);
        const e = relErr(got, want);
        if (!(e < 1e-5)) throw new Error(`pool ${mode}: relative error ${e}`);
      }
    expectCode(() => tidy(() => model.pool(model.forward(idsTensor(ids), idsTensor(MASK)), idsTensor(MASK), 'max' as never)), 'INVALID_ARGUMENT', /mode/);
  });

  test('bf16 on disk, unprefixed names, one file: loaded to float32 exactly; bfloat16 compute within bf16 rounding', async () => {
    const fb = fixture(202, cfg, { prefix: '', dtype: 'BF16' });
    const m32 = await LlamaEncoder.fromPretrained(fb.dir);
    const mbf = await LlamaEncoder.fromPretrained(fb.dir, { dtype: 'bfloat16' });
    try {
      const want = llamaForwardRef(cfg, fb.weights, ids, MASK, { bidirectional: true, positionIds: defaultPositions(MASK) });
      // The reference uses the bf16-rounded weights as stored, so float32 compute matches tightly.
      expect(relErr(forwardArray(m32, ids, MASK), want)).toBeLessThan(1e-5);
      // bfloat16 activations: each rounding ~2^-9 relative; over 2 layers a few 1e-3, bound 3e-2.
      expect(mbf.dtype).toBe('bfloat16');
      expect(relErr(forwardArray(mbf, ids, MASK), want)).toBeLessThan(3e-2);
      // pooling (float weights over bfloat16 states), the MNTP loss, float32 LoRA over a bfloat16 base
      for (const mode of ['weighted_mean', 'eos'] as PoolMode[]) {
        const got = noGrad(() => tidy(() => mbf.pool(mbf.forward(idsTensor(ids), idsTensor(MASK)), idsTensor(MASK), mode).toArray()));
        expect(relErr(got, poolRef(want, MASK, B, S, 48, mode))).toBeLessThan(3e-2);
      }
      mbf.withLora({ r: 2, seed: 1 }).train();
      const labels = idsTensor(ids.map((r) => r.map((t, s) => (s % 2 ? t : -100))));
      tidy(() => mbf.mntpLoss(mbf.forward(idsTensor(ids), idsTensor(MASK), { checkpoint: true }), labels).backward());
      labels.dispose();
      const gA = mbf.loraStateDict()['layers.0.self_attn.q_proj.lora_B'];
      expect(gA.dtype).toBe('float32');
      expect(gA.grad).not.toBeNull();
      expect(gA.grad!.toArray().some((v) => v !== 0)).toBe(true);
      expect(gA.grad!.toArray().every((v) => Number.isFinite(v))).toBe(true);
    } finally {
      m32.dispose();
      mbf.dispose();
    }
  });

  test('qwen2 (q/k/v biases), llama attention_bias (o bias too; f16 on disk), tied mistral without lm_head', async () => {
    const cases: LlamaRefConfig[] = [
      randomLlamaConfig({ modelType: 'qwen2', ropeScaling: null, num_key_value_heads: 1, head_dim: 12 }),
      randomLlamaConfig({ attention_bias: true, num_hidden_layers: 1 }),
      randomLlamaConfig({ modelType: 'mistral', ropeScaling: null, tie_word_embeddings: true, num_key_value_heads: 4 }),
    ];
    for (const [i, c] of cases.entries()) {
      // case 1 stored as float16 (the reference reads the same rounded weights)
      const f = fixture(300 + i, c, { prefix: i === 1 ? '' : 'model.', dtype: i === 1 ? 'F16' : 'F32' });
      const m = await LlamaEncoder.fromPretrained(f.dir);
      try {
        const names = Object.keys(m.stateDict());
        if (c.model_type === 'qwen2') {
          expect(names).toContain('layers.0.self_attn.q_proj.bias');
          expect(names).not.toContain('layers.0.self_attn.o_proj.bias');
        }
        if (i === 1) expect(names).toContain('layers.0.self_attn.o_proj.bias');
        expect(names.sort()).toEqual(Object.keys(f.weights).sort());
        const got = forwardArray(m, ids, MASK);
        const want = llamaForwardRef(c, f.weights, ids, MASK, { bidirectional: true, positionIds: defaultPositions(MASK) });
        const e = relErr(got, want);
        if (!(e < 1e-5)) throw new Error(`${c.model_type} case ${i}: relative error ${e}`);
        if (c.tie_word_embeddings) {
          expect(m.lmHeadWeight).toBe(m.embedTokens.weight);
          const lg = noGrad(() => tidy(() => m.logits(m.forward(idsTensor(ids), idsTensor(MASK))).toArray()));
          expect(relErr(lg, llamaLogitsRef(c, f.weights, want, B, S))).toBeLessThan(1e-5);
        }
      } finally {
        m.dispose();
      }
    }
  });

  test('mntpLoss (shifted, ignore -100) and logits vs float64 cross-entropy on llamaLogitsRef', () => {
    const hidden = llamaForwardRef(cfg, fx.weights, ids, MASK, { bidirectional: true, positionIds: defaultPositions(MASK) });
    const logits = llamaLogitsRef(cfg, fx.weights, hidden, B, S);
    const V = cfg.vocab_size;
    const labels = ids.map((row, b) => row.map((t, s) => (MASK[b][s] && (s + b) % 3 !== 0 ? t : -100)));
    let sum = 0, n = 0;
    for (let b = 0; b < B; b++)
      for (let s = 0; s + 1 < S; s++) {
        const y = labels[b][s + 1];
        if (y === -100) continue;
        const row = logits.subarray((b * S + s) * V, (b * S + s + 1) * V);
        const mx = Math.max(...row);
        let z = 0;
        for (const v of row) z += Math.exp(v - mx);
        sum += mx + Math.log(z) - row[y];
        n++;
      }
    const got = noGrad(() => tidy(() => model.mntpLoss(model.forward(idsTensor(ids), idsTensor(MASK)), idsTensor(labels), { chunkSize: 16 }).item()));
    expect(Math.abs(got - sum / n) / (sum / n)).toBeLessThan(1e-5);
    const lg = noGrad(() => tidy(() => model.logits(model.forward(idsTensor(ids), idsTensor(MASK))).toArray()));
    expect(relErr(lg, logits)).toBeLessThan(1e-5);
  });
});

/**
 * Central differences (h = 1e-2 on O(0.1..1) values: truncation O(h²), float32 rounding
 * ~1e-7 · |loss| / h) of loss() at a few elements of each parameter, against backward().
 */
function checkParamGrads(model: LlamaEncoder, loss: () => Tensor, names: string[], picks = 3, tol = 3e-3, h = 1e-2): void {
  const params = model.stateDict();
  model.zeroGrad();
  tidy(() => loss().backward());
  const num: number[] = [], ana: number[] = [];
  names.forEach((n, k) => {
    const p = params[n];
    const v = p.view() as Float32Array;
    const g = p.grad!.toArray();
    for (let j = 0; j < picks; j++) {
      const i = Math.floor(((hostRandom(1, 900 + 10 * k + j)[0] + 1) / 2) * v.length);
      const x = v[i];
      v[i] = x + h;
      const fp = noGrad(() => tidy(() => loss().item()));
      v[i] = x - h;
      const fm = noGrad(() => tidy(() => loss().item()));
      v[i] = x;
      num.push((fp - fm) / (2 * h));
      ana.push(g[i]);
    }
  });
  const e = relErr(ana, num);
  if (!(e <= tol)) throw new Error(`gradients: relative error ${e} > ${tol}\nanalytic ${ana.join(' ')}\nnumeric  ${num.join(' ')}`);
}

describe('LlamaEncoder training', () => {
  const cfg = randomLlamaConfig({ num_hidden_layers: 2, vocab_size: 41 });
  const c = parseLlamaConfig(cfg);
  const ids = randomIds(17, cfg.vocab_size);
  const weightsSeed = 33;
  const proj = tensor(hostRandom(B * 48, 34), [B, 48]);
  afterAll(() => proj.dispose());
  function fresh(): LlamaEncoder {
    // Reference-scaled weights (O(1) activations) rather than the 0.02 init, for well-conditioned checks.
    const m = new LlamaEncoder(c, { seed: 1 });
    const w = randomLlamaWeights(cfg, weightsSeed);
    noGrad(() => tidy(() => {
      for (const [n, t] of Object.entries(m.stateDict())) copyInto(t, tensor(Float32Array.from(w[n].data), w[n].shape));
    }));
    return m;
  }

  test('random init: HF-like statistics, seeded, names', () => {
    const a = new LlamaEncoder(c, { seed: 5 }), b = new LlamaEncoder(c, { seed: 5 }), d = new LlamaEncoder(c, { seed: 6 });
    try {
      const q = a.stateDict()['layers.0.self_attn.q_proj.weight'].toArray();
      let s2 = 0;
      for (const v of q) s2 += v * v;
      expect(Math.sqrt(s2 / q.length)).toBeGreaterThan(0.018);
      expect(Math.sqrt(s2 / q.length)).toBeLessThan(0.022);
      expect(Array.from(a.stateDict()['norm.weight'].toArray())).toEqual(new Array(48).fill(1));
      expect(relErr(b.stateDict()['layers.1.mlp.up_proj.weight'].toArray(), a.stateDict()['layers.1.mlp.up_proj.weight'].toArray())).toBe(0);
      expect(relErr(d.stateDict()['layers.1.mlp.up_proj.weight'].toArray(), a.stateDict()['layers.1.mlp.up_proj.weight'].toArray())).toBeGreaterThan(0.5);
      expect(Object.keys(a.stateDict())).toContain('lm_head.weight');
    } finally {
      a.dispose();
      b.dispose();
      d.dispose();
    }
  });

  test('gradients of the whole model (embeddings, every projection, norms) by finite differences', () => {
    const m = fresh();
    try {
      const loss = () => F.sum(F.mul(m.pool(m.forward(idsTensor(ids), idsTensor(MASK)), idsTensor(MASK), 'weighted_mean'), proj));
      checkParamGrads(m, loss, [
        'embed_tokens.weight', 'layers.0.self_attn.q_proj.weight', 'layers.0.self_attn.k_proj.weight', 'layers.0.self_attn.v_proj.weight',
        'layers.0.self_attn.o_proj.weight', 'layers.0.mlp.gate_proj.weight', 'layers.1.mlp.up_proj.weight', 'layers.1.mlp.down_proj.weight',
        'layers.1.input_layernorm.weight', 'layers.0.post_attention_layernorm.weight', 'norm.weight',
      ]);
      // causal path and the MNTP loss through the lm head
      const labels = idsTensor(ids.map((r) => r.map((t, s) => (s % 2 ? t : -100))));
      const mntp = () => m.mntpLoss(m.forward(idsTensor(ids), idsTensor(MASK), { causal: true }), labels);
      checkParamGrads(m, mntp, ['lm_head.weight', 'layers.1.self_attn.q_proj.weight', 'layers.0.mlp.down_proj.weight'], 3, 5e-3);
      labels.dispose();
    } finally {
      m.dispose();
    }
  });

  test('LoRA gradients (lora_A, lora_B) by finite differences; nothing leaks', () => {
    const m = fresh().withLora({ r: 2, alpha: 4, targets: ['q_proj', 'v_proj', 'o_proj', 'up_proj', 'down_proj'], seed: 8 });
    try {
      noGrad(() => tidy(() => { for (const t of Object.values(m.loraStateDict())) copyInto(t, F.scale(tensor(hostRandom(t.size, 3 * t.size + 1), t.shape), 0.5)); }));
      const loss = () => F.sum(F.mul(m.pool(m.forward(idsTensor(ids), idsTensor(MASK)), idsTensor(MASK), 'eos'), proj));
      checkParamGrads(m, loss, [
        'layers.0.self_attn.q_proj.lora_A', 'layers.0.self_attn.q_proj.lora_B', 'layers.1.self_attn.v_proj.lora_A',
        'layers.0.self_attn.o_proj.lora_B', 'layers.1.mlp.up_proj.lora_A', 'layers.0.mlp.down_proj.lora_B',
      ], 3, 3e-3, 3e-3); // h = 3e-3: gradients up to ~20 here, the O(h²) term needs the smaller step
      expect(m.stateDict()['layers.0.self_attn.q_proj.base_layer.weight'].grad).toBeNull();
      // a forward + backward in tidy leaves only the gradients of the trainable tensors
      m.zeroGrad();
      const before = tensorCounts().liveTensors;
      tidy(() => loss().backward());
      expect(tensorCounts().liveTensors - before).toBe(m.trainableParameters().length);
      m.zeroGrad();
      expect(tensorCounts().liveTensors).toBe(before);
    } finally {
      m.dispose();
    }
  });

  test('activation checkpointing gives identical gradients', () => {
    const m = fresh().withLora({ r: 4, alpha: 8, dropout: 0.1, seed: 3 });
    m.train();
    try {
      // nonzero lora_B (a fresh one is zeros), so every adapter tensor gets a gradient
      noGrad(() => tidy(() => { for (const t of Object.values(m.loraStateDict())) copyInto(t, F.scale(tensor(hostRandom(t.size, t.size), t.shape), 0.2)); }));
      const grads = (ck: boolean) => {
        m.zeroGrad();
        tidy(() => F.sum(F.mul(m.pool(m.forward(idsTensor(ids), idsTensor(MASK), { checkpoint: ck }), idsTensor(MASK)), proj)).backward());
        return m.trainableParameters().map((p) => p.grad!.toArray());
      };
      // the same dropout masks both times: seeds rewound by checkpoint and reset here
      manualSeed(77);
      const a = grads(false);
      manualSeed(77);
      const b = grads(true);
      expect(a.length).toBe(2 * 7 * 2);
      a.forEach((g, i) => expect(relErr(b[i], g)).toBeLessThan(1e-6));
    } finally {
      m.dispose();
    }
  });
});

describe('LoRA and PEFT adapters', () => {
  const cfg = randomLlamaConfig({ vocab_size: 41 });
  const fx = fixture(404, cfg, { prefix: 'model.', dtype: 'F32', shards: 2 });
  const ids = randomIds(23, cfg.vocab_size);

  function randomizeLora(m: LlamaEncoder, seed: number): void {
    noGrad(() => tidy(() => {
      let k = 0;
      for (const t of Object.values(m.loraStateDict())) copyInto(t, F.scale(tensor(hostRandom(t.size, seed + k++), t.shape), 0.3));
    }));
  }

  test('fresh adapter = same output; trainable = adapters only; merged == unmerged; mergeAndUnload', async () => {
    const m = await LlamaEncoder.fromPretrained(fx.dir);
    try {
      const base = forwardArray(m, ids, MASK);
      m.withLora({ r: 4, alpha: 16, targets: ['q_proj', 'v_proj', 'down_proj'], seed: 9 });
      expect(relErr(forwardArray(m, ids, MASK), base)).toBe(0);
      const trainable = m.namedParameters().filter(([, t]) => t.requiresGrad).map(([n]) => n);
      expect(trainable.length).toBe(2 * 3 * 2);
      expect(trainable.every((n) => /\.lora_[AB]$/.test(n))).toBe(true);
      expect(Object.keys(m.stateDict())).toContain('layers.0.self_attn.q_proj.base_layer.weight');
      expectCode(() => m.withLora(), 'INVALID_ARGUMENT', /already has LoRA/);
      randomizeLora(m, 50);
      const unmerged = forwardArray(m, ids, MASK);
      expect(relErr(unmerged, base)).toBeGreaterThan(1e-3);
      m.mergeLora();
      expect(relErr(forwardArray(m, ids, MASK), unmerged)).toBeLessThan(1e-5);
      m.unmergeLora();
      expect(relErr(forwardArray(m, ids, MASK), unmerged)).toBeLessThan(1e-5);
      m.mergeAndUnloadLora();
      expect(m.loraConfig).toBeNull();
      expect(Object.keys(m.stateDict()).sort()).toEqual(Object.keys(fx.weights).sort());
      expect(relErr(forwardArray(m, ids, MASK), unmerged)).toBeLessThan(1e-5);
    } finally {
      m.dispose();
    }
  });

  test('PEFT save -> load into a fresh model: identical outputs; PEFT names and config fields', async () => {
    const dir = tmpDir();
    const m = (await LlamaEncoder.fromPretrained(fx.dir)).withLora({ r: 3, alpha: 6, dropout: 0.05, seed: 4 });
    const m2 = await LlamaEncoder.fromPretrained(fx.dir);
    try {
      randomizeLora(m, 70);
      await m.saveLora(dir, { baseModelNameOrPath: 'tiny-llama' });
      const conf = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
      expect(conf).toMatchObject({ peft_type: 'LORA', r: 3, lora_alpha: 6, lora_dropout: 0.05, bias: 'none', base_model_name_or_path: 'tiny-llama', use_rslora: false, fan_in_fan_out: false });
      expect([...conf.target_modules].sort()).toEqual(['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
      const t = await loadSafetensors(path.join(dir, 'adapter_model.safetensors'));
      const names = Object.keys(t);
      expect(names).toContain('base_model.model.layers.0.self_attn.q_proj.lora_A.weight');
      expect(names).toContain('base_model.model.layers.1.mlp.down_proj.lora_B.weight');
      expect(names.length).toBe(2 * 7 * 2);
      expect(t['base_model.model.layers.0.mlp.gate_proj.lora_A.weight'].shape).toEqual([3, 48]);
      expect(t['base_model.model.layers.0.mlp.gate_proj.lora_B.weight'].shape).toEqual([80, 3]);
      for (const x of Object.values(t)) x.dispose();
      await m2.loadLora(dir);
      expect(m2.loraConfig).toEqual(m.loraConfig);
      expect(relErr(forwardArray(m2, ids, MASK), forwardArray(m, ids, MASK))).toBe(0);
      // names of a LlamaForCausalLM base (base_model.model.model.layers...) with the adapter name kept
      const t2 = await loadSafetensors(path.join(dir, 'adapter_model.safetensors'));
      const renamed: Record<string, Tensor> = {};
      for (const [n, x] of Object.entries(t2)) renamed[n.replace('base_model.model.', 'base_model.model.model.').replace(/\.weight$/, '.default.weight')] = x;
      const d3 = tmpDir();
      fs.mkdirSync(d3);
      fs.copyFileSync(path.join(dir, 'adapter_config.json'), path.join(d3, 'adapter_config.json'));
      const { saveSafetensors } = await import('../src/io/safetensors');
      await saveSafetensors(path.join(d3, 'adapter_model.safetensors'), renamed);
      for (const x of Object.values(t2)) x.dispose();
      const m3 = await LlamaEncoder.fromPretrained(fx.dir);
      await m3.loadLora(d3);
      expect(relErr(forwardArray(m3, ids, MASK), forwardArray(m, ids, MASK))).toBe(0);
      // LLM2Vec's stacking: merge_and_unload the first adapter, then a fresh one changes nothing
      const before = forwardArray(m3, ids, MASK);
      m3.mergeAndUnloadLora();
      m3.withLora({ r: 2, seed: 5 });
      expect(relErr(forwardArray(m3, ids, MASK), before)).toBeLessThan(1e-5);
      m3.dispose();
      // loading into a model that already has the same adapters replaces their values
      randomizeLora(m2, 90);
      await m2.loadLora(dir);
      expect(relErr(forwardArray(m2, ids, MASK), forwardArray(m, ids, MASK))).toBe(0);
    } finally {
      m.dispose();
      m2.dispose();
    }
  });

  test('adapter errors name the tensor or field', async () => {
    const dir = tmpDir();
    const m = (await LlamaEncoder.fromPretrained(fx.dir)).withLora({ r: 2, targets: ['q_proj'] });
    await m.saveLora(dir);
    const m2 = await LlamaEncoder.fromPretrained(fx.dir);
    try {
      // missing tensor
      const t = await loadSafetensors(path.join(dir, 'adapter_model.safetensors'));
      const { saveSafetensors } = await import('../src/io/safetensors');
      const partial = { ...t };
      delete partial['base_model.model.layers.1.self_attn.q_proj.lora_B.weight'];
      const d2 = tmpDir();
      fs.mkdirSync(d2);
      fs.copyFileSync(path.join(dir, 'adapter_config.json'), path.join(d2, 'adapter_config.json'));
      await saveSafetensors(path.join(d2, 'adapter_model.safetensors'), partial);
      await expectCodeAsync(m2.loadLora(d2), 'CORRUPT_FILE', /layers\.1\.self_attn\.q_proj.*lora_B/);
      expect(m2.loraConfig).toBeNull();
      // unexpected name
      await saveSafetensors(path.join(d2, 'adapter_model.safetensors'), { ...t, 'base_model.model.layers.0.self_attn.k_proj.lora_A.weight': t['base_model.model.layers.0.self_attn.q_proj.lora_A.weight'] });
      await expectCodeAsync(m2.loadLora(d2), 'CORRUPT_FILE', /k_proj\.lora_A/);
      for (const x of Object.values(t)) x.dispose();
      // unsupported config (with the valid adapter file back)
      fs.copyFileSync(path.join(dir, 'adapter_model.safetensors'), path.join(d2, 'adapter_model.safetensors'));
      fs.writeFileSync(path.join(d2, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 8, target_modules: ['q_proj', 'lm_head'] }));
      await expectCodeAsync(m2.loadLora(d2), 'CORRUPT_FILE', /target_modules.*lm_head/);
      fs.writeFileSync(path.join(d2, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 2, target_modules: ['q_proj'], use_dora: true }));
      await expectCodeAsync(m2.loadLora(d2), 'CORRUPT_FILE', /use_dora/);
      await expectCodeAsync(m2.loadLora(path.join(tmpRoot, 'nope')), 'IO_ERROR', /adapter_config\.json/);
    } finally {
      m.dispose();
      m2.dispose();
    }
  });
});

describe('LlamaEncoder errors', () => {
  const cfg = randomLlamaConfig({ num_hidden_layers: 1, vocab_size: 31 });

  test('config: missing or bad fields are named, with the file', async () => {
    const noHidden: Record<string, unknown> = { ...cfg };
    delete noHidden.hidden_size;
    expectCode(() => parseLlamaConfig(noHidden, '/x/config.json'), 'CORRUPT_FILE', /hidden_size.*missing|\/x\/config\.json.*hidden_size/);
    expectCode(() => parseLlamaConfig(noHidden), 'INVALID_ARGUMENT', /hidden_size/);
    expectCode(() => parseLlamaConfig({ ...cfg, num_key_value_heads: 3 }), 'INVALID_ARGUMENT', /num_key_value_heads/);
    expectCode(() => parseLlamaConfig({ ...cfg, model_type: 'gemma' }), 'INVALID_ARGUMENT', /model_type/);
    expectCode(() => parseLlamaConfig({ ...cfg, rope_scaling: { rope_type: 'yarn', factor: 2 } }), 'INVALID_ARGUMENT', /rope_scaling/);
    expectCode(() => parseLlamaConfig({ ...cfg, rope_scaling: { rope_type: 'llama3', factor: 8 } }), 'INVALID_ARGUMENT', /low_freq_factor/);
    expectCode(() => parseLlamaConfig({ ...cfg, hidden_act: 'gelu' }), 'INVALID_ARGUMENT', /hidden_act/);
    const noHeadDim: Record<string, unknown> = { ...cfg, hidden_size: 50 };
    delete noHeadDim.head_dim;
    expectCode(() => parseLlamaConfig(noHeadDim), 'INVALID_ARGUMENT', /head_dim/);
    // defaults: head_dim from hidden / heads, kv heads = heads, linear scaling
    const d: Record<string, unknown> = { ...cfg, rope_scaling: { type: 'linear', factor: 2 } };
    delete d.head_dim;
    delete d.num_key_value_heads;
    const p = parseLlamaConfig(d);
    expect(p.headDim).toBe(12);
    expect(p.numKeyValueHeads).toBe(4);
    expect(p.ropeScaling).toEqual({ type: 'linear', factor: 2 });
    expect(parseLlamaConfig({ ...cfg, model_type: 'qwen2', attention_bias: false }).attentionBias).toBe(true);
    // from a folder
    const dir = tmpDir();
    writeHfLlamaDir(dir, cfg, randomLlamaWeights(cfg, 1), { prefix: 'model.', dtype: 'F32' });
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(noHidden));
    await expectCodeAsync(LlamaEncoder.fromPretrained(dir), 'CORRUPT_FILE', /config\.json.*hidden_size/);
    fs.writeFileSync(path.join(dir, 'config.json'), '{ not json');
    await expectCodeAsync(LlamaEncoder.fromPretrained(dir), 'CORRUPT_FILE', /config\.json/);
    await expectCodeAsync(LlamaEncoder.fromPretrained(path.join(tmpRoot, 'missing')), 'IO_ERROR', /config\.json/);
  });

  test('weights: missing, wrong shape, extra names ignored and listed', async () => {
    const w = randomLlamaWeights(cfg, 2);
    const missing = { ...w };
    delete missing['layers.0.mlp.up_proj.weight'];
    const d1 = tmpDir();
    writeHfLlamaDir(d1, cfg, missing, { prefix: 'model.', dtype: 'F32' });
    await expectCodeAsync(LlamaEncoder.fromPretrained(d1), 'CORRUPT_FILE', /layers\.0\.mlp\.up_proj\.weight/);
    const d2 = tmpDir();
    const wrong = { ...w, 'layers.0.self_attn.k_proj.weight': { shape: [16, 48], data: new Float64Array(16 * 48) } };
    writeHfLlamaDir(d2, cfg, wrong, { prefix: '', dtype: 'F32' });
    await expectCodeAsync(LlamaEncoder.fromPretrained(d2), 'CORRUPT_FILE', /k_proj\.weight.*\[16,48\].*\[32,48\]/);
    const d3 = tmpDir();
    const extra = { ...w, 'layers.0.self_attn.rotary_emb.inv_freq': { shape: [8], data: new Float64Array(8) } };
    writeHfLlamaDir(d3, cfg, extra, { prefix: 'model.', dtype: 'F32', shards: 2 });
    const m = await LlamaEncoder.fromPretrained(d3);
    expect(m.unexpectedWeights).toEqual(['model.layers.0.self_attn.rotary_emb.inv_freq']);
    m.dispose();
    // no lm_head in the checkpoint: the model has none unless required
    const noHead = { ...w };
    delete noHead['lm_head.weight'];
    const d4 = tmpDir();
    writeHfLlamaDir(d4, cfg, noHead, { prefix: '', dtype: 'F32' });
    const m4 = await LlamaEncoder.fromPretrained(d4);
    expect(m4.hasLmHead).toBe(false);
    expect(() => m4.lmHeadWeight).toThrow(/lm_head/);
    m4.dispose();
    await expectCodeAsync(LlamaEncoder.fromPretrained(d4, { lmHead: true }), 'CORRUPT_FILE', /lm_head\.weight/);
  });

  test('forward arguments: bad ids, dtypes and shapes are typed and named', () => {
    const m = new LlamaEncoder(parseLlamaConfig(cfg), { seed: 3 });
    try {
      const ok = idsTensor([[1, 2, 3]]);
      const mask = idsTensor([[1, 1, 1]]);
      expectCode(() => m.forward(idsTensor([[1, 31, 2]]), mask), 'INVALID_ARGUMENT', /31/);
      expectCode(() => m.forward(idsTensor([[1, -1, 2]]), mask), 'INVALID_ARGUMENT', /-1/);
      expectCode(() => m.forward(tensor([[1, 2, 3]]), mask), 'DTYPE_MISMATCH', /inputIds/);
      expectCode(() => m.forward(ok, tensor([[1, 1, 1]])), 'DTYPE_MISMATCH', /attentionMask/);
      expectCode(() => m.forward(ok, idsTensor([[1, 1]])), 'SHAPE_MISMATCH', /attentionMask/);
      expectCode(() => m.forward(tensor(new Int32Array([1, 2, 3]), [3]), mask), 'SHAPE_MISMATCH', /inputIds/);
      expectCode(() => m.forward(ok, mask, { positionIds: idsTensor([[0, 1]]) }), 'INVALID_ARGUMENT', /positionIds/);
      expectCode(() => new LlamaEncoder({ ...parseLlamaConfig(cfg), numKeyValueHeads: 3 }), 'INVALID_ARGUMENT', /numKeyValueHeads/);
      // an all-padding row stays finite
      const out = noGrad(() => tidy(() => m.forward(idsTensor([[1, 2, 3], [0, 0, 0]]), idsTensor([[1, 1, 1], [0, 0, 0]])).toArray()));
      for (const v of out) expect(Number.isFinite(v)).toBe(true);
      // zero-length sequences are refused, naming inputIds
      const empty = tensor(new Int32Array(0), [1, 0], { dtype: 'int32' });
      expectCode(() => m.forward(empty, empty), 'SHAPE_MISMATCH', /inputIds \[1,0\]/);
      empty.dispose();
      // longer than max_position_embeddings: accepted, as Hugging Face's RoPE models do
      // (the trainers truncate at maxLength before this); the output stays finite
      const S = (m.config.maxPositionEmbeddings ?? 64) + 7;
      const long = noGrad(() => tidy(() => m.forward(idsTensor([Array.from({ length: S }, (_, i) => 1 + (i % 29))]), idsTensor([new Array(S).fill(1)])).toArray()));
      expect(long.length).toBe(S * m.config.hiddenSize);
      for (const v of long) expect(Number.isFinite(v)).toBe(true);
    } finally {
      m.dispose();
    }
  });
});

describe('LlamaEncoder.encode with a tokenizer', () => {
  test('strings and instruction pairs, batched: rows equal single-text forward + pool', () => {
    const corpus = ['a dog runs on the grass', 'two cats sleep on a red sofa', 'the man rides a bike down the hill', 'a child plays with a ball'];
    const tok = trainBpeTokenizer(corpus, { vocabSize: 3 + 256 + 30, minFrequency: 1 });
    const cfg = randomLlamaConfig({ vocab_size: 3 + 256 + 30, num_hidden_layers: 1 });
    const m = new LlamaEncoder(parseLlamaConfig(cfg), { seed: 12 });
    try {
      const texts = ['a dog on the sofa', 'cats', 'the child rides a red bike down the grass hill'];
      const got = m.encode(tok, texts, { batchSize: 2, pooling: 'weighted_mean' });
      expect(got.shape).toEqual([3, 48]);
      expect(m.training).toBe(true);
      const g = got.toArray();
      got.dispose();
      texts.forEach((t, i) => {
        const want = noGrad(() => tidy(() => {
          const b = tok.encodeBatch([t]);
          return m.pool(m.forward(b.inputIds, b.attentionMask), b.attentionMask, 'weighted_mean').toArray();
        }));
        expect(relErr(g.slice(i * 48, (i + 1) * 48), want)).toBeLessThan(1e-5);
      });
      const pairs = [{ instruction: 'Retrieve a caption', text: 'a dog runs' }, { instruction: '', text: 'two cats on the grass' }];
      const gp = m.encode(tok, pairs, { pooling: 'mean' });
      const gpa = gp.toArray();
      gp.dispose();
      pairs.forEach((p, i) => {
        const want = noGrad(() => tidy(() => {
          const b = tok.encodeWithInstruction([p]);
          return m.pool(m.forward(b.inputIds, b.attentionMask), b.embedMask, 'mean').toArray();
        }));
        expect(relErr(gpa.slice(i * 48, (i + 1) * 48), want)).toBeLessThan(1e-5);
      });
      expectCode(() => m.encode(tok, []), 'INVALID_ARGUMENT', /inputs/);
      expectCode(() => m.encode(tok, ['a', { instruction: '', text: 'b' }] as never), 'INVALID_ARGUMENT', /all strings/);
    } finally {
      m.dispose();
    }
  });
});

describeGpu('LlamaEncoder on CUDA', () => {
  test('fromPretrained to cuda: forward, pooling, MNTP loss and LoRA gradients match the CPU; bfloat16 within bf16 rounding', async () => {
    const cfg = randomLlamaConfig();
    const fx = fixture(505, cfg, { prefix: 'model.', dtype: 'BF16', shards: 2 });
    const ids = randomIds(29, cfg.vocab_size);
    const cpu = await LlamaEncoder.fromPretrained(fx.dir);
    const gpu = await LlamaEncoder.fromPretrained(fx.dir, { device: 'cuda' });
    const gbf = await LlamaEncoder.fromPretrained(fx.dir, { device: 'cuda', dtype: 'bfloat16' });
    try {
      expect(gpu.device).toMatch(/^cuda/);
      const want = llamaForwardRef(cfg, fx.weights, ids, MASK, { bidirectional: true, positionIds: defaultPositions(MASK) });
      // ids and masks on the CPU are moved to the model's device
      expect(relErr(forwardArray(gpu, ids, MASK), want)).toBeLessThan(1e-4);
      expect(relErr(forwardArray(gbf, ids, MASK), want)).toBeLessThan(3e-2);
      const causalWant = llamaForwardRef(cfg, fx.weights, ids, MASK, { bidirectional: false, positionIds: defaultPositions(MASK) });
      expect(relErr(rows(forwardArray(gpu, ids, MASK, { causal: true }), MASK, 48), rows(causalWant, MASK, 48))).toBeLessThan(1e-4);
      for (const mode of ['mean', 'weighted_mean', 'eos', 'bos'] as PoolMode[]) {
        const got = noGrad(() => tidy(() => gpu.pool(gpu.forward(idsTensor(ids), idsTensor(MASK)), idsTensor(MASK), mode).toArray()));
        expect(relErr(got, poolRef(want, MASK, B, S, 48, mode))).toBeLessThan(1e-4);
      }
      const labels = idsTensor(ids.map((r) => r.map((t, s) => (s % 2 ? t : -100))));
      const lc = noGrad(() => tidy(() => cpu.mntpLoss(cpu.forward(idsTensor(ids), idsTensor(MASK)), labels).item()));
      const lg = noGrad(() => tidy(() => gpu.mntpLoss(gpu.forward(idsTensor(ids), idsTensor(MASK)), labels).item()));
      expect(Math.abs(lg - lc) / lc).toBeLessThan(1e-4);
      labels.dispose();
      // LoRA gradients (same adapter values on both), with checkpointing on the GPU
      cpu.withLora({ r: 4, alpha: 8, seed: 2 });
      gpu.withLora({ r: 4, alpha: 8, seed: 2 });
      noGrad(() => tidy(() => {
        const g = gpu.loraStateDict();
        for (const [n, t] of Object.entries(cpu.loraStateDict())) {
          copyInto(t, F.scale(tensor(hostRandom(t.size, t.size + 5), t.shape), 0.2));
          copyInto(g[n], t);
        }
      }));
      const proj = tensor(hostRandom(B * 48, 61), [B, 48]);
      const projG = proj.to('cuda');
      const grads = (m: LlamaEncoder, p: Tensor, ck: boolean) => {
        m.zeroGrad();
        tidy(() => F.sum(F.mul(m.pool(m.forward(idsTensor(ids), idsTensor(MASK), { checkpoint: ck }), idsTensor(MASK), 'mean'), p)).backward());
        return m.trainableParameters().map((t) => t.grad!.toArray());
      };
      const a = grads(cpu, proj, false), b = grads(gpu, projG, true);
      a.forEach((g, i) => expect(relErr(b[i], g)).toBeLessThan(1e-4));
      proj.dispose();
      projG.dispose();
    } finally {
      cpu.dispose();
      gpu.dispose();
      gbf.dispose();
    }
  });
});
