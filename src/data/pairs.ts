// pairs.ts: a deterministic, resumable sampler of (anchor, positive[, hard negative]) caption
// pairs for caption-contrastive training. An epoch visits every "unit" once in a seeded
// shuffled order (unit = a caption as anchor, a long caption of a short/long image, or one
// explicit pair); the random choices inside a pair come from one xoshiro128** stream whose
// state, with the position, is checkpointed by state() and restored by fromState().
import { fail } from '../errors';
import { Rng, RngState } from './rng';
import { CaptionDataset, CaptionKind } from './types';

/** How pairs are formed from an image's captions. */
export type PairMode = 'auto' | 'captions' | 'shortLong';

/** Options of {@link PairSampler}. */
export interface PairSamplerOptions {
  /** Seed of the epoch orders and of the choices inside pairs (default 0). */
  seed?: number;
  /** Add a hard negative to every pair: a caption of an image outside the batch (default true). */
  hardNegatives?: boolean;
  /**
   * `captions`: anchor and positive are two different captions of an image (each caption
   * is an anchor once per epoch). `shortLong`: a short and a long caption of an image,
   * direction drawn at random per pair (each long caption once per epoch); images without
   * both kinds are skipped. `auto` (default): shortLong where an image has both kinds,
   * captions elsewhere.
   */
  mode?: PairMode;
}

/** One sampled pair. */
export interface SampledPair {
  anchor: string;
  positive: string;
  negative?: string;
  /** The group the pair comes from: its image's index in dataset.images (pairs format: its anchor's group). */
  group: number;
}

/** A sampler position, JSON-serialisable, for checkpoints. */
export interface PairSamplerState {
  version: 1;
  /** Epochs completed by the stream (the current epoch's number). */
  epoch: number;
  /** Next position in the current epoch's order. */
  index: number;
  /** The state of the in-pair random stream. */
  rngState: RngState;
  /** Units deferred so that a batch holds no two pairs of one group. */
  pending: number[];
  /** Hash of the dataset and options; fromState refuses a state of other data. */
  fingerprint: string;
}

interface Unit {
  group: number;
  /** Caption index (images) or pair index (pairs format). */
  slot: number;
  shortLong: boolean;
}

// Deferred units beyond this many are let into a batch even when their group is already
// in it: bounds the state where one image has far more captions than batches in an epoch.
const PENDING_CAP_MIN = 1024;
const NEGATIVE_TRIES = 32;

function fnv(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return Math.imul(h ^ 0x1f, 0x01000193) >>> 0;
}

/**
 * Samples caption pairs from a {@link CaptionDataset}: `next()` or `nextBatch(n)`, forever,
 * epoch after epoch. Deterministic for a seed; `state()` / `PairSampler.fromState()`
 * continue exactly. A batch never holds two pairs of the same image while the dataset has
 * enough images (in-batch negatives are real negatives), and hard negatives come from
 * images outside the batch.
 */
export class PairSampler {
  private readonly texts: string[][];
  private readonly kinds: (CaptionKind[] | undefined)[];
  /** Explicit pairs (pairs format) as [anchor, positive], and their given negatives. */
  private readonly pairs: [string, string][] | null = null;
  private readonly negatives: (string | undefined)[] = [];
  private readonly units: Unit[] = [];
  private readonly groupCount: number;
  private readonly unitGroups: number;
  private readonly seed: number;
  private readonly hard: boolean;
  private readonly fingerprint: string;
  private epoch_ = 0;
  private index = 0;
  private order: Int32Array | null = null;
  private pending: number[] = [];
  private rng: Rng;

