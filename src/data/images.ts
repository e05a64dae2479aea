// images.ts: image-caption datasets for CLIP training and evaluation: a folder of images
// with a caption file (Flickr8k token file / captions.tsv, COCO JSON, JSONL) or class
// folders (CLASS/*.jpg, captions from a prompt), a deterministic split by file-name hash
// and a cheap validation pass that finds unreadable images before training starts.
import * as fs from 'fs';
import * as path from 'path';
import { loadSharp } from '../models/image';
import { fail } from '../errors';
import { loadCaptions } from './captions';
import type { CaptionKind } from './types';
import { show } from './files';
import { hashInts } from './rng';
import { checkSplit } from './select';
import { CaptionFormat, CaptionSplit } from './types';

/** The caption sources {@link loadImageCaptions} reads ('classes': CLASS/ folders, no caption file). */
export type ImageCaptionFormat = 'flickr8k' | 'tsv' | 'coco' | 'jsonl' | 'classes';

/** One image and its captions. */
export interface ImageCaptionItem {
  /** Absolute path of the image file. */
  image: string;
  /** The path relative to the images folder, '/'-separated: the key {@link splitByFile} hashes. */
  file: string;
  /** Captions in source order ('classes': the prompt with the class name). */
  captions: string[];
  /**
   * Per caption, short or long, where the source distinguishes them (JSONL with
   * `long_caption(s)`, ImageInWords); trainClip then draws either kind 50/50.
   */
  kinds?: CaptionKind[];
  /** Class index into `classes` (the 'classes' format only). */
  label?: number;
}

/** An image left out, and why. */
export interface SkippedImage {
  file: string;
  reason: string;
}

/** What {@link loadImageCaptions} returns. */
export interface ImageCaptionSet {
  items: ImageCaptionItem[];
  /** Class names, sorted by code point (the 'classes' format only); label i is classes[i]. */
  classes?: string[];
  /** Images of the caption file that are not in the folder (only with skipBadImages). */
  skipped: SkippedImage[];
}

/** Options of {@link loadImageCaptions}. */
export interface LoadImageCaptionsOptions {
  /** The folder of the images (the caption file's keys are paths relative to it). */
  images: string;
  /** The caption file (or a folder holding one, as {@link loadCaptions} accepts); absent for 'classes'. */
  captions?: string;
  /** Default: 'classes' without `captions`, else detected from the caption file. */
  format?: ImageCaptionFormat;
  /** Keep only this split (caption sources with split information, e.g. the Flickr8k split files). */
  split?: CaptionSplit;
  /** The caption of a class image; `{class}` is replaced by the class name (default 'a photo of a {class}.'). */
  prompt?: string;
  /** Leave out (and count in `skipped`) images that are missing, rather than failing (default false). */
  skipBadImages?: boolean;
}

/** File extensions the 'classes' format picks up (case-insensitive). */
export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif'];

const FORMATS: readonly ImageCaptionFormat[] = ['flickr8k', 'tsv', 'coco', 'jsonl', 'classes'];
const TO_CAPTION_FORMAT: Record<Exclude<ImageCaptionFormat, 'classes'>, CaptionFormat> = {
  flickr8k: 'flickr8k',
  tsv: 'flickr8k',
  coco: 'coco',
  jsonl: 'captions',
};

const byCodePoint = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function loadClasses(root: string, prompt: string): ImageCaptionSet {
  const classes = fs
    .readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory() || (e.isSymbolicLink() && isDir(path.join(root, e.name))))
    .map((e) => e.name)
    .sort(byCodePoint);
  if (classes.length === 0) fail('IO_ERROR', `loadImageCaptions: ${root} has no class folders (expected CLASS/*.jpg)`);
  const items: ImageCaptionItem[] = [];
  classes.forEach((cls, label) => {
    const files = fs
      .readdirSync(path.join(root, cls))
      .filter((f) => IMAGE_EXTENSIONS.includes(path.extname(f).toLowerCase()))
      .sort(byCodePoint);
    const caption = prompt.split('{class}').join(cls);
    for (const f of files) items.push({ image: path.join(root, cls, f), file: `${cls}/${f}`, captions: [caption], label });
  });
  if (items.length === 0) fail('IO_ERROR', `loadImageCaptions: the class folders of ${root} hold no images (${IMAGE_EXTENSIONS.join(', ')})`);
  return { items, classes, skipped: [] };
}

