// files.ts: the trainers' small file writes (output folder, log.jsonl, metrics.json) with
// fs failures (a full disk, a file where a folder should be, permissions) turned into
// IO_ERROR naming the path, as every other file error of llm2clip is.
import * as fs from 'fs';
import { Llm2ClipError } from '../errors';

/** An fs error as IO_ERROR naming `file` (other errors are returned as they are). */
export function asIoError(e: unknown, what: string, file?: string): unknown {
  // (duck-typed: fs errors may come from another realm, e.g. under jest, failing instanceof Error)
  if (e instanceof Llm2ClipError || e === null || typeof e !== 'object') return e;
  const ne = e as NodeJS.ErrnoException;
  if (typeof ne.code !== 'string' || typeof ne.message !== 'string') return e;
  const where = file ?? ne.path;
  return new Llm2ClipError('IO_ERROR', `${what}: cannot write ${where ?? 'a file'}: ${ne.message}`);
}

/** mkdir -p, IO_ERROR naming dir on failure (e.g. a file is in the way). */
export function ensureDir(dir: string, what: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw asIoError(e, what, dir);
  }
}

/** Writes (or appends) text, IO_ERROR naming the file on failure. */
export function writeText(file: string, text: string, what: string, append = false): void {
  try {
    if (append) fs.appendFileSync(file, text);
    else fs.writeFileSync(file, text);
  } catch (e) {
    throw asIoError(e, what, file);
  }
}