  constructor(dataset: CaptionDataset, options: PairSamplerOptions = {}) {
    if (dataset === null || typeof dataset !== 'object' || !Array.isArray(dataset.images))
      fail('INVALID_ARGUMENT', 'PairSampler: dataset must be a CaptionDataset (with images)');
    const seed = options.seed ?? 0;
    if (!Number.isSafeInteger(seed)) fail('INVALID_ARGUMENT', `PairSampler: seed must be a safe integer, got ${seed}`);
    const mode = options.mode ?? 'auto';
    if (!['auto', 'captions', 'shortLong'].includes(mode)) fail('INVALID_ARGUMENT', `PairSampler: mode must be auto, captions or shortLong, got ${JSON.stringify(mode)}`);
    this.seed = seed;
    this.hard = options.hardNegatives ?? true;
    this.texts = [];
    this.kinds = [];
    let h1 = fnv(0x811c9dc5, `${seed}|${mode}|${this.hard}`), h2 = fnv(0x01234567, `${dataset.images.length}`);
    if (dataset.pairs && dataset.pairs.length > 0) {
      // Explicit pairs: a group per distinct anchor text, so that pairs sharing an anchor
      // never meet in a batch.
      const groupOf = new Map<string, number>();
      dataset.pairs.forEach((p, i) => {
        if (typeof p?.anchor !== 'string' || typeof p.positive !== 'string')
          fail('INVALID_ARGUMENT', `PairSampler: dataset.pairs[${i}] needs string anchor and positive`);
        let g = groupOf.get(p.anchor);
        if (g === undefined) {
          groupOf.set(p.anchor, (g = groupOf.size));
          this.texts.push([]);
          this.kinds.push(undefined);
        }
        this.texts[g].push(p.positive);
        this.negatives.push(p.negative);
        this.units.push({ group: g, slot: i, shortLong: false });
        h1 = fnv(h1, p.anchor);
        h2 = fnv(h2, `${p.positive}\u001f${p.negative ?? ''}`);
      });
      this.pairs = dataset.pairs.map((p) => [p.anchor, p.positive]);
    } else {
      dataset.images.forEach((im, g) => {
        if (!im || !Array.isArray(im.captions) || im.captions.some((c) => typeof c !== 'string'))
          fail('INVALID_ARGUMENT', `PairSampler: dataset.images[${g}] needs a captions array of strings`);
        const kinds = im.kinds && im.kinds.length === im.captions.length ? im.kinds : undefined;
        this.texts.push(im.captions.slice());
        this.kinds.push(kinds);
        const hasBoth = !!kinds && kinds.includes('short') && kinds.includes('long');
        if (mode !== 'captions' && hasBoth) {
          kinds!.forEach((k, slot) => k === 'long' && this.units.push({ group: g, slot, shortLong: true }));
        } else if (mode !== 'shortLong' && im.captions.length >= 2) {
          for (let slot = 0; slot < im.captions.length; slot++) this.units.push({ group: g, slot, shortLong: false });
        }
        h1 = fnv(h1, im.captions.join('\u001f'));
        h2 = fnv(h2, `${im.id}|${(kinds ?? []).join(',')}`);
      });
    }
    this.groupCount = this.texts.length;
    this.unitGroups = new Set(this.units.map((u) => u.group)).size;
    if (this.units.length === 0)
      fail('INVALID_ARGUMENT', `PairSampler: no pairs can be formed from ${dataset.source ?? 'the dataset'} (mode ${mode}: no image has ${mode === 'shortLong' ? 'a short and a long caption' : 'two captions'})`);
    if (this.hard && this.groupCount < 2) fail('INVALID_ARGUMENT', 'PairSampler: hard negatives need at least two images');
    this.fingerprint = h1.toString(16).padStart(8, '0') + h2.toString(16).padStart(8, '0') + this.units.length.toString(16);
    this.rng = new Rng(seed, 0x9a125);
  }

  /** Resumes the stream of `sampler.state()` over the same dataset and options. */
  static fromState(dataset: CaptionDataset, options: PairSamplerOptions, state: PairSamplerState): PairSampler {
    const s = new PairSampler(dataset, options);
    if (state === null || typeof state !== 'object') fail('INVALID_ARGUMENT', 'PairSampler.fromState: state must be an object');
    if (state.version !== 1) fail('INVALID_ARGUMENT', `PairSampler.fromState: unknown state version ${JSON.stringify(state.version)}`);
    if (state.fingerprint !== s.fingerprint)
      fail('INVALID_ARGUMENT', `PairSampler.fromState: the state belongs to another dataset or options (fingerprint ${JSON.stringify(state.fingerprint)}, expected ${s.fingerprint})`);
    if (!Number.isSafeInteger(state.epoch) || state.epoch < 0) fail('INVALID_ARGUMENT', `PairSampler.fromState: bad epoch ${JSON.stringify(state.epoch)}`);
    if (!Number.isInteger(state.index) || state.index < 0 || state.index > s.units.length)
      fail('INVALID_ARGUMENT', `PairSampler.fromState: index ${JSON.stringify(state.index)} outside [0, ${s.units.length}]`);
    if (!Array.isArray(state.pending) || !state.pending.every((u) => Number.isInteger(u) && u >= 0 && u < s.units.length))
      fail('INVALID_ARGUMENT', 'PairSampler.fromState: pending must be unit indices of this dataset');
    s.rng = Rng.fromState(state.rngState, 'PairSampler.fromState: rngState');
    s.epoch_ = state.epoch;
    s.index = state.index;
    s.pending = state.pending.slice();
    return s;
  }

  /** The current position (a copy, JSON-serialisable). */
  state(): PairSamplerState {
    return { version: 1, epoch: this.epoch_, index: this.index, rngState: this.rng.state(), pending: this.pending.slice(), fingerprint: this.fingerprint };
  }

