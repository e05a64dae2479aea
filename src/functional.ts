// functional.ts: the differentiable ops (exported as `F`): each runs the kernel of
// ops.* and records its backward (autograd.ts) when an input requires grad. Arguments
// are validated by the kernels (typed errors naming the op and argument).
import { fail } from './errors';
import { record } from './autograd';
import { nextRandomSeed } from './creation';
import { Tensor } from './tensor';
import * as ops from './ops';
import type { AttentionOptions, CrossEntropyOptions, L2NormalizeOptions, ReduceOptions, RopeOptions, GeluOptions } from './ops';

function lastDim(t: Tensor): number {
  return t.shape[t.ndim - 1];
}

/** Rows view [rows, lastDim] of t (shares memory; no graph record). */
function rows2d(t: Tensor): Tensor {
  return t.detach().reshape([-1, lastDim(t)]);
}

// ---------------------------------------------------------------- products

/** op(a)·op(b), as {@link ops.matmul} (2-D or batched 3-D), differentiable in a and b. */
export function matmul(a: Tensor, b: Tensor, options: { transA?: boolean; transB?: boolean } = {}): Tensor {
  const tA = !!options.transA, tB = !!options.transB;
  const y = ops.matmul(a, b, { transA: tA, transB: tB });
  const aShape = a.shape, bShape = b.shape;
  return record('matmul', y, [a, b], [a, b], (g, [sa, sb], needs) => {
    // C = op(A)·op(B): dop(A) = G·op(B)ᵀ, dop(B) = op(A)ᵀ·G.
    let da: Tensor | null = null, db: Tensor | null = null;
    if (needs[0]) da = tA ? ops.matmul(sb, g, { transA: tB, transB: true }) : ops.matmul(g, sb, { transB: !tB });
    if (needs[1]) db = tB ? ops.matmul(g, sa, { transA: true, transB: tA }) : ops.matmul(sa, g, { transA: !tA });
    // A 2-D operand broadcast over a batch: sum its gradient over the batch.
    if (da && da.ndim === 3 && aShape.length === 2) da = ops.sum(da, { dim: 0 });
    if (db && db.ndim === 3 && bShape.length === 2) db = ops.sum(db, { dim: 0 });
    if (da && da.ndim === 3 && aShape[0] === 1 && da.shape[0] !== 1) da = ops.sum(da, { dim: 0, keepDim: true });
    if (db && db.ndim === 3 && bShape[0] === 1 && db.shape[0] !== 1) db = ops.sum(db, { dim: 0, keepDim: true });
    return [da, db];
  });
}

/**
 * y = x·weightᵀ + bias (torch.nn.functional.linear): x [..., in], weight [out, in],
 * bias [out] or null.
 */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  if (!(x instanceof Tensor)) fail('INVALID_ARGUMENT', 'linear: x is not a Tensor');
  if (!(weight instanceof Tensor)) fail('INVALID_ARGUMENT', 'linear: weight is not a Tensor');
  if (x.ndim < 1 || weight.ndim !== 2 || lastDim(x) !== weight.shape[1])
    fail('SHAPE_MISMATCH', `linear: x ${x.dtype}[${x.shape}] and weight ${weight.dtype}[${weight.shape}] (must be [..., in] and [out, in])`);
  const out = weight.shape[0];
  const x2 = rows2d(x);
  let y = ops.matmul(x2, weight, { transB: true });
  if (bias) {
    const yb = ops.add(y, bias);
    y.dispose();
    y = yb;
  }
  x2.dispose();
  const yShape = [...x.shape.slice(0, -1), out];
  const yr = y.reshape(yShape);
  y.dispose();
  return record('linear', yr, [x, weight, bias], [x, weight], (g, [sx, sw], needs) => {
    const g2 = g.reshape([-1, out]);
    const dx = needs[0] ? ops.matmul(g2, sw) : null;
    const dw = needs[1] ? ops.matmul(g2, rows2d(sx), { transA: true }) : null;
    const db = needs[2] ? ops.sumToShape(g2, [out]) : null;
    return [dx, dw, db];
  });
}

/** Options of {@link loraLinear}. */
export interface LoraLinearFnOptions {
  /** alpha / r (or alpha / sqrt(r) for rsLoRA). */
  scale: number;
  bias?: Tensor | null;
  /** Dropout probability on the LoRA path's input (0 = none). */
  dropout?: number;
  /** The dropout mask's seed (default: the next of the seed sequence). */
  seed?: number | bigint;
}

