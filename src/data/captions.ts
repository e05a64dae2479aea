// captions.ts: caption sources read directly into a normalised CaptionDataset: COCO
// captions JSON (official and Karpathy layouts), the Flickr8k files (flickr8k.ts), JSONL
// pairs, JSONL image captions and ImageInWords-style JSONL of long descriptions; with
// format detection from the extension and the content.
import * as fs from 'fs';
import * as path from 'path';
import { fail } from '../errors';
import { corrupt, isText, parseJsonDocument, parseJsonLine, readText, show, splitLines } from './files';
import { loadFlickr8k } from './flickr8k';
import { checkSplit, selectSplit } from './select';
import { firstSentence } from './sentences';
import { CaptionDataset, CaptionFormat, CaptionImage, CaptionKind, CaptionPair, CaptionSplit, LoadCaptionsOptions } from './types';

const FORMATS: readonly CaptionFormat[] = ['coco', 'flickr8k', 'pairs', 'captions', 'iiw'];

/** The long-text fields of ImageInWords records, in the order their texts are kept. */
export const IIW_FIELDS = ['DOCCI', 'IIW', 'IIW-P5B'] as const;
/** Which long text gives the short caption (its first sentence): the first present. */
const IIW_SHORT_FROM = ['IIW', 'IIW-P5B', 'DOCCI'] as const;

const KARPATHY_SPLIT: Record<string, CaptionSplit> = { train: 'train', restval: 'train', val: 'dev', dev: 'dev', test: 'test' };

function imageKey(v: unknown): string | null {
  if (typeof v === 'string' && v.trim() !== '') return v.trim();
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return null;
}

/**
 * Reads COCO captions JSON: the official layout (`images` [{id, file_name}] +
 * `annotations` [{image_id, caption}]) or Karpathy's (`images` [{filename, split,
 * sentences: [{raw}]}]). Images without any caption are dropped.
 */
export async function loadCocoCaptions(file: string, options: LoadCaptionsOptions = {}): Promise<CaptionDataset> {
  const doc = parseJsonDocument(file, await readText(file, 'COCO captions'));
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) corrupt(file, null, 'expected a JSON object with "images"');
  const root = doc as Record<string, unknown>;
  if (!Array.isArray(root.images)) corrupt(file, null, '"images" must be an array');
  const images: CaptionImage[] = [];
  if (root.annotations === undefined) {
    root.images.forEach((im: unknown, i: number) => {
      const at = `images[${i}]`;
      if (im === null || typeof im !== 'object') corrupt(file, null, `${at}: expected an object, got ${show(im)}`);
      const r = im as Record<string, unknown>;
      const id = imageKey(r.filename ?? r.file_name ?? r.imgid ?? r.id);
      if (id === null) corrupt(file, null, `${at}: no "filename" or "imgid"`);
      if (!Array.isArray(r.sentences)) corrupt(file, null, `${at}: "sentences" must be an array (Karpathy layout) or the file needs "annotations" (COCO layout)`);
      const captions = r.sentences.map((s: unknown, j: number) => {
        const t = s !== null && typeof s === 'object' ? ((s as Record<string, unknown>).raw ?? (s as Record<string, unknown>).caption) : s;
        if (!isText(t)) corrupt(file, null, `${at}.sentences[${j}]: expected a non-empty "raw" text, got ${show(s)}`);
        return t.trim();
      });
      const img: CaptionImage = { id, captions };
      if (r.split !== undefined) {
        const split = typeof r.split === 'string' ? KARPATHY_SPLIT[r.split] : undefined;
        if (!split) corrupt(file, null, `${at}: unknown split ${show(r.split)}`);
        img.split = split;
      }
      if (captions.length > 0) images.push(img);
    });
  } else {
    if (!Array.isArray(root.annotations)) corrupt(file, null, '"annotations" must be an array');
    const byId = new Map<string, CaptionImage>();
    root.images.forEach((im: unknown, i: number) => {
      const at = `images[${i}]`;
      if (im === null || typeof im !== 'object') corrupt(file, null, `${at}: expected an object, got ${show(im)}`);
      const r = im as Record<string, unknown>;
      const id = imageKey(r.id);
      if (id === null) corrupt(file, null, `${at}: "id" must be a number or a string, got ${show(r.id)}`);
      if (byId.has(id)) corrupt(file, null, `${at}: duplicate image id ${id}`);
      const img: CaptionImage = { id, captions: [] };
      if (r.file_name !== undefined) {
        if (!isText(r.file_name)) corrupt(file, null, `${at}: "file_name" must be a string, got ${show(r.file_name)}`);
        img.file = r.file_name;
      }
      byId.set(id, img);
    });
    root.annotations.forEach((a: unknown, j: number) => {
      const at = `annotations[${j}]`;
      if (a === null || typeof a !== 'object') corrupt(file, null, `${at}: expected an object, got ${show(a)}`);
      const r = a as Record<string, unknown>;
      const id = imageKey(r.image_id);
      if (id === null) corrupt(file, null, `${at}: "image_id" must be a number or a string, got ${show(r.image_id)}`);
      const img = byId.get(id);
      if (!img) corrupt(file, null, `${at}: image_id ${id} is not in "images"`);
      if (!isText(r.caption)) corrupt(file, null, `${at}: "caption" must be a non-empty string, got ${show(r.caption)}`);
      img.captions.push(r.caption.trim());
    });
    for (const img of byId.values()) if (img.captions.length > 0) images.push(img);
  }
  if (images.length === 0) corrupt(file, null, 'no captions');
  return selectSplit({ format: 'coco', source: file, images }, options.split);
}