  /** Pairs in one epoch (units: anchor captions, long captions or explicit pairs). */
  get pairsPerEpoch(): number {
    return this.units.length;
  }

  /** The current epoch (0 first). */
  get epoch(): number {
    return this.epoch_;
  }

  /** The order of epoch e: a seeded permutation of the units, independent of the pair stream. */
  private epochOrder(): Int32Array {
    if (!this.order) {
      const idx = Array.from({ length: this.units.length }, (_, i) => i);
      this.order = Int32Array.from(new Rng(this.seed, 0x0e90c4, this.epoch_).shuffle(idx));
    }
    return this.order;
  }

  private nextUnit(): number {
    if (this.index >= this.units.length) {
      this.epoch_++;
      this.index = 0;
      this.order = null;
    }
    return this.epochOrder()[this.index++];
  }

  /** The next pair (a batch of one). */
  next(): SampledPair {
    return this.nextBatch(1)[0];
  }

  /**
   * The next n pairs. No two share a group (image) while the dataset has n groups with
   * pairs; units skipped for that are deferred to the following batches, not lost.
   */
  nextBatch(n: number): SampledPair[] {
    if (!Number.isInteger(n) || n < 1) fail('INVALID_ARGUMENT', `PairSampler.nextBatch: n must be a positive integer, got ${n}`);
    const taken: number[] = [];
    const count = new Map<number, number>();
    let round = 0, full = 0; // groups are reused in rounds only when fewer than n exist
    const fits = (u: number): boolean => (count.get(this.units[u].group) ?? 0) <= round;
    const take = (u: number): void => {
      const g = this.units[u].group, c = (count.get(g) ?? 0) + 1;
      count.set(g, c);
      taken.push(u);
      if (c === round + 1 && ++full === this.unitGroups) {
        round++;
        full = 0;
      }
    };
    const keep: number[] = [];
    for (const u of this.pending) {
      if (taken.length < n && fits(u)) take(u);
      else keep.push(u);
    }
    this.pending = keep;
    const cap = Math.max(PENDING_CAP_MIN, 16 * n);
    while (taken.length < n) {
      const u = this.nextUnit();
      if (fits(u) || this.pending.length >= cap) take(u);
      else this.pending.push(u);
    }
    const inBatch = new Set(taken.map((u) => this.units[u].group));
    return taken.map((u) => this.emit(this.units[u], inBatch));
  }

  private pick(list: number[]): number {
    return list[this.rng.below(list.length)];
  }

  private emit(unit: Unit, inBatch: Set<number>): SampledPair {
    const { group, slot } = unit;
    let anchor: string, positive: string, positiveKind: CaptionKind | undefined;
    let negative: string | undefined;
    if (this.pairs) {
      [anchor, positive] = this.pairs[slot];
      negative = this.negatives[slot];
    } else if (unit.shortLong) {
      const kinds = this.kinds[group]!;
      const shorts = kinds.flatMap((k, i) => (k === 'short' ? [i] : []));
      const short = this.texts[group][this.pick(shorts)], long = this.texts[group][slot];
      const longFirst = (this.rng.nextU32() & 1) === 1;
      [anchor, positive, positiveKind] = longFirst ? [long, short, 'short'] : [short, long, 'long'];
    } else {
      const caps = this.texts[group];
      let j = this.rng.below(caps.length - 1);
      if (j >= slot) j++;
      anchor = caps[slot];
      positive = caps[j];
    }
    const pair: SampledPair = { anchor, positive, group };
    if (this.hard) pair.negative = negative ?? this.drawNegative(group, inBatch, positiveKind);
    return pair;
  }

  /** A caption of a random group other than `own`, outside the batch when possible. */
  private drawNegative(own: number, inBatch: Set<number>, kind: CaptionKind | undefined): string {
    const outside = this.groupCount > inBatch.size;
    const ok = (g: number): boolean => g !== own && (!outside || !inBatch.has(g));
    let g = -1;
    for (let t = 0; t < NEGATIVE_TRIES && g < 0; t++) {
      const c = this.rng.below(this.groupCount);
      if (ok(c)) g = c;
    }
    if (g < 0) {
      const start = this.rng.below(this.groupCount);
      for (let k = 0; k < this.groupCount && g < 0; k++) if (ok((start + k) % this.groupCount)) g = (start + k) % this.groupCount;
    }
    const caps = this.texts[g], kinds = this.kinds[g];
    const same = kind && kinds ? kinds.flatMap((k, i) => (k === kind ? [i] : [])) : [];
    return caps[same.length > 0 ? this.pick(same) : this.rng.below(caps.length)];
  }
}