/**
 * The fused LoRA linear layer (see {@link ops.loraLinear}): y = x·Wᵀ + b +
 * scale·(drop(x)·Aᵀ)·Bᵀ. W and b are frozen (they must not require grad); gradients flow
 * to x, A and B.
 */
export function loraLinear(x: Tensor, weight: Tensor, loraA: Tensor, loraB: Tensor, options: LoraLinearFnOptions): Tensor {
  if (weight?.requiresGrad || options?.bias?.requiresGrad)
    fail('INVALID_ARGUMENT', 'loraLinear: the base weight and bias are frozen; they must not require grad (use linear() plus a LoRA path to train both)');
  const p = options.dropout ?? 0;
  const dropout = p > 0 ? { p, seed: options.seed ?? nextRandomSeed() } : null;
  const y = ops.loraLinear(x, weight, loraA, loraB, { scale: options.scale, bias: options.bias ?? null, dropout });
  return record('loraLinear', y, [x, null, loraA, loraB], [x, weight, loraA, loraB], (g, [sx, sw, sa, sb], needs) => {
    const r = ops.loraLinearBackward(g, sx, sw, sa, sb, { scale: options.scale, dropout, needInputGrad: needs[0] });
    return [r.dx, null, needs[2] ? r.dA : null, needs[3] ? r.dB : null];
  });
}

// ---------------------------------------------------------------- elementwise

function broadcastGrad(g: Tensor, shape: readonly number[]): Tensor {
  return g.shape.length === shape.length && g.shape.every((v, i) => v === shape[i]) ? g : ops.sumToShape(g, shape);
}

/** a + b with broadcasting. */
export function add(a: Tensor, b: Tensor): Tensor {
  const sa = a.shape, sb = b.shape;
  return record('add', ops.add(a, b), [a, b], [], (g, _s, n) => [n[0] ? broadcastGrad(g, sa) : null, n[1] ? broadcastGrad(g, sb) : null]);
}

/** a − b with broadcasting. */
export function sub(a: Tensor, b: Tensor): Tensor {
  const sa = a.shape, sb = b.shape;
  return record('sub', ops.sub(a, b), [a, b], [], (g, _s, n) => [
    n[0] ? broadcastGrad(g, sa) : null,
    n[1] ? ops.scale(broadcastGrad(g, sb), -1) : null,
  ]);
}

/** a ∘ b with broadcasting. */
export function mul(a: Tensor, b: Tensor): Tensor {
  return record('mul', ops.mul(a, b), [a, b], [a, b], (g, [sa, sb], n) => {
    const r = ops.mulBackward(g, sa, sb);
    return [n[0] ? r.da : null, n[1] ? r.db : null];
  });
}

/** s · x. */
export function scale(x: Tensor, s: number): Tensor {
  return record('scale', ops.scale(x, s), [x], [], (g) => [ops.scale(g, s)]);
}

/** Sum over dims (all by default). */
export function sum(x: Tensor, options?: ReduceOptions): Tensor {
  const shape = x.shape;
  return record('sum', ops.sum(x, options), [x], [], (g) => [ops.sumBackward(g, shape, options)]);
}

/** Mean over dims (all by default). */
export function mean(x: Tensor, options?: ReduceOptions): Tensor {
  const shape = x.shape;
  return record('mean', ops.mean(x, options), [x], [], (g) => [ops.meanBackward(g, shape, options)]);
}

// ---------------------------------------------------------------- norms, activations

/** RMSNorm over the last dim with an optional weight (Llama): x · rsqrt(mean(x²) + eps) · w. */
export function rmsNorm(x: Tensor, weight: Tensor | null, eps = 1e-6): Tensor {
  const { y, rstd } = ops.rmsNorm(x, weight, { eps });
  const out = record('rmsNorm', y, [x, weight], [x, weight, rstd], (g, [sx, sw, sr], n) => {
    const r = ops.rmsNormBackward(g, sx, sw ?? null, sr);
    return [n[0] ? r.dx : null, n[1] ? r.dWeight : null];
  });
  rstd.dispose();
  return out;
}

/** LayerNorm over the last dim with optional weight and bias (eps default 1e-5). */
export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps = 1e-5): Tensor {
  const r0 = ops.layerNorm(x, weight, bias, { eps });
  const out = record('layerNorm', r0.y, [x, weight, bias], [x, weight, r0.mean, r0.rstd], (g, [sx, sw, sm, sr], n) => {
    const r = ops.layerNormBackward(g, sx, sw ?? null, sm, sr);
    return [n[0] ? r.dx : null, n[1] ? r.dWeight : null, n[2] ? r.dBias : null];
  });
  r0.mean.dispose();
  r0.rstd.dispose();
  return out;
}