/** Calls fn(record, lineNo) for every non-blank line of a JSON Lines file. */
async function forEachRecord(file: string, what: string, fn: (r: Record<string, unknown>, lineNo: number) => void): Promise<void> {
  const lines = splitLines(await readText(file, what));
  let n = 0;
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    n++;
    fn(parseJsonLine(file, i + 1, line), i + 1);
  });
  if (n === 0) corrupt(file, null, 'no records');
}

function recordSplit(file: string, lineNo: number, v: unknown): CaptionSplit | undefined {
  if (v === undefined) return undefined;
  const split = typeof v === 'string' ? KARPATHY_SPLIT[v] : undefined;
  if (!split) corrupt(file, lineNo, `unknown split ${show(v)} (expected train, dev or test)`);
  return split;
}

/** Merges a record into the image of the same id (captions appended), or adds it. */
function addImage(byId: Map<string, CaptionImage>, img: CaptionImage, file: string, lineNo: number): void {
  const prev = byId.get(img.id);
  if (!prev) {
    byId.set(img.id, img);
    return;
  }
  if (prev.split !== img.split) corrupt(file, lineNo, `image ${img.id} appears again with another split`);
  if (prev.kinds || img.kinds) {
    const shorts = (c: string[]): CaptionKind[] => c.map(() => 'short');
    prev.kinds = [...(prev.kinds ?? shorts(prev.captions)), ...(img.kinds ?? shorts(img.captions))];
  }
  prev.captions.push(...img.captions);
}

/**
 * Reads JSON Lines of `{"image": ID, "captions": [...], "split"?: ...}` (a single
 * `"caption"` string is accepted too). Long descriptions may come beside them in
 * `"long_caption"` / `"long_captions"`: the image's captions are then its short ones
 * followed by its long ones, with `kinds` saying which is which. Records of the same image
 * are merged.
 */
export async function loadCaptionsJsonl(file: string, options: LoadCaptionsOptions = {}): Promise<CaptionDataset> {
  const byId = new Map<string, CaptionImage>();
  await forEachRecord(file, 'captions JSONL', (r, lineNo) => {
    const id = imageKey(r.image);
    if (id === null) corrupt(file, lineNo, `"image" must be a non-empty string or a number, got ${show(r.image)}`);
    let captions: string[];
    if (r.captions !== undefined) {
      if (!Array.isArray(r.captions) || r.captions.length === 0) corrupt(file, lineNo, `"captions" must be a non-empty array of strings, got ${show(r.captions)}`);
      captions = r.captions.map((c: unknown, j: number) => {
        if (!isText(c)) corrupt(file, lineNo, `captions[${j}] must be a non-empty string, got ${show(c)}`);
        return c.trim();
      });
    } else if (r.caption !== undefined) {
      if (!isText(r.caption)) corrupt(file, lineNo, `"caption" must be a non-empty string, got ${show(r.caption)}`);
      captions = [r.caption.trim()];
    } else if (r.long_caption === undefined && r.long_captions === undefined) corrupt(file, lineNo, 'no "captions"');
    else captions = [];
    // Long, dense descriptions beside the short captions: kinds mark which is which.
    const longs: string[] = [];
    if (r.long_captions !== undefined) {
      if (!Array.isArray(r.long_captions) || r.long_captions.length === 0) corrupt(file, lineNo, `"long_captions" must be a non-empty array of strings, got ${show(r.long_captions)}`);
      r.long_captions.forEach((c: unknown, j: number) => {
        if (!isText(c)) corrupt(file, lineNo, `long_captions[${j}] must be a non-empty string, got ${show(c)}`);
        longs.push(c.trim());
      });
    }
    if (r.long_caption !== undefined) {
      if (!isText(r.long_caption)) corrupt(file, lineNo, `"long_caption" must be a non-empty string, got ${show(r.long_caption)}`);
      longs.push(r.long_caption.trim());
    }
    const img: CaptionImage = { id, captions: [...captions, ...longs] };
    if (longs.length > 0) img.kinds = [...captions.map((): CaptionKind => 'short'), ...longs.map((): CaptionKind => 'long')];
    const split = recordSplit(file, lineNo, r.split);
    if (split) img.split = split;
    addImage(byId, img, file, lineNo);
  });
  return selectSplit({ format: 'captions', source: file, images: [...byId.values()] }, options.split);
}

