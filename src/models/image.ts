// image.ts: CLIP image preprocessing with sharp (libvips), as Hugging Face's
// CLIPImageProcessor does it: convert to RGB, resize the shorter side to `size` (bicubic),
// centre crop size x size, scale to [0, 1], normalise per channel; CHW float32.
//
// sharp is loaded lazily (on the first call), so the rest of the package works without it.
import * as fs from 'fs';
import type { Sharp, SharpOptions } from 'sharp';
import { DType, checkDType } from './../dtype';
import { Llm2ClipError, fail } from '../errors';
import { tensor } from '../creation';
import { Tensor } from '../tensor';

/** OpenAI CLIP's per-channel mean (RGB), as CLIPImageProcessor's image_mean. */
export const CLIP_IMAGE_MEAN: readonly number[] = [0.48145466, 0.4578275, 0.40821073];
/** OpenAI CLIP's per-channel standard deviation (RGB), as CLIPImageProcessor's image_std. */
export const CLIP_IMAGE_STD: readonly number[] = [0.26862954, 0.26130258, 0.27577711];

/** Options of {@link preprocessImage}. */
export interface PreprocessOptions {
  /** Output side in pixels (default 224; a model's config.image_size). */
  size?: number;
  /** Per-channel mean subtracted after scaling to [0, 1] (default {@link CLIP_IMAGE_MEAN}). */
  mean?: readonly number[];
  /** Per-channel standard deviation divided by (default {@link CLIP_IMAGE_STD}). */
  std?: readonly number[];
}

/** Options of {@link loadImages}. */
export interface LoadImagesOptions extends PreprocessOptions {
  /** Tensor dtype (default float32). */
  dtype?: DType;
  /** 'cpu' (default), 'cuda' or 'cuda:N'. */
  device?: string;
  /** How many images are decoded at once (default 8). */
  concurrency?: number;
}

type SharpFactory = (input?: Buffer | SharpOptions, options?: SharpOptions) => Sharp;
let sharpLib: SharpFactory | null = null;

function loadSharp(): SharpFactory {
  if (sharpLib) return sharpLib;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const m = require('sharp') as SharpFactory & { default?: SharpFactory };
    sharpLib = m.default ?? m;
  } catch (e) {
    fail('INTERNAL', `image preprocessing needs the 'sharp' package, which did not load: ${(e as Error).message}`);
  }
  return sharpLib;
}

interface Checked {
  size: number;
  mean: number[];
  std: number[];
}

function checkOptions(options: PreprocessOptions | undefined, what: string): Checked {
  if (options !== undefined && (options === null || typeof options !== 'object'))
    fail('INVALID_ARGUMENT', `${what}: options must be an object`);
  const o = options ?? {};
  const size = o.size ?? 224;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 1 || size > 16384)
    fail('INVALID_ARGUMENT', `${what}: options.size must be an integer in [1, 16384] (got ${String(o.size)})`);
  const vec = (v: readonly number[] | undefined, dflt: readonly number[], name: string, nonZero: boolean): number[] => {
    const a = v ?? dflt;
    if (!Array.isArray(a) || a.length !== 3 || a.some((x) => typeof x !== 'number' || !Number.isFinite(x) || (nonZero && x === 0)))
      fail('INVALID_ARGUMENT', `${what}: options.${name} must be 3 finite numbers${nonZero ? ', none zero' : ''} (got ${JSON.stringify(v)})`);
    return [...a];
  };
  return { size, mean: vec(o.mean, CLIP_IMAGE_MEAN, 'mean', false), std: vec(o.std, CLIP_IMAGE_STD, 'std', true) };
}

function label(input: string | Buffer): string {
  return typeof input === 'string' ? JSON.stringify(input) : `<buffer of ${input.length} bytes>`;
}

/**
 * The resized (shorter side = size, longer side = floor(size · long / short), as
 * transformers' get_resize_output_image_size) and centre-cropped geometry of a
 * width x height image.
 */
export function clipResizeGeometry(width: number, height: number, size: number): { width: number; height: number; left: number; top: number } {
  const short = Math.min(width, height), long = Math.max(width, height);
  const newLong = Math.max(size, Math.floor((size * long) / short));
  const w = width <= height ? size : newLong;
  const h = width <= height ? newLong : size;
  return { width: w, height: h, left: Math.floor((w - size) / 2), top: Math.floor((h - size) / 2) };
}

async function readInput(input: string | Buffer, what: string): Promise<Buffer> {
  if (Buffer.isBuffer(input)) return input;
  if (typeof input !== 'string' || input.length === 0) fail('INVALID_ARGUMENT', `${what}: input must be a file path or a Buffer`);
  try {
    return await fs.promises.readFile(input);
  } catch (e) {
    throw new Llm2ClipError('IO_ERROR', `${what}: cannot read image file ${label(input)}: ${(e as Error).message}`);
  }
}

