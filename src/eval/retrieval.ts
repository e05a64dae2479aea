// retrieval.ts: image-text retrieval (Recall@K both ways) and zero-shot classification from
// precomputed embeddings. Cosine similarities in float64 on the host, one block of queries at
// a time (no I x T matrix is held); ranks with ties broken towards the lower index; exact
// chance levels so that a number can be read against what random embeddings would give.
import { fail } from '../errors';
import { Tensor, shapeStr } from '../tensor';

/** Embeddings [n, d]: a Tensor (any float dtype or device) or one vector per row. */
export type EmbeddingRows = Tensor | Float32Array[] | Float64Array[];

/** Recall at each K, keyed `r1`, `r5`, ... (fractions in [0, 1]). */
export type RecallAtK = Record<`r${number}`, number>;

/** Options of {@link evaluateRetrieval}. */
export interface EvaluateRetrievalOptions {
  /** Image embeddings [I, d]. */
  imageEmbeds: EmbeddingRows;
  /** Text embeddings [T, d]. */
  textEmbeds: EmbeddingRows;
  /** For each text, the index of its image (length T, values in [0, I)). */
  textImage: Int32Array;
  /** The K of Recall@K (default [1, 5, 10]); positive integers. */
  ks?: number[];
}

/** What {@link evaluateRetrieval} measures. */
export interface RetrievalResult {
  /** Image -> text: an image hits at K when ANY of its captions is among its top K texts. */
  i2t: RecallAtK;
  /** Text -> image: a text hits at K when its image is among its top K images. */
  t2i: RecallAtK;
  /** The expected recall of random (exchangeable) rankings, exactly; see {@link evaluateRetrieval}. */
  chance: { i2t: RecallAtK; t2i: RecallAtK };
  /** I, the number of images (i2t averages over those with at least one caption). */
  images: number;
  /** T, the number of captions (texts). */
  captions: number;
}

/** Options of {@link evaluateZeroShot}. */
export interface EvaluateZeroShotOptions {
  /** Image embeddings [N, d]. */
  imageEmbeds: EmbeddingRows;
  /** One embedding per class [C, d] (e.g. the L2-normalised mean of its prompt embeddings). */
  classEmbeds: EmbeddingRows;
  /** The true class of each image (length N, values in [0, C)). */
  labels: Int32Array;
}

/** What {@link evaluateZeroShot} measures. */
export interface ZeroShotResult {
  /** Fraction of images whose most similar class is their label. */
  accuracy: number;
  /** 1 / C. */
  chance: number;
  /** C. */
  classes: number;
  /** N. */
  images: number;
  /** Accuracy over the images of each class; null for a class without images. */
  perClass: (number | null)[];
  /** The predicted class of each image. */
  predictions: Int32Array;
}

/** Rows copied into one L2-normalised float64 matrix [n, d] (a zero row stays zero: cosine 0). */
function toUnitMatrix(x: unknown, what: string, fn: string): { M: Float64Array; n: number; d: number } {
  let n: number, d: number, src: ArrayLike<number>;
  if (x instanceof Tensor) {
    if (x.ndim !== 2) fail('SHAPE_MISMATCH', `${fn}: ${what} must be a 2-D tensor [n, d], got ${shapeStr(x.shape)}`);
    [n, d] = x.shape;
    const host = x.toArray();
    if (!(host instanceof Float32Array || host instanceof Float64Array)) fail('INVALID_ARGUMENT', `${fn}: ${what} is an ${x.dtype} tensor; embeddings must be floating point`);
    src = host;
  } else if (Array.isArray(x)) {
    n = x.length;
    d = n > 0 && (x[0] instanceof Float32Array || x[0] instanceof Float64Array) ? x[0].length : 0;
    const flat = new Float64Array(n * d);
    x.forEach((r: unknown, i: number) => {
      if (!(r instanceof Float32Array || r instanceof Float64Array)) fail('INVALID_ARGUMENT', `${fn}: ${what}[${i}] is not a Float32Array or Float64Array`);
      if (r.length !== d) fail('SHAPE_MISMATCH', `${fn}: ${what}[${i}] has ${r.length} dims, ${what}[0] has ${d}`);
      flat.set(r, i * d);
    });
    src = flat;
  } else fail('INVALID_ARGUMENT', `${fn}: ${what} must be a Tensor [n, d] or an array of Float32Array/Float64Array`);
  if (n === 0) fail('INVALID_ARGUMENT', `${fn}: ${what} is empty`);
  if (d === 0) fail('SHAPE_MISMATCH', `${fn}: ${what} has 0 dims`);
  const M = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let k = 0; k < d; k++) {
      const v = src[i * d + k];
      if (!Number.isFinite(v)) fail('INVALID_ARGUMENT', `${fn}: ${what} row ${i} has a non-finite value (${v}) at dim ${k}`);
      s += v * v;
    }
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let k = 0; k < d; k++) M[i * d + k] = src[i * d + k] * inv;
  }
  return { M, n, d };
}