/** Reads JSON Lines of `{"anchor": ..., "positive": ..., "negative"?: ...}` pairs. */
export async function loadPairsJsonl(file: string, options: LoadCaptionsOptions = {}): Promise<CaptionDataset> {
  if (options.split !== undefined) fail('INVALID_ARGUMENT', `${file}: split '${options.split}' requested but the pairs format has no splits`);
  const pairs: CaptionPair[] = [];
  await forEachRecord(file, 'pairs JSONL', (r, lineNo) => {
    for (const k of ['anchor', 'positive'] as const)
      if (!isText(r[k])) corrupt(file, lineNo, `"${k}" must be a non-empty string, got ${show(r[k])}`);
    const pair: CaptionPair = { anchor: (r.anchor as string).trim(), positive: (r.positive as string).trim() };
    if (r.negative !== undefined && r.negative !== null) {
      if (!isText(r.negative)) corrupt(file, lineNo, `"negative" must be a non-empty string, got ${show(r.negative)}`);
      pair.negative = r.negative.trim();
    }
    pairs.push(pair);
  });
  return { format: 'pairs', source: file, images: [], pairs };
}

/**
 * Reads ImageInWords-style JSON Lines: each record an image with long descriptions in the
 * fields DOCCI, IIW and IIW-P5B (those present, in that order), keyed by `image`,
 * `image/key` or `ex_id` (else FILE:LINE). Its captions are [short, ...long]: the short
 * caption is the first sentence of the IIW text (of IIW-P5B, else DOCCI, when IIW is
 * absent), left out where it is the whole text. `kinds` labels them. Other fields
 * (ratings, per-object texts) are ignored.
 */
export async function loadImageInWords(file: string, options: LoadCaptionsOptions = {}): Promise<CaptionDataset> {
  const byId = new Map<string, CaptionImage>();
  await forEachRecord(file, 'ImageInWords JSONL', (r, lineNo) => {
    const longs: string[] = [];
    for (const f of IIW_FIELDS) {
      const v = r[f];
      if (v === undefined || v === null) continue;
      if (!isText(v)) corrupt(file, lineNo, `"${f}" must be a non-empty string, got ${show(v)}`);
      longs.push(v.trim());
    }
    if (longs.length === 0) corrupt(file, lineNo, `no description (none of ${IIW_FIELDS.join(', ')})`);
    const from = IIW_SHORT_FROM.find((f) => isText(r[f]));
    const whole = (r[from as string] as string).trim();
    const short = firstSentence(whole);
    const captions: string[] = [];
    const kinds: CaptionKind[] = [];
    if (short && short !== whole) {
      captions.push(short);
      kinds.push('short');
    }
    for (const t of longs) {
      captions.push(t);
      kinds.push('long');
    }
    const id = imageKey(r.image) ?? imageKey(r['image/key']) ?? imageKey(r.ex_id) ?? `${path.basename(file)}:${lineNo}`;
    const img: CaptionImage = { id, captions, kinds };
    const split = recordSplit(file, lineNo, r.split);
    if (split) img.split = split;
    addImage(byId, img, file, lineNo);
  });
  return selectSplit({ format: 'iiw', source: file, images: [...byId.values()] }, options.split);
}

/** File names looked for, in order, when loadCaptions is given a directory. */
const DIR_CANDIDATES = ['Flickr8k.token.txt', 'captions.tsv', 'data.jsonl', 'captions.jsonl', 'pairs.jsonl', 'captions.json'];

/** The format of a JSON Lines file, from its first record. */
async function sniffJsonl(file: string, text: string): Promise<CaptionFormat> {
  const lines = splitLines(text);
  const i = lines.findIndex((l) => l.trim() !== '');
  if (i < 0) corrupt(file, null, 'no records');
  const r = parseJsonLine(file, i + 1, lines[i]);
  if ('anchor' in r) return 'pairs';
  if ('captions' in r || 'caption' in r || 'long_caption' in r || 'long_captions' in r) return 'captions';
  if (IIW_FIELDS.some((f) => f in r)) return 'iiw';
  corrupt(file, i + 1, `cannot tell the format: the record has none of "anchor", "captions", ${IIW_FIELDS.map((f) => `"${f}"`).join(', ')} (pass format)`);
}