/** x / max(‖x‖₂, eps) over the last dim. */
export function l2Normalize(x: Tensor, options?: L2NormalizeOptions): Tensor {
  return record('l2Normalize', ops.l2Normalize(x, options), [x], [x], (g, [sx]) => [ops.l2NormalizeBackward(g, sx, options)]);
}

/** Softmax over the last dim. */
export function softmax(x: Tensor): Tensor {
  const y = ops.softmax(x);
  return record('softmax', y, [x], [y], (g, [sy]) => [ops.softmaxBackward(g, sy)]);
}

/** Rotary position embedding of x [B,S,H,D] at int32 positions (see {@link ops.rope}). */
export function rope(x: Tensor, positions: Tensor, options?: RopeOptions): Tensor {
  return record('rope', ops.rope(x, positions, options), [x], [positions], (g, [sp]) => [ops.ropeBackward(g, sp, options)]);
}

/** silu(gate) ∘ up. */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  return record('swiglu', ops.swiglu(gate, up), [gate, up], [gate, up], (g, [sg, su], n) => {
    const r = ops.swigluBackward(g, sg, su);
    return [n[0] ? r.dGate : null, n[1] ? r.dUp : null];
  });
}

/** GELU (erf by default; tanh approximation as an option). */
export function gelu(x: Tensor, options?: GeluOptions): Tensor {
  return record('gelu', ops.gelu(x, options), [x], [x], (g, [sx]) => [ops.geluBackward(g, sx, options)]);
}

/** x · sigmoid(1.702 x) (OpenAI CLIP). */
export function quickGelu(x: Tensor): Tensor {
  return record('quickGelu', ops.quickGelu(x), [x], [x], (g, [sx]) => [ops.quickGeluBackward(g, sx)]);
}

/** Dropout with probability p (identity when p = 0 or training is false). seed: default the next of the seed sequence. */
export function dropout(x: Tensor, p: number, options: { training?: boolean; seed?: number | bigint } = {}): Tensor {
  if (p === 0 || options.training === false) return passThrough(x);
  const o = { p, seed: options.seed ?? nextRandomSeed() };
  return record('dropout', ops.dropout(x, o), [x], [], (g) => [ops.dropoutBackward(g, o)]);
}

/** x itself as a new handle in the graph (identity). */
function passThrough(x: Tensor): Tensor {
  return record('identity', x.detach(), [x], [], (g) => [g.detach()]);
}

/** Masked mean over the sequence: hidden [B,S,H], mask [B,S] int32 or float weights -> [B,H]. */
export function maskedMeanPool(hidden: Tensor, mask: Tensor): Tensor {
  const S = hidden.shape[1];
  return record('maskedMeanPool', ops.maskedMeanPool(hidden, mask), [hidden], [mask], (g, [sm]) => [ops.maskedMeanPoolBackward(g, sm, S)]);
}

// ---------------------------------------------------------------- attention, losses

/**
 * Fused attention (see {@link ops.attention}): q [B,S,Hq,D], k / v [B,S,Hkv,D] -> [B,S,Hq,D].
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor {
  const { out, lse } = ops.attention(q, k, v, options);
  const mask = options.keyPaddingMask ?? null;
  const o = { causal: options.causal, scale: options.scale };
  const y = record('attention', out, [q, k, v], [q, k, v, out, lse, mask], (g, [sq, sk, sv, so, sl, sm], n) => {
    const r = ops.attentionBackward(g, sq, sk, sv, so, sl, { ...o, keyPaddingMask: sm ?? null });
    return [n[0] ? r.dq : null, n[1] ? r.dk : null, n[2] ? r.dv : null];
  });
  lse.dispose();
  return y;
}

/** Embedding lookup weight[ids] (ids int32 of any shape). */
export function embedding(weight: Tensor, ids: Tensor, options: { paddingIdx?: number | null } = {}): Tensor {
  const V = weight.shape[0];
  return record('embedding', ops.embedding(weight, ids), [weight], [ids], (g, [si]) => [ops.embeddingBackward(g, si, V, options)]);
}

/**
 * Cross-entropy of hidden·weightᵀ (+ bias) against int32 targets, the logits never
 * materialised (see {@link ops.crossEntropy}); a float32 scalar.
 */