/**
 * Reads an image-caption dataset: the images of folder `images` with the captions of
 * `captions` (via {@link loadCaptions}: a Flickr8k token file or captions.tsv with its split
 * files, COCO captions JSON (the image's `file_name`, else its id, is the path), JSONL of
 * `{"image", "caption" | "captions"}`), or, for format 'classes', the class folders
 * `images/CLASS/*.jpg` (classes sorted by code point; label = class index; one caption, the
 * prompt with `{class}` replaced). Only images present in the folder are kept: a missing one
 * is IO_ERROR listing the first few, unless `skipBadImages`, which counts them in `skipped`.
 * Items keep the caption file's order ('classes': class, then file name). Images are not
 * decoded here: see {@link validateImages}.
 */
export async function loadImageCaptions(options: LoadImageCaptionsOptions): Promise<ImageCaptionSet> {
  if (options === null || typeof options !== 'object') fail('INVALID_ARGUMENT', 'loadImageCaptions: options must be an object');
  const { captions } = options;
  if (typeof options.images !== 'string' || options.images === '') fail('INVALID_ARGUMENT', `loadImageCaptions: images must be a folder path, got ${show(options.images)}`);
  const root = path.resolve(options.images);
  if (!isDir(root)) fail('IO_ERROR', `loadImageCaptions: images folder ${root} does not exist or is not a folder`);
  if (captions !== undefined && (typeof captions !== 'string' || captions === '')) fail('INVALID_ARGUMENT', `loadImageCaptions: captions must be a file path, got ${show(captions)}`);
  const format = options.format ?? (captions === undefined ? 'classes' : undefined);
  if (format !== undefined && !FORMATS.includes(format)) fail('INVALID_ARGUMENT', `loadImageCaptions: format must be one of ${FORMATS.join(', ')}, got ${show(format)}`);
  const split = checkSplit(options.split, 'loadImageCaptions');
  const prompt = options.prompt ?? 'a photo of a {class}.';
  if (typeof prompt !== 'string' || prompt.trim() === '') fail('INVALID_ARGUMENT', `loadImageCaptions: prompt must be a non-empty string, got ${show(prompt)}`);
  const skipBad = options.skipBadImages ?? false;

  if (format === 'classes') {
    if (captions !== undefined) fail('INVALID_ARGUMENT', "loadImageCaptions: format 'classes' takes no captions file (the captions come from prompt)");
    if (split !== undefined) fail('INVALID_ARGUMENT', "loadImageCaptions: format 'classes' has no split information; use splitByFile");
    if (!prompt.includes('{class}')) fail('INVALID_ARGUMENT', `loadImageCaptions: prompt must contain {class}, got ${show(prompt)}`);
    return loadClasses(root, prompt);
  }
  if (captions === undefined) fail('INVALID_ARGUMENT', `loadImageCaptions: format '${format}' needs a captions file`);
  const ds = await loadCaptions(captions, { format: format && TO_CAPTION_FORMAT[format], split });
  if (ds.format === 'pairs') fail('INVALID_ARGUMENT', `loadImageCaptions: ${ds.source} holds text pairs, not image captions`);

  const items: ImageCaptionItem[] = [];
  const skipped: SkippedImage[] = [];
  const missing: string[] = [];
  const seen = new Map<string, ImageCaptionItem>();
  for (const im of ds.images) {
    const rel = (im.file ?? im.id).split(path.sep).join('/');
    const abs = path.resolve(root, rel);
    const prev = seen.get(abs);
    if (prev) {
      if (prev.kinds || im.kinds) {
        const shorts = (c: string[]): CaptionKind[] => c.map(() => 'short');
        prev.kinds = [...(prev.kinds ?? shorts(prev.captions)), ...(im.kinds ?? shorts(im.captions))];
      }
      prev.captions.push(...im.captions); // two records of one file (e.g. COCO ids sharing a file_name)
      continue;
    }
    if (!isFile(abs)) {
      missing.push(abs);
      skipped.push({ file: abs, reason: 'missing' });
      continue;
    }
    const item: ImageCaptionItem = { image: abs, file: rel, captions: [...im.captions] };
    if (im.kinds && im.kinds.length === im.captions.length) item.kinds = [...im.kinds];
    seen.set(abs, item);
    items.push(item);
  }
  if (missing.length > 0 && !skipBad) {
    const first = missing.slice(0, 5).join(', ');
    fail('IO_ERROR', `loadImageCaptions: ${missing.length} image(s) of ${ds.source} are not in ${root}: ${first}${missing.length > 5 ? ', ...' : ''} (pass skipBadImages to leave them out)`);
  }
  if (items.length === 0) fail('IO_ERROR', `loadImageCaptions: none of the images of ${ds.source} is in ${root}`);
  return { items, skipped };
}

/** FNV-1a (32 bits) of a string's UTF-8 bytes. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

/** Options of {@link splitByFile}. */
export interface SplitByFileOptions {
  /** The expected fraction of items in `train` (default 0.8). */
  fraction?: number;
  /** Seed: another seed gives another, independent split (default 0). */
  seed?: number;
}