function checkIndex(a: unknown, n: number, range: number, what: string, fn: string): Int32Array {
  if (!(a instanceof Int32Array)) fail('INVALID_ARGUMENT', `${fn}: ${what} must be an Int32Array`);
  if (a.length !== n) fail('SHAPE_MISMATCH', `${fn}: ${what} has ${a.length} entries, expected ${n}`);
  for (let i = 0; i < n; i++) if (a[i] < 0 || a[i] >= range) fail('INVALID_ARGUMENT', `${fn}: ${what}[${i}] = ${a[i]} is outside [0, ${range})`);
  return a;
}

const BLOCK = 64;

/**
 * For each query row q of Q, the scores against every candidate row of C go to visit(q,
 * scores). Blocked: BLOCK queries at a time, so only BLOCK x nc scores are held.
 */
function forEachScoreRow(Q: Float64Array, nq: number, C: Float64Array, nc: number, d: number, visit: (q: number, scores: Float64Array) => void): void {
  const S = new Float64Array(BLOCK * nc);
  for (let q0 = 0; q0 < nq; q0 += BLOCK) {
    const nb = Math.min(BLOCK, nq - q0);
    for (let c = 0; c < nc; c++) {
      const b = c * d;
      for (let j = 0; j < nb; j++) {
        const a = (q0 + j) * d;
        let s = 0;
        for (let k = 0; k < d; k++) s += Q[a + k] * C[b + k];
        S[j * nc + c] = s;
      }
    }
    for (let j = 0; j < nb; j++) visit(q0 + j, S.subarray(j * nc, (j + 1) * nc));
  }
}

/** 0-based rank of candidate t in a score row: those scoring higher, plus those tying at a lower index. */
function rankOf(scores: Float64Array, t: number): number {
  const st = scores[t];
  let r = 0;
  for (let c = 0; c < scores.length; c++) if (scores[c] > st || (scores[c] === st && c < t)) r++;
  return r;
}

function checkKs(ks: unknown, fn: string): number[] {
  if (!Array.isArray(ks) || ks.length === 0) fail('INVALID_ARGUMENT', `${fn}: ks must be a non-empty array of positive integers`);
  for (const k of ks) if (!Number.isInteger(k) || k < 1) fail('INVALID_ARGUMENT', `${fn}: ks must be positive integers, got ${JSON.stringify(k)}`);
  return ks as number[];
}

/** P(at least one of c marked items is among k drawn without replacement from n) = 1 - C(n-c, k)/C(n, k). */
function hitChance(n: number, c: number, k: number): number {
  if (c <= 0) return 0;
  if (k >= n - c + 1) return 1;
  let miss = 1;
  for (let j = 0; j < k; j++) miss *= (n - c - j) / (n - j);
  return 1 - miss;
}

/**
 * Recall@K for image -> text and text -> image retrieval. Cosine similarity (rows are
 * L2-normalised in float64; a zero row scores 0 against everything); a candidate's rank is
 * the number of candidates scoring strictly higher plus those scoring equal at a lower
 * index (ties: lower index first), and a query hits at K when the rank is < K.
 * i2t: an image hits when ANY of its captions ranks < K; averaged over the images with at
 * least one caption. t2i: a text hits when its image ranks < K; averaged over all texts.
 * Chance (the expectation under a uniformly random ranking): t2i = min(K, I) / I;
 * i2t = mean over images with c_i >= 1 captions of 1 - C(T - c_i, K) / C(T, K) (the
 * probability that K texts drawn without replacement from T include one of its c_i).
 * Recalls are fractions in [0, 1]. INVALID_ARGUMENT / SHAPE_MISMATCH name the bad argument.
 */