export function crossEntropy(hidden: Tensor, weight: Tensor, targets: Tensor, options: CrossEntropyOptions = {}): Tensor {
  const { loss, lse } = ops.crossEntropy(hidden, weight, targets, options);
  const bias = options.bias ?? null;
  const y = record('crossEntropy', loss, [hidden, weight, bias], [hidden, weight, targets, lse, bias], (g, [sh, sw, st, sl, sb], n) => {
    const r = ops.crossEntropyBackward(sh, sw, st, sl, { ...options, bias: sb ?? null, gradLoss: g, needWeightGrad: n[1] || n[2] });
    return [n[0] ? r.dHidden : null, n[1] ? r.dWeight : null, n[2] ? r.dBias : null];
  });
  lse.dispose();
  return y;
}

/**
 * InfoNCE / CLIP loss over a [N,d] and b [M,d] (row i of a matches row i of b), the N x M
 * logits never materialised (see {@link ops.infoNCE}). scale: a number or a one-element
 * tensor (a learnable logit scale gets its gradient); symmetric (default false, as
 * ops.infoNCE) gives the CLIP loss. A float32 scalar.
 */
export function infoNCE(a: Tensor, b: Tensor, options: { scale: number | Tensor; symmetric?: boolean }): Tensor {
  const sym = options.symmetric ?? false;
  const r0 = ops.infoNCE(a, b, { scale: options.scale, symmetric: sym });
  const st = options.scale instanceof Tensor ? options.scale : null;
  const y = record('infoNCE', r0.loss, [a, b, st], [a, b, r0.lseRows, r0.lseCols, st], (g, [sa, sb, lr, lc, ss], n) => {
    const r = ops.infoNCEBackward(sa, sb, { scale: ss ?? (options.scale as number), symmetric: sym, lseRows: lr, lseCols: lc ?? null, gradLoss: g });
    return [n[0] ? r.da : null, n[1] ? r.db : null, n[2] ? r.dScale : null];
  });
  r0.lseRows.dispose();
  r0.lseCols?.dispose();
  return y;
}

// ---------------------------------------------------------------- layout

/** Reshape (shares memory), differentiable. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  return x.reshape(shape);
}

/** Permute dims (a copy). */
export function permute(x: Tensor, dims: number[]): Tensor {
  const inv = ops.invertPermutation(dims);
  return record('permute', ops.permute(x, dims), [x], [], (g) => [ops.permute(g, inv)]);
}

/** Swap two dims (a copy). */
export function transpose(x: Tensor, dim0: number, dim1: number): Tensor {
  return record('transpose', ops.transpose(x, dim0, dim1), [x], [], (g) => [ops.transpose(g, dim0, dim1)]);
}

/** Concatenate along dim. */
export function concat(tensors: Tensor[], dim: number): Tensor {
  const sizes = tensors.map((t) => t.shape[dim < 0 ? dim + t.ndim : dim]);
  return record('concat', ops.concat(tensors, dim), tensors, [], (g, _s, n) => ops.concatBackward(g, sizes, dim).map((t, i) => (n[i] ? t : null)));
}

/** x[..., start:end, ...] along dim (a copy). */
export function slice(x: Tensor, dim: number, start: number, end?: number | null): Tensor {
  const shape = x.shape;
  return record('slice', ops.slice(x, dim, start, end), [x], [], (g) => [ops.sliceBackward(g, shape, dim, start, end)]);
}

/** Split along dim into pieces (see {@link ops.split}); each piece is differentiable. */
export function split(x: Tensor, sizes: number | number[], dim: number): Tensor[] {
  const d = dim < 0 ? dim + x.ndim : dim;
  const parts = ops.split(x, sizes, dim);
  let start = 0;
  return parts.map((p) => {
    const s = start, e = start + p.shape[d];
    start = e;
    const shape = x.shape;
    return record('split', p, [x], [], (g) => [ops.sliceBackward(g, shape, d, s, e)]);
  });
}

/** Images [B,C,H,W] -> patches [B, (H/p)(W/p), C·p·p] (a ViT's patch embedding input). */
export function patchify(images: Tensor, patchSize: number): Tensor {
  const [, C, H, W] = images.shape;
  return record('patchify', ops.patchify(images, patchSize), [images], [], (g) => [
    ops.unpatchify(g, { channels: C, height: H, width: W, patchSize }),
  ]);
}
