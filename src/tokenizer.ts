// tokenizer.ts: Hugging Face tokenizers (tokenizer.json) for llm2clip: encoding to id
// tensors with padding and masks, LLM2Vec's instruction format, and a byte-level BPE
// trainer that writes tokenizer.json files the Hugging Face libraries load.
//
// Encoding itself is done by @huggingface/tokenizers (tokenizers.js, pure JS), which
// implements the tokenizer.json pipeline: added tokens, normalizer, pre-tokenizer, model
// (BPE / WordPiece / Unigram), post-processor, decoder.
import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { fail, Llm2ClipError } from './errors';
import { Tensor } from './tensor';
import { tensor } from './creation';
import { writeTextAtomic } from './io/atomic';

/** A tokenizer.json document (Hugging Face tokenizers format). */
export type TokenizerJson = Record<string, unknown>;

/**
 * tokenizer_config.json (transformers): the fields read here are bos_token, eos_token,
 * pad_token (strings or {content} objects; null: none) and clean_up_tokenization_spaces;
 * the rest is kept as is.
 */
export type TokenizerConfig = Record<string, unknown>;

/** Options of Tokenizer.encode(). */
export interface EncodeOptions {
  /** Add the special tokens of the tokenizer's post-processor (e.g. BOS; default true). */
  addSpecialTokens?: boolean;
}

/** Options of Tokenizer.decode(). */
export interface DecodeOptions {
  /** Leave special tokens (BOS, EOS, PAD, ...) out of the text (default false). */
  skipSpecialTokens?: boolean;
}

/** Options of Tokenizer.encodeBatch() and encodeWithInstruction(). */
export interface BatchEncodeOptions {
  /** Longest sequence kept: longer ones are truncated on the right (default: no limit). */
  maxLength?: number;
  /** Side the padding goes on: 'right' (encodeBatch's default) or 'left' (encodeWithInstruction's default, as LLM2Vec). */
  padding?: 'left' | 'right';
  /** Add the post-processor's special tokens (e.g. BOS; default true). */
  addSpecialTokens?: boolean;
  /**
   * Append the EOS token to every sequence (default false). It is kept when truncating:
   * the text is cut to maxLength - 1 tokens first.
   */
  appendEos?: boolean;
  /** Device of the returned tensors (default 'cpu'). */
  device?: string;
}

/** Options of Tokenizer.encodeWithInstruction(). */
export interface InstructionEncodeOptions extends BatchEncodeOptions {
  /** Put between the (trimmed) instruction and the text (default ' ', as LLM2Vec). */
  separator?: string;
}

/** A batch of token ids: int32 [B, S] tensors. */
export interface EncodedBatch {
  /** Token ids, padding positions hold Tokenizer.padFillId. */
  inputIds: Tensor;
  /** 1 on tokens, 0 on padding. */
  attentionMask: Tensor;
}

/** A batch in LLM2Vec's instruction format. */
export interface InstructionBatch extends EncodedBatch {
  /** 1 on the text's tokens (pooled), 0 on the instruction and on padding. */
  embedMask: Tensor;
}

/** One query of encodeWithInstruction(). */
export interface InstructionPair {
  /** The instruction (attended to, not pooled); '' for none. */
  instruction: string;
  text: string;
}

const BOS_NAMES = ['<|begin_of_text|>', '<|bos|>', '<s>', '<bos>'];
const EOS_NAMES = ['<|end_of_text|>', '<|eos|>', '</s>', '<eos>', '<|endoftext|>'];
const PAD_NAMES = ['<|pad|>', '<pad>', '[PAD]', '<|finetune_right_pad_id|>'];

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A token of tokenizer_config.json: a string or an AddedToken object {content}. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isObj(v) && typeof v.content === 'string') return v.content;
  return null;
}

