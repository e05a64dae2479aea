// tfidf.ts: a bag-of-words TF-IDF text embedder, the scale baseline for caption retrieval
// accuracy. scikit-learn's TfidfVectorizer defaults: lower case, tokens are runs of 2+ word
// characters, smooth idf = ln((1 + n) / (1 + df)) + 1, raw term counts, L2-normalised rows;
// the vocabulary is sorted, so it does not depend on the order of the fitted texts.
import { fail } from '../errors';

/** A sparse vector: ascending indices and their values. */
export interface SparseVector {
  indices: Int32Array;
  values: Float64Array;
}

/** Options of {@link TfidfEmbedder.fit}. */
export interface TfidfOptions {
  /** Lower-case texts before tokenising (default true). */
  lowercase?: boolean;
  /** Words to drop: 'english' (a built-in list of function words), a list, or none (default). */
  stopWords?: 'english' | readonly string[] | null;
  /** The token pattern; must have the g flag (default: runs of 2+ letters, marks, digits or _). */
  tokenPattern?: RegExp;
  /** Use 1 + ln(tf) instead of the raw count (default false). */
  sublinearTf?: boolean;
  /** Drop terms in fewer than this many fitted texts (default 1). */
  minDf?: number;
}

/** A short list of English function words (articles, pronouns, auxiliaries, prepositions). */
export const ENGLISH_STOP_WORDS: readonly string[] = (
  'a an the and or but nor so yet if then than that this these those there here ' +
  'is are was were be been being am do does did doing have has had having will would shall should can could may might must ' +
  'i me my mine we us our ours you your yours he him his she her hers it its they them their theirs ' +
  'what which who whom whose when where why how all any both each few more most other some such no not only own same too very ' +
  'of at by for with about against between into through during before after above below to from up down in out on off over under ' +
  'again further once as until while also just because'
).split(' ');

// Dense output is refused beyond this many elements (texts x vocabulary): 400 MB of float32.
const MAX_DENSE_ELEMENTS = 1e8;

/** TF-IDF text embeddings over a vocabulary fitted on a corpus. */
export class TfidfEmbedder {
  /** Term -> column. */
  readonly vocabulary: ReadonlyMap<string, number>;
  private readonly idfs: Float64Array;
  private readonly lowercase: boolean;
  private readonly stop: ReadonlySet<string>;
  private readonly pattern: RegExp;
  private readonly sublinear: boolean;

  private constructor(vocabulary: Map<string, number>, idfs: Float64Array, o: Required<Pick<TfidfOptions, 'lowercase' | 'sublinearTf'>> & { stop: Set<string>; pattern: RegExp }) {
    this.vocabulary = vocabulary;
    this.idfs = idfs;
    this.lowercase = o.lowercase;
    this.stop = o.stop;
    this.pattern = o.pattern;
    this.sublinear = o.sublinearTf;
  }

  /** Fits the vocabulary and idf weights on `texts`. */
  static fit(texts: readonly string[], options: TfidfOptions = {}): TfidfEmbedder {
    if (!Array.isArray(texts) || texts.some((t) => typeof t !== 'string')) fail('INVALID_ARGUMENT', 'TfidfEmbedder.fit: texts must be an array of strings');
    if (texts.length === 0) fail('INVALID_ARGUMENT', 'TfidfEmbedder.fit: no texts');
    const pattern = options.tokenPattern ?? /[\p{L}\p{M}\p{N}_]{2,}/gu;
    if (!(pattern instanceof RegExp) || !pattern.global) fail('INVALID_ARGUMENT', 'TfidfEmbedder.fit: tokenPattern must be a RegExp with the g flag');
    const minDf = options.minDf ?? 1;
    if (!Number.isInteger(minDf) || minDf < 1) fail('INVALID_ARGUMENT', `TfidfEmbedder.fit: minDf must be a positive integer, got ${minDf}`);
    const sw = options.stopWords ?? null;
    const lowercase = options.lowercase ?? true;
    const stopList = sw === 'english' ? ENGLISH_STOP_WORDS : sw === null ? [] : sw;
    if (!Array.isArray(stopList)) fail('INVALID_ARGUMENT', "TfidfEmbedder.fit: stopWords must be 'english', a list of words or null");
    const stop = new Set(stopList.map((w) => (lowercase ? w.toLowerCase() : w)));
    const o = { lowercase, sublinearTf: options.sublinearTf ?? false, stop, pattern };
    const probe = new TfidfEmbedder(new Map(), new Float64Array(0), o);
    const df = new Map<string, number>();
    for (const t of texts) for (const term of new Set(probe.tokenize(t))) df.set(term, (df.get(term) ?? 0) + 1);
    const terms = [...df.keys()].filter((k) => df.get(k)! >= minDf).sort();
    const vocabulary = new Map(terms.map((t, i) => [t, i]));
    const n = texts.length;
    const idfs = Float64Array.from(terms, (t) => Math.log((1 + n) / (1 + df.get(t)!)) + 1);
    return new TfidfEmbedder(vocabulary, idfs, o);
  }

  /** The number of terms (the dense dimension). */
  get vocabularySize(): number {
    return this.idfs.length;
  }

  /** The idf weight of a term, or undefined when it is not in the vocabulary. */
  idf(term: string): number | undefined {
    const i = this.vocabulary.get(term);
    return i === undefined ? undefined : this.idfs[i];
  }

  /** The tokens of a text as fitted (lower-cased, stop words removed). */
  tokenize(text: string): string[] {
    const src = this.lowercase ? text.toLowerCase() : text;
    const out: string[] = [];
    for (const m of src.matchAll(this.pattern)) if (!this.stop.has(m[0])) out.push(m[0]);
    return out;
  }

  /** L2-normalised sparse TF-IDF vectors; terms outside the vocabulary are ignored (an all-unknown text gives an empty vector). */
  embedSparse(texts: readonly string[]): SparseVector[] {
    if (!Array.isArray(texts) || texts.some((t) => typeof t !== 'string')) fail('INVALID_ARGUMENT', 'TfidfEmbedder.embedSparse: texts must be an array of strings');
    return texts.map((t) => {
      const tf = new Map<number, number>();
      for (const term of this.tokenize(t)) {
        const i = this.vocabulary.get(term);
        if (i !== undefined) tf.set(i, (tf.get(i) ?? 0) + 1);
      }
      const indices = Int32Array.from([...tf.keys()].sort((a, b) => a - b));
      const values = Float64Array.from(indices, (i) => (this.sublinear ? 1 + Math.log(tf.get(i)!) : tf.get(i)!) * this.idfs[i]);
      let norm = 0;
      for (const v of values) norm += v * v;
      norm = Math.sqrt(norm);
      if (norm > 0) for (let k = 0; k < values.length; k++) values[k] /= norm;
      return { indices, values };
    });
  }

  /** Dense float32 vectors over the vocabulary (refused when texts x vocabulary exceeds 1e8; use embedSparse). */
  embed(texts: readonly string[]): Float32Array[] {
    if (texts.length * this.vocabularySize > MAX_DENSE_ELEMENTS)
      fail('INVALID_ARGUMENT', `TfidfEmbedder.embed: ${texts.length} texts x ${this.vocabularySize} terms is too large for dense vectors; use embedSparse`);
    return this.embedSparse(texts).map(({ indices, values }) => {
      const v = new Float32Array(this.vocabularySize);
      indices.forEach((i, k) => (v[i] = values[k]));
      return v;
    });
  }
}
