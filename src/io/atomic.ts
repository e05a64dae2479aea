// atomic.ts: small text files (configs, tokenizer.json) written through a temporary file
// renamed over the target, so a reader never sees half a file.
import * as fs from 'fs';
import { fail } from '../errors';

/** Writes text to file through a temporary file renamed over it (IO_ERROR naming what). */
export function writeTextAtomic(file: string, text: string, what: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, file);
  } catch (e) {
    try {
      fs.unlinkSync(tmp);
    } catch {
      /* not created */
    }
    fail('IO_ERROR', `${what}: cannot write ${file}: ${(e as Error).message}`);
  }
}