function readJson(file: string, what: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    fail('IO_ERROR', `${what}: cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    fail('CORRUPT_FILE', `${file}: not valid JSON (${(e as Error).message})`);
  }
}


function checkText(t: unknown, what: string): string {
  if (typeof t !== 'string') fail('INVALID_ARGUMENT', `${what}: a string is required (got ${t === null ? 'null' : typeof t})`);
  return t;
}

/**
 * A Hugging Face tokenizer (a tokenizer.json, with its tokenizer_config.json when given).
 *
 * Special ids: bosId / eosId / padId come from the config's bos_token / eos_token /
 * pad_token (null there: none), else from well-known added tokens (BOS: <|begin_of_text|>, <|bos|>, <s>,
 * <bos>; EOS: <|end_of_text|>, <|eos|>, </s>, <eos>, <|endoftext|>; PAD: <|pad|>, <pad>,
 * [PAD], <|finetune_right_pad_id|>), else null.
 */
export class Tokenizer {
  private readonly hf: HfTokenizer;
  private readonly json: TokenizerJson;
  private readonly cfg: TokenizerConfig;
  private readonly cleanUp: boolean;
  private readonly specialIds: Set<number>;
  /** Number of ids (the highest id + 1): the size of an embedding table for this tokenizer. */
  readonly vocabSize: number;
  /** The BOS token's id, or null. */
  readonly bosId: number | null;
  /** The EOS token's id, or null. */
  readonly eosId: number | null;
  /** The PAD token's id, or null. */
  readonly padId: number | null;

  private constructor(json: TokenizerJson, config: TokenizerConfig, source: string) {
    let hf: HfTokenizer;
    try {
      hf = new HfTokenizer(json, config);
    } catch (e) {
      fail(source.startsWith('fromJSON') ? 'INVALID_ARGUMENT' : 'CORRUPT_FILE', `${source}: not a usable tokenizer.json (${(e as Error).message})`);
    }
    this.hf = hf;
    this.json = json;
    this.cfg = config;
    this.cleanUp = config.clean_up_tokenization_spaces === true;
    let max = -1;
    for (const id of hf.get_vocab(true).values()) if (id > max) max = id;
    this.vocabSize = max + 1;
    this.specialIds = new Set([...hf.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));
    const find = (key: string, names: string[]): number | null => {
      if (config[key] === null) return null; // explicitly none
      const named = tokenContent(config[key]);
      if (named !== null) {
        const id = hf.token_to_id(named);
        if (id === undefined) fail('CORRUPT_FILE', `${source}: ${key} ${JSON.stringify(named)} is not in the vocabulary`);
        return id;
      }
      for (const n of names) {
        const id = hf.token_to_id(n);
        if (id !== undefined) return id;
      }
      return null;
    };
    this.bosId = find('bos_token', BOS_NAMES);
    this.eosId = find('eos_token', EOS_NAMES);
    this.padId = find('pad_token', PAD_NAMES);
  }

  /**
   * Loads a tokenizer.json file, and a tokenizer_config.json when configPath is given.
   * IO_ERROR when a file cannot be read, CORRUPT_FILE when it is not valid JSON or not a
   * tokenizer.
   */
  static fromFile(tokenizerJsonPath: string, configPath?: string): Tokenizer {
    const what = `Tokenizer.fromFile(${JSON.stringify(tokenizerJsonPath)})`;
    if (typeof tokenizerJsonPath !== 'string' || tokenizerJsonPath.length === 0) fail('INVALID_ARGUMENT', 'Tokenizer.fromFile(path): a file path is required');
    const json = readJson(tokenizerJsonPath, what);
    if (!isObj(json)) fail('CORRUPT_FILE', `${tokenizerJsonPath}: not a JSON object`);
    let config: TokenizerConfig = {};
    if (configPath !== undefined) {
      const c = readJson(configPath, what);
      if (!isObj(c)) fail('CORRUPT_FILE', `${configPath}: not a JSON object`);
      config = c;
    }
    return new Tokenizer(json, config, tokenizerJsonPath);
  }

  /**
   * Loads a tokenizer folder: tokenizer.json (required) and tokenizer_config.json and
   * special_tokens_map.json (each when present; the config's tokens win).
   */
  static fromDir(dir: string): Tokenizer {
    const what = `Tokenizer.fromDir(${JSON.stringify(dir)})`;
    if (typeof dir !== 'string' || dir.length === 0) fail('INVALID_ARGUMENT', 'Tokenizer.fromDir(dir): a folder path is required');
    const tj = path.join(dir, 'tokenizer.json');
    if (!fs.existsSync(tj)) fail('IO_ERROR', `${what}: ${tj} is missing`);
    const json = readJson(tj, what);
    if (!isObj(json)) fail('CORRUPT_FILE', `${tj}: not a JSON object`);
    let config: TokenizerConfig = {};
    for (const name of ['special_tokens_map.json', 'tokenizer_config.json']) {
      const p = path.join(dir, name);
      if (!fs.existsSync(p)) continue;
      const c = readJson(p, what);
      if (!isObj(c)) fail('CORRUPT_FILE', `${p}: not a JSON object`);
      config = { ...config, ...c };
    }
    return new Tokenizer(json, config, tj);
  }

  /** A tokenizer from a parsed tokenizer.json (and tokenizer_config.json) object. */
  static fromJSON(json: TokenizerJson, config: TokenizerConfig = {}): Tokenizer {
    if (!isObj(json)) fail('INVALID_ARGUMENT', 'Tokenizer.fromJSON(json): a tokenizer.json object is required');
    if (!isObj(config)) fail('INVALID_ARGUMENT', 'Tokenizer.fromJSON(config): an object is required');
    return new Tokenizer(json, config, 'fromJSON(json)');
  }

  /** The tokenizer.json document (do not modify it). */
  toJSON(): TokenizerJson {
    return this.json;
  }

  /** The tokenizer_config.json fields this tokenizer was made with. */
  get config(): Readonly<TokenizerConfig> {
    return this.cfg;
  }

  /** Writes the tokenizer.json file (atomically: a temporary file renamed over path). */
  save(file: string): void {
    if (typeof file !== 'string' || file.length === 0) fail('INVALID_ARGUMENT', 'Tokenizer.save(path): a file path is required');
    writeTextAtomic(file, JSON.stringify(this.json), 'Tokenizer.save()');
  }

  /** Writes tokenizer.json and tokenizer_config.json into dir (created if needed), for fromDir() or transformers' AutoTokenizer. */
  saveDir(dir: string): void {
    if (typeof dir !== 'string' || dir.length === 0) fail('INVALID_ARGUMENT', 'Tokenizer.saveDir(dir): a folder path is required');
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (e) {
      fail('IO_ERROR', `Tokenizer.saveDir(): cannot create ${dir}: ${(e as Error).message}`);
    }
    this.save(path.join(dir, 'tokenizer.json'));
    const cfg: TokenizerConfig = { tokenizer_class: 'PreTrainedTokenizerFast', clean_up_tokenization_spaces: this.cleanUp, ...this.cfg };
    writeTextAtomic(path.join(dir, 'tokenizer_config.json'), JSON.stringify(cfg, null, 2) + '\n', 'Tokenizer.saveDir()');
  }

  /** The id of a token (a vocabulary entry, e.g. 'Ġworld', or an added token), or null. */
  tokenToId(token: string): number | null {
    return this.hf.token_to_id(checkText(token, 'tokenToId(token)')) ?? null;
  }

  /** The token of an id, or null when the id is not in the vocabulary. */
  idToToken(id: number): string | null {
    if (!Number.isSafeInteger(id)) return null;
    return this.hf.id_to_token(id) ?? null;
  }

  /** The id padding is filled with: padId, else eosId, else 0. */
  get padFillId(): number {
    return this.padId ?? this.eosId ?? 0;
  }

  /** Token ids of text. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    checkText(text, 'encode(text)');
    return this.hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /** The text of token ids (INVALID_ARGUMENT for an id outside [0, vocabSize)). */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') fail('INVALID_ARGUMENT', 'decode(ids): an array of token ids is required');
    const list = Array.from(ids);
    for (let i = 0; i < list.length; i++)
      if (!Number.isSafeInteger(list[i]) || list[i] < 0 || list[i] >= this.vocabSize)
        fail('INVALID_ARGUMENT', `decode(ids): ids[${i}] = ${list[i]} is not a token id (vocabulary of ${this.vocabSize})`);
    const kept = options.skipSpecialTokens ? list.filter((id) => !this.specialIds.has(id)) : list;
    if (kept.length === 0) return '';
    return this.hf.decode(kept, { skip_special_tokens: false, clean_up_tokenization_spaces: this.cleanUp });
  }

  private batchOptions(options: BatchEncodeOptions, what: string, defaultPadding: 'left' | 'right'): Required<Omit<BatchEncodeOptions, 'maxLength'>> & { maxLength: number } {
    if (options === null || typeof options !== 'object') fail('INVALID_ARGUMENT', `${what}: options must be an object`);
    const maxLength = options.maxLength ?? Infinity;
    if (maxLength !== Infinity && (!Number.isSafeInteger(maxLength) || maxLength < 1))
      fail('INVALID_ARGUMENT', `${what}: options.maxLength must be a positive integer (got ${options.maxLength})`);
    const padding = options.padding ?? defaultPadding;
    if (padding !== 'left' && padding !== 'right') fail('INVALID_ARGUMENT', `${what}: options.padding must be 'left' or 'right' (got ${JSON.stringify(padding)})`);
    const appendEos = options.appendEos ?? false;
    if (appendEos && this.eosId === null) fail('INVALID_ARGUMENT', `${what}: options.appendEos: this tokenizer has no EOS token`);
    return { maxLength, padding, appendEos, addSpecialTokens: options.addSpecialTokens ?? true, device: options.device ?? 'cpu' };
  }

  /** Appends EOS (kept through truncation) and truncates on the right. */
  private fit(ids: number[], maxLength: number, appendEos: boolean): number[] {
    if (!appendEos) return ids.length > maxLength ? ids.slice(0, maxLength) : ids;
    const body = ids.length > maxLength - 1 ? ids.slice(0, maxLength - 1) : ids;
    return [...body, this.eosId as number];
  }

  private pack(seqs: number[][], masks: (number[] | null)[] | null, padding: 'left' | 'right', device: string): { ids: Tensor; attn: Tensor; embed: Tensor | null } {
    const B = seqs.length;
    const S = seqs.reduce((m, s) => Math.max(m, s.length), 0);
    const ids = new Int32Array(B * S).fill(this.padFillId);
    const attn = new Int32Array(B * S);
    const embed = masks ? new Int32Array(B * S) : null;
    for (let b = 0; b < B; b++) {
      const s = seqs[b];
      const off = b * S + (padding === 'left' ? S - s.length : 0);
      ids.set(s, off);
      attn.fill(1, off, off + s.length);
      if (embed && masks) embed.set(masks[b] as number[], off);
    }
    const opts = { dtype: 'int32' as const, device };
    const tIds = tensor(ids, [B, S], opts);
    let tAttn: Tensor | null = null;
    try {
      tAttn = tensor(attn, [B, S], opts);
      return { ids: tIds, attn: tAttn, embed: embed ? tensor(embed, [B, S], opts) : null };
    } catch (e) {
      tIds.dispose();
      tAttn?.dispose();
      throw e;
    }
  }

  /**
   * Encodes texts into int32 [B, S] tensors: S is the longest sequence (at most
   * maxLength; longer ones are cut on the right), shorter ones are padded on
   * options.padding's side (default 'right') with padFillId (padId, else eosId, else 0).
   * attentionMask is 1 on tokens, 0 on padding.
   */
  encodeBatch(texts: string[], options: BatchEncodeOptions = {}): EncodedBatch {
    const what = 'encodeBatch(texts)';
    if (!Array.isArray(texts)) fail('INVALID_ARGUMENT', `${what}: an array of strings is required`);
    const o = this.batchOptions(options, what, 'right');
    const seqs = texts.map((t, i) => this.fit(this.encode(checkText(t, `${what}: texts[${i}]`), { addSpecialTokens: o.addSpecialTokens }), o.maxLength, o.appendEos));
    const { ids, attn } = this.pack(seqs, null, o.padding, o.device);
    return { inputIds: ids, attentionMask: attn };
  }

  /**
   * LLM2Vec's instruction format: the model reads `instruction.trim() + separator + text`
   * (just `text` when the instruction is empty; separator ' ' by default), and embedMask
   * marks the tokens of the text, which are pooled; the instruction's tokens are attended
   * to but not pooled. As in LLM2Vec (`tokenize()` with its "!@#$%^&*()" marker), the text
   * is tokenized alone, without special tokens, and its token count n marks the last n
   * tokens of the full sequence (before truncation; with appendEos, the EOS counts as a
   * text token). Truncation and padding as encodeBatch(), except that padding defaults to
   * 'left' as in LLM2Vec.
   */
  encodeWithInstruction(pairs: InstructionPair[], options: InstructionEncodeOptions = {}): InstructionBatch {
    const what = 'encodeWithInstruction(pairs)';
    if (!Array.isArray(pairs)) fail('INVALID_ARGUMENT', `${what}: an array of {instruction, text} is required`);
    const o = this.batchOptions(options, what, 'left');
    const sep = options.separator ?? ' ';
    checkText(sep, `${what}: options.separator`);
    const seqs: number[][] = [];
    const masks: number[][] = [];
    pairs.forEach((p, i) => {
      if (!isObj(p)) fail('INVALID_ARGUMENT', `${what}: pairs[${i}] must be {instruction, text}`);
      const instruction = checkText(p.instruction, `${what}: pairs[${i}].instruction`).trim();
      const text = checkText(p.text, `${what}: pairs[${i}].text`);
      const full = this.encode(instruction ? instruction + sep + text : text, { addSpecialTokens: o.addSpecialTokens });
      const nText = this.encode(text, { addSpecialTokens: false }).length;
      const start = Math.max(0, full.length - nText);
      const seq = this.fit(full, o.maxLength, o.appendEos);
      const mask = seq.map((_, j) => (j >= start ? 1 : 0));
      seqs.push(seq);
      masks.push(mask);
    });
    const { ids, attn, embed } = this.pack(seqs, masks, o.padding, o.device);
    return { inputIds: ids, attentionMask: attn, embedMask: embed as Tensor };
  }
}

// ---------------------------------------------------------------------------------------
// Byte-level BPE training

/** GPT-2's byte -> printable character table (the alphabet of byte-level BPE). */
const BYTE_TO_CHAR: string[] = (() => {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++)
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  const out = new Array<string>(256);
  bs.forEach((b, i) => (out[b] = String.fromCharCode(cs[i])));
  return out;
})();

/** GPT-2's pre-tokenizer split (what a ByteLevel pre-tokenizer with use_regex applies). */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** Options of trainBpeTokenizer(). */
export interface TrainBpeOptions {
  /** Size of the vocabulary: special tokens + 256 bytes + merges (at least specials + 256). */
  vocabSize: number;
  /** Special tokens, given the first ids in this order (default ['<|bos|>', '<|eos|>', '<|pad|>']). */
  specialTokens?: string[];
  /** Pairs seen fewer times than this are never merged (default 2); training may stop short of vocabSize. */
  minFrequency?: number;
  /** The BOS token (default '<|bos|>' when among specialTokens): added at the start of every encoding. */
  bosToken?: string | null;
  /** The EOS token (default '<|eos|>' when among specialTokens). */
  eosToken?: string | null;
  /** The PAD token (default '<|pad|>' when among specialTokens). */
  padToken?: string | null;
}

/** A binary max-heap of [count, pair key]; ties go to the smaller key. */
class PairHeap {
  private c: number[] = [];
  private k: number[] = [];
  get size(): number {
    return this.c.length;
  }
  private above(i: number, j: number): boolean {
    return this.c[i] > this.c[j] || (this.c[i] === this.c[j] && this.k[i] < this.k[j]);
  }
  private swap(i: number, j: number): void {
    [this.c[i], this.c[j]] = [this.c[j], this.c[i]];
    [this.k[i], this.k[j]] = [this.k[j], this.k[i]];
  }
  push(count: number, key: number): void {
    this.c.push(count);
    this.k.push(key);
    for (let i = this.c.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): [number, number] {
    const top: [number, number] = [this.c[0], this.k[0]];
    const lc = this.c.pop() as number, lk = this.k.pop() as number;
    if (this.c.length > 0) {
      this.c[0] = lc;
      this.k[0] = lk;
      for (let i = 0; ; ) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < this.c.length && this.above(l, m)) m = l;
        if (r < this.c.length && this.above(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

/**
 * Trains a byte-level BPE tokenizer (as GPT-2 / Llama-3) on texts (an iterable of
 * documents, or one string): texts are split by GPT-2's
 * pre-tokenizer regex, mapped to bytes (each byte a printable character), and the most
 * frequent adjacent pair of symbols is merged repeatedly (ties: the pair of smaller ids)
 * until the vocabulary has vocabSize entries or no pair occurs minFrequency times.
 * Ids: special tokens first, then the 256 bytes in byte order, then merges in order.
 * The result encodes any Unicode text losslessly (decode(encode(x)) === x), adds the
 * BOS token in front when there is one, and saves as a tokenizer.json that Hugging Face
 * tokenizers (Rust, Python, JS) load.
 */
export function trainBpeTokenizer(corpus: Iterable<string> | string, options: TrainBpeOptions): Tokenizer {
  const what = 'trainBpeTokenizer()';
  if (typeof corpus === 'string') corpus = [corpus]; // one document, not its characters
  if (corpus === null || typeof corpus !== 'object' || typeof (corpus as Iterable<string>)[Symbol.iterator] !== 'function')
    fail('INVALID_ARGUMENT', `${what}: corpus must be an iterable of strings`);
  if (!isObj(options)) fail('INVALID_ARGUMENT', `${what}: options {vocabSize} are required`);
  const specials = options.specialTokens ?? ['<|bos|>', '<|eos|>', '<|pad|>'];
  if (!Array.isArray(specials) || !specials.every((s) => typeof s === 'string' && s.length > 0) || new Set(specials).size !== specials.length)
    fail('INVALID_ARGUMENT', `${what}: options.specialTokens must be distinct non-empty strings`);
  for (const s of specials)
    if (BYTE_TO_CHAR.includes(s)) fail('INVALID_ARGUMENT', `${what}: special token ${JSON.stringify(s)} is one of the 256 byte symbols`);
  const { vocabSize } = options;
  if (!Number.isSafeInteger(vocabSize) || vocabSize < specials.length + 256 || vocabSize > 1 << 21)
    fail('INVALID_ARGUMENT', `${what}: options.vocabSize must be an integer in [${specials.length + 256}, ${1 << 21}] (specials + 256 bytes + merges; got ${vocabSize})`);
  const minFrequency = options.minFrequency ?? 2;
  if (!Number.isSafeInteger(minFrequency) || minFrequency < 1) fail('INVALID_ARGUMENT', `${what}: options.minFrequency must be a positive integer`);
  const role = (key: 'bosToken' | 'eosToken' | 'padToken', dflt: string): string | null => {
    const v = options[key];
    if (v === null) return null;
    if (v === undefined) return specials.includes(dflt) ? dflt : null;
    if (!specials.includes(v)) fail('INVALID_ARGUMENT', `${what}: options.${key} ${JSON.stringify(v)} must be one of specialTokens`);
    return v;
  };
  const bos = role('bosToken', '<|bos|>'), eos = role('eosToken', '<|eos|>'), pad = role('padToken', '<|pad|>');

  // Word counts (pre-tokenized pieces).
  const counts = new Map<string, number>();
  let i = 0;
  for (const text of corpus) {
    if (typeof text !== 'string') fail('INVALID_ARGUMENT', `${what}: corpus item ${i} is not a string`);
    i++;
    for (const m of text.matchAll(GPT2_SPLIT)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
  }
  const S = specials.length;
  const tokens: string[] = [...specials, ...BYTE_TO_CHAR];
  const idOf = new Map<string, number>(tokens.map((t, j) => [t, j]));
  const enc = new TextEncoder();
  const words: number[][] = [];
  const freq: number[] = [];
  for (const [w, c] of counts) {
    words.push(Array.from(enc.encode(w), (b) => S + b));
    freq.push(c);
  }

  const SHIFT = 1 << 21;
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, number[]>();
  for (let w = 0; w < words.length; w++) {
    const s = words[w];
    for (let j = 0; j + 1 < s.length; j++) {
      const key = s[j] * SHIFT + s[j + 1];
      pairCount.set(key, (pairCount.get(key) ?? 0) + freq[w]);
      const ws = pairWords.get(key);
      if (ws === undefined) pairWords.set(key, [w]);
      else if (ws[ws.length - 1] !== w) ws.push(w);
    }
  }
  const heap = new PairHeap();
  for (const [key, c] of pairCount) heap.push(c, key);

  const merges: string[] = [];
  const delta = new Map<number, number>();
  while (tokens.length < vocabSize && heap.size > 0) {
    const [c, key] = heap.pop();
    const cur = pairCount.get(key) ?? 0;
    if (c !== cur) {
      if (cur > 0 && c > cur) heap.push(cur, key);
      continue;
    }
    if (cur < minFrequency) break;
    const a = Math.floor(key / SHIFT), b = key % SHIFT;
    const merged = tokens[a] + tokens[b];
    let id = idOf.get(merged);
    if (id === undefined) {
      id = tokens.length;
      tokens.push(merged);
      idOf.set(merged, id);
    }
    merges.push(`${tokens[a]} ${tokens[b]}`);
    delta.clear();
    for (const w of pairWords.get(key) ?? []) {
      const s = words[w];
      let hit = false;
      for (let j = 0; j + 1 < s.length; j++) if (s[j] === a && s[j + 1] === b) hit = true;
      if (!hit) continue; // a stale entry: the pair left this word in an earlier merge
      const f = freq[w];
      for (let j = 0; j + 1 < s.length; j++) {
        const k = s[j] * SHIFT + s[j + 1];
        delta.set(k, (delta.get(k) ?? 0) - f);
      }
      const out: number[] = [];
      for (let j = 0; j < s.length; ) {
        if (j + 1 < s.length && s[j] === a && s[j + 1] === b) {
          out.push(id);
          j += 2;
        } else out.push(s[j++]);
      }
      words[w] = out;
      for (let j = 0; j + 1 < out.length; j++) {
        const k = out[j] * SHIFT + out[j + 1];
        delta.set(k, (delta.get(k) ?? 0) + f);
        if (out[j] === id || out[j + 1] === id) {
          const ws = pairWords.get(k);
          if (ws === undefined) pairWords.set(k, [w]);
          else if (ws[ws.length - 1] !== w) ws.push(w);
        }
      }
    }
    for (const [k, d] of delta) {
      if (d === 0) continue;
      const n = (pairCount.get(k) ?? 0) + d;
      if (n > 0) pairCount.set(k, n);
      else pairCount.delete(k);
      if (d > 0) heap.push(n, k);
    }
    pairCount.delete(key);
    pairWords.delete(key);
  }

  const vocab: Record<string, number> = {};
  tokens.forEach((t, j) => {
    if (!(t in vocab)) vocab[t] = j;
  });
  const special = (t: string) => ({ id: t, ids: [idOf.get(t) as number], tokens: [t] });
  const json: TokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((t, j) => ({ id: j, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: bos
      ? {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
          special_tokens: { [bos]: special(bos) },
        }
      : { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
  const config: TokenizerConfig = { tokenizer_class: 'PreTrainedTokenizerFast', clean_up_tokenization_spaces: false };
  config.bos_token = bos;
  config.eos_token = eos;
  config.pad_token = pad;
  try {
    return Tokenizer.fromJSON(json, config);
  } catch (e) {
    if (e instanceof Llm2ClipError) fail('INTERNAL', `${what}: the trained tokenizer does not load: ${e.message}`);
    throw e;
  }
}
