// adapter.ts: LLM2CLIP's text adapter (../shared/docs/LLM2CLIP.md): maps the
// L2-normalised LLM sentence embedding into CLIP's joint space through residual MLP blocks.
import { DType, checkDType } from '../dtype';
import { fail } from '../errors';
import { nextRandomSeed, toSeed } from '../creation';
import { tidy } from '../scope';
import { Tensor, shapeStr } from '../tensor';
import { Module, Linear, LayerNorm } from '../nn';
import * as F from '../functional';

/** LayerNorm epsilon of the adapter (PyTorch's default). */
export const ADAPTER_LN_EPS = 1e-5;

/** Options of the {@link TextAdapter} constructor. */
export interface TextAdapterOptions {
  /** Residual blocks k (default 4, as LLM2CLIP). */
  numBlocks?: number;
  /** Width of each block's hidden layer as a multiple of inDim (default 2). */
  hiddenMultiplier?: number;
  /** Seed of the random initialisation (default: the next of the global seed sequence). */
  seed?: number | bigint;
  /** Parameter dtype (default float32). */
  dtype?: DType;
  /** 'cpu' (default), 'cuda' or 'cuda:N'. */
  device?: string;
}

/** One residual block: x + fc2(GELU(fc1(norm(x)))). */
class AdapterBlock extends Module {
  readonly norm: LayerNorm;
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(d: number, hidden: number, o: { dtype: DType; device: string }, seed: bigint) {
    super();
    this.norm = this.registerModule('norm', new LayerNorm(d, ADAPTER_LN_EPS, o));
    this.fc1 = this.registerModule('fc1', new Linear(d, hidden, { ...o, seed }));
    this.fc2 = this.registerModule('fc2', new Linear(hidden, d, { ...o, seed: seed + 2n }));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => F.add(x, this.fc2.forward(F.gelu(this.fc1.forward(this.norm.forward(x))))));
  }
}

/** Children named 0, 1, ... */
class BlockList extends Module {
  readonly items: AdapterBlock[];
  constructor(items: AdapterBlock[]) {
    super();
    this.items = items.map((m, i) => this.registerModule(String(i), m));
  }
}

/**
 * LLM2CLIP's text adapter: for LLM embeddings x [N, inDim],
 *   x ← x / max(‖x‖₂, 1e-12)                      (L2 normalisation, done inside forward)
 *   k times: x ← x + fc2(GELU(fc1(LayerNorm(x))))  fc1: d → m·d, fc2: m·d → d (m = 2)
 *   y = proj(LayerNorm(x))                         proj: d → embedDim, with bias
 * GELU is erf-exact; LayerNorms have eps 1e-5. Parameters: `blocks.N.norm.{weight,bias}`,
 * `blocks.N.fc1.{weight,bias}`, `blocks.N.fc2.{weight,bias}`, `norm.{weight,bias}`,
 * `proj.{weight,bias}` (torch Linear layout [out, in]); Linears initialised as
 * torch.nn.Linear (U(±1/√in)), LayerNorms 1 / 0.
 */
export class TextAdapter extends Module {
  /** Width d of the LLM embedding. */
  readonly inDim: number;
  /** Width of the output (CLIP's joint space). */
  readonly embedDim: number;
  /** Residual blocks k. */
  readonly numBlocks: number;
  /** Hidden width of each block (hiddenMultiplier · inDim). */
  readonly hiddenDim: number;
  private readonly blocks: AdapterBlock[];
  private readonly norm: LayerNorm;
  private readonly proj: Linear;

  constructor(inDim: number, embedDim: number, options: TextAdapterOptions = {}) {
    super();
    const posInt = (v: unknown, name: string): number => {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) fail('INVALID_ARGUMENT', `TextAdapter: ${name} must be a positive integer (got ${String(v)})`);
      return v;
    };
    this.inDim = posInt(inDim, 'inDim');
    this.embedDim = posInt(embedDim, 'embedDim');
    if (options === null || typeof options !== 'object') fail('INVALID_ARGUMENT', 'TextAdapter: options must be an object');
    const k = options.numBlocks ?? 4;
    if (typeof k !== 'number' || !Number.isSafeInteger(k) || k < 0) fail('INVALID_ARGUMENT', `TextAdapter: options.numBlocks must be a non-negative integer (got ${String(k)})`);
    this.numBlocks = k;
    const m = options.hiddenMultiplier ?? 2;
    if (typeof m !== 'number' || !Number.isFinite(m) || m <= 0 || !Number.isSafeInteger(m * inDim))
      fail('INVALID_ARGUMENT', `TextAdapter: options.hiddenMultiplier must be positive with hiddenMultiplier·inDim an integer (got ${String(m)})`);
    this.hiddenDim = m * inDim;
    const dtype = checkDType(options.dtype ?? 'float32', 'TextAdapter(options.dtype)');
    if (dtype === 'int32') fail('DTYPE_MISMATCH', 'TextAdapter(options.dtype): must be a float dtype');
    const o = { dtype, device: options.device ?? 'cpu' };
    const seed = options.seed === undefined ? nextRandomSeed() : toSeed(options.seed, 'TextAdapter(options.seed)');
    const mask = (1n << 64n) - 1n;
    const seedAt = (i: number) => (seed + BigInt(i) * 0x9e3779b97f4a7c15n) & mask;
    const blocks = new BlockList(Array.from({ length: k }, (_, i) => new AdapterBlock(inDim, this.hiddenDim, o, seedAt(2 * i + 1))));
    this.registerModule('blocks', blocks);
    this.blocks = blocks.items;
    this.norm = this.registerModule('norm', new LayerNorm(inDim, ADAPTER_LN_EPS, o));
    this.proj = this.registerModule('proj', new Linear(inDim, embedDim, { ...o, seed: seedAt(2 * k + 1) }));
  }

  /**
   * x [N, inDim] (any float dtype; cast to the parameters' dtype) -> [N, embedDim]. The
   * rows are L2-normalised first (a zero row stays zero), so callers pass the raw LLM
   * embedding.
   */
  forward(x: Tensor): Tensor {
    if (!(x instanceof Tensor)) fail('INVALID_ARGUMENT', 'TextAdapter.forward(x): x must be a Tensor');
    if (x.ndim !== 2 || x.shape[1] !== this.inDim)
      fail('SHAPE_MISMATCH', `TextAdapter.forward: x ${x.dtype}${shapeStr(x.shape)} must be [N,${this.inDim}]`);
    if (x.dtype === 'int32') fail('DTYPE_MISMATCH', 'TextAdapter.forward: x must be a float tensor (got int32)');
    const w = this.proj.weight;
    if (x.device !== w.device) fail('DEVICE_MISMATCH', `TextAdapter.forward: x is on ${x.device}, the parameters on ${w.device}`);
    return tidy(() => {
      let h = F.l2Normalize(x.dtype === w.dtype ? x : x.cast(w.dtype));
      for (const b of this.blocks) h = b.forward(h);
      return this.proj.forward(this.norm.forward(h));
    });
  }
}