/** Decoded 8-bit RGB pixels, resized and cropped (HWC). */
async function rgbCrop(bytes: Buffer, name: string, size: number, what: string): Promise<Buffer> {
  const sharp = loadSharp();
  try {
    // Stage 1: decode and convert to 8-bit sRGB, alpha dropped (not composited), as PIL's
    // image.convert('RGB'): greyscale is replicated, CMYK and other spaces converted. No
    // EXIF auto-rotation (transformers does none either).
    const dec = await sharp(bytes, { failOn: 'error' })
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    const { width, height, channels } = dec.info;
    if (channels !== 3) fail('CORRUPT_FILE', `${what}: image ${name} decoded to ${channels} channels, expected 3 after RGB conversion`);
    // Stage 2: resize the shorter side to size (bicubic: Catmull-Rom, PIL's BICUBIC
    // kernel), then centre crop.
    const g = clipResizeGeometry(width, height, size);
    const out = await sharp(dec.data, { raw: { width, height, channels: 3 } })
      .resize(g.width, g.height, { kernel: 'cubic', fit: 'fill' })
      .extract({ left: g.left, top: g.top, width: size, height: size })
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (out.info.width !== size || out.info.height !== size || out.info.channels !== 3 || out.data.length !== size * size * 3)
      fail('INTERNAL', `${what}: image ${name}: sharp returned ${out.info.width}x${out.info.height}x${out.info.channels}, expected ${size}x${size}x3`);
    return out.data;
  } catch (e) {
    if (e instanceof Llm2ClipError) throw e;
    throw new Llm2ClipError('CORRUPT_FILE', `${what}: cannot decode image ${name}: ${(e as Error).message}`);
  }
}

/** HWC uint8 -> normalised CHW float32 written into out at offset. */
function normalise(rgb: Buffer, o: Checked, out: Float32Array, offset: number): void {
  const n = o.size * o.size;
  for (let c = 0; c < 3; c++) {
    const m = o.mean[c], s = o.std[c], base = offset + c * n;
    for (let i = 0; i < n; i++) out[base + i] = (rgb[i * 3 + c] / 255 - m) / s;
  }
}

/**
 * One image (a file path or encoded bytes: JPEG, PNG, WebP, TIFF, GIF, ...) preprocessed
 * as OpenAI CLIP / transformers' CLIPImageProcessor: RGB (alpha dropped, greyscale and
 * CMYK converted), shorter side resized to `size` with a bicubic kernel, centre crop
 * size x size, values / 255, then (v − mean[c]) / std[c] (computed in float64, rounded
 * once). Returns CHW float32 [3, size, size].
 *
 * Errors: IO_ERROR for an unreadable file, CORRUPT_FILE for bytes that do not decode,
 * naming the file.
 */
export async function preprocessImage(input: string | Buffer, options?: PreprocessOptions): Promise<Float32Array> {
  const what = 'preprocessImage';
  const o = checkOptions(options, what);
  const bytes = await readInput(input, what);
  const rgb = await rgbCrop(bytes, label(input), o.size, what);
  const out = new Float32Array(3 * o.size * o.size);
  normalise(rgb, o, out, 0);
  return out;
}

/**
 * Images (paths or encoded bytes) preprocessed as {@link preprocessImage} into one tensor
 * [B, 3, size, size] (float32 unless options.dtype; on options.device), decoded
 * concurrently (at most options.concurrency at a time, default 8). The first failing image
 * rejects the promise with its error (IO_ERROR / CORRUPT_FILE naming the file).
 */
export async function loadImages(inputs: readonly (string | Buffer)[], options: LoadImagesOptions = {}): Promise<Tensor> {
  const what = 'loadImages';
  if (!Array.isArray(inputs) || inputs.length === 0) fail('INVALID_ARGUMENT', `${what}: inputs must be a non-empty array of paths or Buffers`);
  const o = checkOptions(options, what);
  const dtype = checkDType(options.dtype ?? 'float32', `${what}(options.dtype)`);
  if (dtype === 'int32') fail('DTYPE_MISMATCH', `${what}: options.dtype must be a float dtype`);
  const conc = options.concurrency ?? 8;
  if (typeof conc !== 'number' || !Number.isSafeInteger(conc) || conc < 1)
    fail('INVALID_ARGUMENT', `${what}: options.concurrency must be a positive integer (got ${String(options.concurrency)})`);
  const per = 3 * o.size * o.size;
  const out = new Float32Array(inputs.length * per);
  let next = 0;
  let failed: unknown = null;
  const worker = async (): Promise<void> => {
    while (failed === null && next < inputs.length) {
      const i = next++;
      try {
        const input = inputs[i];
        const bytes = await readInput(input, what);
        const rgb = await rgbCrop(bytes, label(input), o.size, what);
        normalise(rgb, o, out, i * per);
      } catch (e) {
        if (failed === null) failed = e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(conc, inputs.length) }, worker));
  if (failed !== null) throw failed;
  return tensor(out, [inputs.length, 3, o.size, o.size], { dtype, device: options.device });
}