/** Detects the format of a caption file from its extension, then its content. */
export async function detectCaptionFormat(file: string): Promise<CaptionFormat> {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.json') return 'coco';
  if (ext === '.txt' || ext === '.tsv' || ext === '.token') return 'flickr8k';
  const text = await readText(file, 'captions');
  if (ext === '.jsonl' || ext === '.ndjson') return sniffJsonl(file, text);
  const head = text.trimStart();
  if (head.startsWith('{')) {
    const firstLine = splitLines(head)[0];
    let first: unknown;
    try {
      first = JSON.parse(firstLine);
    } catch {
      return 'coco'; // a JSON document spread over lines
    }
    // one line: a JSON Lines record, or a whole COCO document written on one line
    const isCoco = first !== null && typeof first === 'object' && 'images' in first;
    return isCoco ? 'coco' : sniffJsonl(file, text);
  }
  if (splitLines(head)[0]?.includes('\t')) return 'flickr8k';
  corrupt(file, 1, 'cannot tell the caption format from the content (pass format)');
}

/**
 * Reads a caption source into a {@link CaptionDataset}. `file` may be a directory holding
 * one of Flickr8k.token.txt, captions.tsv, data.jsonl, captions.jsonl, pairs.jsonl,
 * captions.json. IO_ERROR for a missing file, CORRUPT_FILE "FILE:LINE: ..." for a bad
 * record, INVALID_ARGUMENT for bad options.
 */
export async function loadCaptions(file: string, options: LoadCaptionsOptions = {}): Promise<CaptionDataset> {
  if (typeof file !== 'string' || file === '') fail('INVALID_ARGUMENT', `loadCaptions: path must be a non-empty string, got ${show(file)}`);
  if (options === null || typeof options !== 'object') fail('INVALID_ARGUMENT', 'loadCaptions: options must be an object');
  const split = checkSplit(options.split, 'loadCaptions');
  if (options.format !== undefined && !(FORMATS as readonly unknown[]).includes(options.format))
    fail('INVALID_ARGUMENT', `loadCaptions: format must be one of ${FORMATS.join(', ')}, got ${show(options.format)}`);
  let target = file;
  let stat: fs.Stats;
  try {
    stat = await fs.promises.stat(file);
  } catch {
    fail('IO_ERROR', `loadCaptions: cannot read ${file}: no such file`);
  }
  if (stat.isDirectory()) {
    const found = DIR_CANDIDATES.map((n) => path.join(file, n)).find((p) => fs.existsSync(p));
    if (!found) fail('IO_ERROR', `loadCaptions: ${file} is a directory with none of ${DIR_CANDIDATES.join(', ')}`);
    target = found;
  }
  const format = options.format ?? (await detectCaptionFormat(target));
  const opts: LoadCaptionsOptions = { split };
  switch (format) {
    case 'coco':
      return loadCocoCaptions(target, opts);
    case 'flickr8k':
      return loadFlickr8k(target, opts);
    case 'pairs':
      return loadPairsJsonl(target, opts);
    case 'captions':
      return loadCaptionsJsonl(target, opts);
    case 'iiw':
      return loadImageInWords(target, opts);
  }
}

/**
 * Every caption text of a dataset, in order: the images' captions, then the pairs' anchor,
 * positive and negative. With `unique`, later repeats are dropped. For MNTP text and for
 * fitting tokenizers or TF-IDF.
 */
export function captionTexts(dataset: CaptionDataset, options: { unique?: boolean } = {}): string[] {
  const out: string[] = [];
  for (const im of dataset.images) out.push(...im.captions);
  for (const p of dataset.pairs ?? []) {
    out.push(p.anchor, p.positive);
    if (p.negative !== undefined) out.push(p.negative);
  }
  return options.unique ? [...new Set(out)] : out;
}

/**
 * loadCaptions with a default split: `split` when given, else `fallback` where the source
 * has split information (Flickr8k's split files, COCO Karpathy), else every image. The
 * file is read once.
 */
export async function loadCaptionsSplit(file: string, options: LoadCaptionsOptions, fallback: CaptionSplit): Promise<CaptionDataset> {
  if (options.split) return loadCaptions(file, options);
  const all = await loadCaptions(file, { format: options.format });
  return all.images.some((im) => im.split === fallback) ? selectSplit(all, fallback) : all;
}