export function evaluateRetrieval(options: EvaluateRetrievalOptions): RetrievalResult {
  const fn = 'evaluateRetrieval';
  if (options === null || typeof options !== 'object') fail('INVALID_ARGUMENT', `${fn}: options must be an object`);
  const ks = checkKs(options.ks ?? [1, 5, 10], fn);
  const img = toUnitMatrix(options.imageEmbeds, 'imageEmbeds', fn);
  const txt = toUnitMatrix(options.textEmbeds, 'textEmbeds', fn);
  if (img.d !== txt.d) fail('SHAPE_MISMATCH', `${fn}: imageEmbeds has ${img.d} dims, textEmbeds ${txt.d}`);
  const I = img.n, T = txt.n, d = img.d;
  const textImage = checkIndex(options.textImage, T, I, 'textImage', fn);
  const counts = new Int32Array(I);
  for (let t = 0; t < T; t++) counts[textImage[t]]++;

  // text -> image
  const t2iHits = new Float64Array(ks.length);
  forEachScoreRow(txt.M, T, img.M, I, d, (t, scores) => {
    const r = rankOf(scores, textImage[t]);
    ks.forEach((k, j) => {
      if (r < k) t2iHits[j]++;
    });
  });
  // image -> text: the best rank among an image's captions is the rank of its best-scoring
  // caption (the lowest index among equal scores), found in one pass
  const i2tHits = new Float64Array(ks.length);
  let withCaptions = 0;
  forEachScoreRow(img.M, I, txt.M, T, d, (i, scores) => {
    if (counts[i] === 0) return;
    withCaptions++;
    let best = -1;
    for (let t = 0; t < T; t++) if (textImage[t] === i && (best < 0 || scores[t] > scores[best])) best = t;
    const r = rankOf(scores, best);
    ks.forEach((k, j) => {
      if (r < k) i2tHits[j]++;
    });
  });

  const i2t = {} as RecallAtK, t2i = {} as RecallAtK, ci2t = {} as RecallAtK, ct2i = {} as RecallAtK;
  ks.forEach((k, j) => {
    const key = `r${k}` as const;
    t2i[key] = t2iHits[j] / T;
    i2t[key] = i2tHits[j] / withCaptions;
    ct2i[key] = Math.min(k, I) / I;
    let s = 0;
    for (let i = 0; i < I; i++) if (counts[i] > 0) s += hitChance(T, counts[i], k);
    ci2t[key] = s / withCaptions;
  });
  return { i2t, t2i, chance: { i2t: ci2t, t2i: ct2i }, images: I, captions: T };
}

/**
 * Zero-shot classification: each image's prediction is its most cosine-similar class
 * embedding (ties: the lower class index); accuracy against `labels`, with per-class
 * accuracy and chance 1 / C.
 */
export function evaluateZeroShot(options: EvaluateZeroShotOptions): ZeroShotResult {
  const fn = 'evaluateZeroShot';
  if (options === null || typeof options !== 'object') fail('INVALID_ARGUMENT', `${fn}: options must be an object`);
  const img = toUnitMatrix(options.imageEmbeds, 'imageEmbeds', fn);
  const cls = toUnitMatrix(options.classEmbeds, 'classEmbeds', fn);
  if (img.d !== cls.d) fail('SHAPE_MISMATCH', `${fn}: imageEmbeds has ${img.d} dims, classEmbeds ${cls.d}`);
  const N = img.n, C = cls.n;
  const labels = checkIndex(options.labels, N, C, 'labels', fn);
  const predictions = new Int32Array(N);
  const right = new Float64Array(C), total = new Float64Array(C);
  let hits = 0;
  forEachScoreRow(img.M, N, cls.M, C, img.d, (i, scores) => {
    let best = 0;
    for (let c = 1; c < C; c++) if (scores[c] > scores[best]) best = c;
    predictions[i] = best;
    total[labels[i]]++;
    if (best === labels[i]) {
      hits++;
      right[labels[i]]++;
    }
  });
  const perClass = Array.from(total, (t, c) => (t > 0 ? right[c] / t : null));
  return { accuracy: hits / N, chance: 1 / C, classes: C, images: N, perClass, predictions };
}
