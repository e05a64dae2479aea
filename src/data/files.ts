// files.ts: reading the text files of caption sources, with the errors every reader
// shares: IO_ERROR for a file that cannot be read, CORRUPT_FILE "FILE:LINE: what" for a
// bad record.
import * as fs from 'fs';
import { fail } from '../errors';

/** Reads a UTF-8 text file (BOM stripped); IO_ERROR names the file and the reason. */
export async function readText(file: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a directory' : err.message;
    fail('IO_ERROR', `${what}: cannot read ${file}: ${why}`);
  }
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** Lines without their terminators (LF or CRLF); a final newline adds no empty line. */
export function splitLines(text: string): string[] {
  const lines = text.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Throws CORRUPT_FILE "FILE:LINE: message". */
export function corrupt(file: string, line: number | null, message: string): never {
  fail('CORRUPT_FILE', line === null ? `${file}: ${message}` : `${file}:${line}: ${message}`);
}

/** Parses one JSON Lines record, which must be an object. */
export function parseJsonLine(file: string, lineNo: number, line: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (e) {
    corrupt(file, lineNo, `invalid JSON: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    corrupt(file, lineNo, `expected a JSON object, got ${Array.isArray(v) ? 'an array' : JSON.stringify(v)}`);
  return v as Record<string, unknown>;
}

/** Parses a whole JSON document; a syntax error names the line when the engine gives a position. */
export function parseJsonDocument(file: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const msg = (e as Error).message;
    const m = /position (\d+)/.exec(msg);
    if (m) {
      const pos = Number(m[1]);
      const line = text.slice(0, pos).split('\n').length;
      corrupt(file, line, `invalid JSON: ${msg}`);
    }
    corrupt(file, null, `invalid JSON: ${msg}`);
  }
}

/** A short, safe rendering of a JSON value for messages. */
export function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Whether v is a string with non-blank content. */
export function isText(v: unknown): v is string {
  return typeof v === 'string' && v.trim() !== '';
}
