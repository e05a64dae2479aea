// caption-data.ts: shared pieces of the caption-data tests (captions, pairs, cra): where the
// real data lives, temp folders, and async error-code assertions.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Llm2ClipError, ErrorCode } from '../src';
import { expectCodeAsync } from './helpers';

const root = path.join(__dirname, '..');

/** ../shared/data beside the project (or beside the folder of a git worktree); null when absent. */
export function sharedData(): string | null {
  for (const c of [process.env.LLM2CLIP_SHARED_DATA, path.join(root, '..', 'shared', 'data'), path.join(root, '..', '..', 'shared', 'data')])
    if (c && fs.existsSync(c)) return c;
  return null;
}

/** A path under ../shared/data when it exists, else null with a visible warning. */
export function realFile(rel: string, who: string): string | null {
  const d = sharedData();
  const p = d && path.join(d, rel);
  if (p && fs.existsSync(p)) return p;
  console.warn(`${who}: ../shared/data/${rel} not found: the real-data tests are SKIPPED`);
  return null;
}

/** A fresh temp folder and a writer of files in it; call cleanup() in afterAll. */
export function tempDir(prefix: string): { dir: string; write: (name: string, text: string) => string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return {
    dir,
    write: (name, text) => {
      const p = path.join(dir, name);
      fs.mkdirSync(path.dirname(p), { recursive: true });
      fs.writeFileSync(p, text);
      return p;
    },
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/** Awaits p, expecting a Llm2ClipError with this code and message part (expectCodeAsync). */
export const expectReject = (p: Promise<unknown>, code: ErrorCode, messagePart?: string | RegExp): Promise<Llm2ClipError> =>
  expectCodeAsync(p, code, messagePart);
