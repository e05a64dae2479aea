// checkpoint.ts: training checkpoints written atomically (a complete temp directory renamed
// into place, then a LATEST pointer file replaced by rename), read back for resume.
import * as fs from 'fs';
import * as path from 'path';
import { fail, Llm2ClipError } from '../errors';
import { Tensor } from '../tensor';
import { loadSafetensors, saveSafetensors } from '../io/safetensors';
import { copyInto } from '../nn';

/** What a checkpoint holds: JSON state plus named tensor groups (each one safetensors file). */
export interface CheckpointData {
  state: Record<string, unknown>;
  tensors: Record<string, Record<string, Tensor>>;
}

function writeFileAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

/**
 * Writes checkpoint `name` under dir (dir/name/{state.json, <group>.safetensors}) and points
 * dir/LATEST at it. A crash at any moment leaves either the previous checkpoint or the new
 * one complete. Keeps the `keep` most recent checkpoints (default 2).
 */
export async function saveCheckpoint(dir: string, name: string, data: CheckpointData, keep = 2): Promise<string> {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    fail('IO_ERROR', `checkpoint: cannot create ${dir}: ${(e as Error).message}`);
  }
  const final = path.join(dir, name);
  const tmp = path.join(dir, `.${name}.tmp-${process.pid}`);
  try {
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp);
    for (const [group, tensors] of Object.entries(data.tensors)) await saveSafetensors(path.join(tmp, `${group}.safetensors`), tensors);
    fs.writeFileSync(path.join(tmp, 'state.json'), JSON.stringify(data.state, null, 1));
    fs.rmSync(final, { recursive: true, force: true });
    fs.renameSync(tmp, final);
    writeFileAtomic(path.join(dir, 'LATEST'), name + '\n');
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (e instanceof Llm2ClipError) throw e;
    fail('IO_ERROR', `checkpoint: cannot write ${final}: ${(e as Error).message}`);
  }
  // Prune old checkpoints (never the one LATEST names).
  const all = fs.readdirSync(dir).filter((f) => !f.startsWith('.') && f !== 'LATEST' && fs.statSync(path.join(dir, f)).isDirectory()).sort();
  for (const old of all.slice(0, Math.max(0, all.length - keep))) if (old !== name) fs.rmSync(path.join(dir, old), { recursive: true, force: true });
  return final;
}

/** The checkpoint LATEST points at under dir, or null when there is none. */
export async function loadLatestCheckpoint(dir: string, groups: string[]): Promise<CheckpointData | null> {
  const latest = path.join(dir, 'LATEST');
  if (!fs.existsSync(latest)) return null;
  const name = fs.readFileSync(latest, 'utf8').trim();
  const cdir = path.join(dir, name);
  let state: Record<string, unknown>;
  try {
    state = JSON.parse(fs.readFileSync(path.join(cdir, 'state.json'), 'utf8'));
  } catch (e) {
    fail('CORRUPT_FILE', `checkpoint ${cdir}: cannot read state.json: ${(e as Error).message}`);
  }
  const tensors: Record<string, Record<string, Tensor>> = {};
  for (const g of groups) {
    const f = path.join(cdir, `${g}.safetensors`);
    if (fs.existsSync(f)) tensors[g] = await loadSafetensors(f);
  }
  return { state, tensors };
}

/** Copies a checkpoint's saved tensors into the named parameters (dtype / device converted); a missing one is CORRUPT_FILE. */
export function restoreParams(named: [string, Tensor][], saved: Record<string, Tensor> | undefined, what: string): void {
  if (!saved) fail('CORRUPT_FILE', `${what}: the checkpoint has no params.safetensors`);
  for (const [n, p] of named) {
    const s = saved[n];
    if (!s) fail('CORRUPT_FILE', `${what}: the checkpoint lacks parameter ${n}`);
    copyInto(p, s);
  }
}

/**
 * Lets the event loop turn once (setImmediate): training loops await it every step, so
 * a SIGINT handler (the CLI's Ctrl-C -> AbortSignal) runs at once rather than at the next
 * checkpoint, and Node runs the finalisers of dead JS handles, which it defers to the loop.
 */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