/**
 * Splits items into train and test by a hash of each item's `file` (its path relative to the
 * images folder; the base name of `image` where `file` is absent): an item goes to train when
 * hash(seed, FNV-1a(file)) / 2^32 < fraction. Deterministic, independent of the item order,
 * of the absolute paths and of the machine; an item keeps its side when others are added. The
 * sizes are binomial around fraction * n, not exact. Items keep their order within each side.
 */
export function splitByFile<T extends { image: string; file?: string }>(items: readonly T[], options: SplitByFileOptions = {}): { train: T[]; test: T[] } {
  if (!Array.isArray(items)) fail('INVALID_ARGUMENT', 'splitByFile: items must be an array');
  const fraction = options.fraction ?? 0.8;
  const seed = options.seed ?? 0;
  if (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1)) fail('INVALID_ARGUMENT', `splitByFile: fraction must be in [0, 1], got ${show(fraction)}`);
  if (!Number.isSafeInteger(seed)) fail('INVALID_ARGUMENT', `splitByFile: seed must be a safe integer, got ${show(seed)}`);
  const train: T[] = [], test: T[] = [];
  items.forEach((it, i) => {
    if (!it || typeof it.image !== 'string') fail('INVALID_ARGUMENT', `splitByFile: items[${i}] has no image path`);
    const key = typeof it.file === 'string' && it.file !== '' ? it.file : path.basename(it.image);
    (hashInts(seed, fnv1a(key)) / 4294967296 < fraction ? train : test).push(it);
  });
  return { train, test };
}

/** Options of {@link validateImages}. */
export interface ValidateImagesOptions {
  /** Leave out (and count) unreadable images rather than failing (default false). */
  skipBadImages?: boolean;
  /**
   * Also decode every image fully, shrunk to at most size x size pixels (JPEG shrink-on-load
   * makes this cheap), which catches truncated files whose header is intact (default 32).
   * 0: read the headers only (sharp metadata).
   */
  size?: number;
  /** Images checked at once (default 8). */
  concurrency?: number;
}


/** Why an image cannot be used, or null when it decodes. */
async function checkImage(file: string, size: number): Promise<string | null> {
  const sharp = loadSharp('validateImages');
  let bytes: Buffer;
  try {
    bytes = await fs.promises.readFile(file);
  } catch (e) {
    return `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
  }
  if (bytes.length === 0) return 'empty file';
  try {
    const meta = await sharp(bytes, { failOn: 'truncated' }).metadata();
    if (!meta.width || !meta.height) return 'no image size in the header';
    if (size > 0)
      await sharp(bytes, { failOn: 'truncated' }).resize(size, size, { fit: 'inside', fastShrinkOnLoad: true }).raw().toBuffer();
  } catch (e) {
    return `not a decodable image: ${(e as Error).message.split('\n')[0]}`;
  }
  return null;
}

/**
 * Checks that every item's image decodes (sharp: the header, then a small full decode, see
 * `size`). A bad image is CORRUPT_FILE naming the file (IO_ERROR when it cannot be read), or,
 * with `skipBadImages`, left out and listed in `skipped` with the reason. Order is kept.
 */
export async function validateImages<T extends { image: string }>(items: readonly T[], options: ValidateImagesOptions = {}): Promise<{ items: T[]; skipped: SkippedImage[] }> {
  if (!Array.isArray(items)) fail('INVALID_ARGUMENT', 'validateImages: items must be an array');
  const size = options.size ?? 32;
  const concurrency = options.concurrency ?? 8;
  if (!Number.isInteger(size) || size < 0) fail('INVALID_ARGUMENT', `validateImages: size must be a non-negative integer, got ${show(size)}`);
  if (!Number.isInteger(concurrency) || concurrency < 1) fail('INVALID_ARGUMENT', `validateImages: concurrency must be a positive integer, got ${show(concurrency)}`);
  items.forEach((it, i) => {
    if (!it || typeof it.image !== 'string') fail('INVALID_ARGUMENT', `validateImages: items[${i}] has no image path`);
  });
  const reasons: (string | null)[] = new Array(items.length).fill(null);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      reasons[i] = await checkImage(items[i].image, size);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  const kept: T[] = [], skipped: SkippedImage[] = [];
  items.forEach((it, i) => {
    const why = reasons[i];
    if (why === null) kept.push(it);
    else if (!options.skipBadImages) fail(why.startsWith('cannot read') ? 'IO_ERROR' : 'CORRUPT_FILE', `validateImages: ${it.image}: ${why}`);
    else skipped.push({ file: it.image, reason: why });
  });
  return { items: kept, skipped };
}
