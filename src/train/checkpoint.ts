// checkpoint.ts: training checkpoints written atomically (a complete temp directory renamed
// into place, then a LATEST pointer file replaced by rename), read back for resume.
//
// Crash safety (SIGKILL, a full disk, a power cut after fsync): dir/<name>/ directories
// without a leading dot are always complete (they appear by rename only); everything in
// flight has a dot name ending in -<pid>: `.<name>.tmp-<pid>` (being written),
// `.<name>.old-<pid>` (a same-named checkpoint being replaced), `.<name>.del-<pid>` (an old
// one being pruned), `LATEST.tmp-<pid>`. The next save removes those of dead processes
// (restoring an `.old` one whose replacement never arrived), and loadLatestCheckpoint
// falls back to the newest complete checkpoint when LATEST is missing or names one that
// is gone.
import * as fs from 'fs';
import * as path from 'path';
import { fail, Llm2ClipError } from '../errors';
import { Tensor } from '../tensor';
import { loadSafetensors, saveSafetensors } from '../io/safetensors';
import { beforeWrite } from '../io/fault';
import { copyInto } from '../nn';

/** What a checkpoint holds: JSON state plus named tensor groups (each one safetensors file). */
export interface CheckpointData {
  state: Record<string, unknown>;
  tensors: Record<string, Record<string, Tensor>>;
  /** (Loaded checkpoints) the directory it was read from. */
  from?: string;
}

const IN_FLIGHT = /^\.(.+)\.(tmp|old|del)-(\d+)$/;

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Writes text to file and fsyncs it (the fault hook sees the write). */
function writeDurable(file: string, text: string): void {
  const buf = Buffer.from(text, 'utf8');
  beforeWrite(file, buf.length);
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, buf, 0, buf.length, 0);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** fsync of a directory (makes renames in it durable); not every platform allows it. */
function syncDir(dir: string): void {
  let fd: number | null = null;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Windows and some file systems refuse to fsync a directory; the renames still happened.
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}

function checkName(name: string, what: string): void {
  if (typeof name !== 'string' || name.length === 0 || name.startsWith('.') || /[/\\]/.test(name) || name === 'LATEST')
    fail('INVALID_ARGUMENT', `${what}: checkpoint name ${JSON.stringify(name)} must be a plain file name (no separators, no leading dot, not LATEST)`);
}

/** Complete checkpoints under dir (plain directory names), oldest first (by name). */
function completeCheckpoints(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((f) => !f.startsWith('.') && f !== 'LATEST' && !f.startsWith('LATEST.') && fs.statSync(path.join(dir, f), { throwIfNoEntry: false })?.isDirectory())
    .sort();
}

/**
 * Cleans what dead writers left in dir: temp and pruned directories are removed, an
 * `.old` directory whose replacement never arrived is renamed back into place.
 */
function recoverInFlight(dir: string): void {
  for (const f of fs.readdirSync(dir)) {
    const full = path.join(dir, f);
    const latestTmp = /^LATEST\.tmp-(\d+)$/.exec(f);
    if (latestTmp) {
      if (!pidAlive(Number(latestTmp[1]))) fs.rmSync(full, { force: true });
      continue;
    }
    const m = IN_FLIGHT.exec(f);
    if (!m || pidAlive(Number(m[3]))) continue;
    const final = path.join(dir, m[1]);
    if (m[2] === 'old' && !fs.existsSync(final)) fs.renameSync(full, final);
    else fs.rmSync(full, { recursive: true, force: true });
  }
}

/**
 * Writes checkpoint `name` under dir (dir/name/{state.json, <group>.safetensors}) and points
 * dir/LATEST at it. A crash at any moment (even SIGKILL mid-write) leaves the previous
 * checkpoint or the new one complete, and LATEST naming a complete one (or, for an instant
 * while a same-named checkpoint is replaced, nothing: {@link loadLatestCheckpoint} then
 * falls back to the newest complete one). Files are fsynced before they are renamed into
 * place. Keeps the `keep` most recent checkpoints (default 2). A failed write (e.g. the
 * disk is full) throws IO_ERROR naming the file, leaves no partial file behind and LATEST
 * where it was.
 */
export async function saveCheckpoint(dir: string, name: string, data: CheckpointData, keep = 2): Promise<string> {
  checkName(name, 'saveCheckpoint');
  try {
    fs.mkdirSync(dir, { recursive: true });
    recoverInFlight(dir);
  } catch (e) {
    fail('IO_ERROR', `checkpoint: cannot prepare ${dir}: ${errMsg(e)}`);
  }
  const final = path.join(dir, name);
  const tmp = path.join(dir, `.${name}.tmp-${process.pid}`);
  const aside = path.join(dir, `.${name}.old-${process.pid}`);
  let movedAside = false;
  let renamedIn = false;
  try {
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp);
    for (const [group, tensors] of Object.entries(data.tensors)) await saveSafetensors(path.join(tmp, `${group}.safetensors`), tensors);
    writeDurable(path.join(tmp, 'state.json'), JSON.stringify(data.state, null, 1));
    syncDir(tmp);
    if (fs.existsSync(final)) {
      fs.rmSync(aside, { recursive: true, force: true });
      fs.renameSync(final, aside);
      movedAside = true;
    }
    fs.renameSync(tmp, final);
    renamedIn = true;
    syncDir(dir);
    const latestTmp = path.join(dir, `LATEST.tmp-${process.pid}`);
    try {
      writeDurable(latestTmp, name + '\n');
      fs.renameSync(latestTmp, path.join(dir, 'LATEST'));
    } catch (e) {
      fs.rmSync(latestTmp, { force: true });
      throw e;
    }
    syncDir(dir);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    // LATEST could not be replaced: take the new checkpoint back out, so the folder is as it was.
    if (renamedIn) {
      const del = path.join(dir, `.${name}.del-${process.pid}`);
      fs.renameSync(final, del);
      fs.rmSync(del, { recursive: true, force: true });
    }
    if (movedAside && !fs.existsSync(final)) fs.renameSync(aside, final);
    if (e instanceof Llm2ClipError) throw new Llm2ClipError(e.code, `checkpoint ${final}: ${e.message}`);
    const file = (e as { path?: string }).path;
    fail('IO_ERROR', `checkpoint: cannot write ${final}${file ? ` (${path.basename(file)})` : ''}: ${errMsg(e)}`);
  }
  if (movedAside) fs.rmSync(aside, { recursive: true, force: true });
  // Prune old checkpoints (never the one just written): renamed to a dot name first, so a
  // crash mid-delete leaves no half-deleted directory that looks complete.
  const all = completeCheckpoints(dir);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) {
    if (old === name) continue;
    const del = path.join(dir, `.${old}.del-${process.pid}`);
    try {
      fs.renameSync(path.join(dir, old), del);
      fs.rmSync(del, { recursive: true, force: true });
    } catch {
      // pruning is best effort; the next save retries
    }
  }
  return final;
}

async function loadFrom(cdir: string, groups: string[]): Promise<CheckpointData> {
  let state: unknown;
  const sf = path.join(cdir, 'state.json');
  try {
    state = JSON.parse(fs.readFileSync(sf, 'utf8'));
  } catch (e) {
    fail('CORRUPT_FILE', `checkpoint ${cdir}: cannot read state.json: ${errMsg(e)}`);
  }
  if (state === null || typeof state !== 'object' || Array.isArray(state)) fail('CORRUPT_FILE', `checkpoint ${sf}: not a JSON object`);
  const tensors: Record<string, Record<string, Tensor>> = {};
  try {
    for (const g of groups) {
      const f = path.join(cdir, `${g}.safetensors`);
      if (fs.existsSync(f)) tensors[g] = await loadSafetensors(f);
    }
  } catch (e) {
    for (const ts of Object.values(tensors)) for (const t of Object.values(ts)) t.dispose();
    throw e;
  }
  return { state: state as Record<string, unknown>, tensors, from: cdir };
}

/**
 * The checkpoint LATEST points at under dir, or null when there is none. When LATEST is
 * missing or names a checkpoint that is gone (a crash at the wrong instant), the newest
 * complete checkpoint is loaded instead (the one being replaced, if a crash interrupted
 * a same-named save). A LATEST that names nothing at all, an unreadable state.json or a
 * corrupt tensor file throw CORRUPT_FILE naming the file.
 */
export async function loadLatestCheckpoint(dir: string, groups: string[]): Promise<CheckpointData | null> {
  if (!fs.existsSync(dir)) return null;
  const latest = path.join(dir, 'LATEST');
  let target: string | null = null;
  if (fs.existsSync(latest)) {
    try {
      target = fs.readFileSync(latest, 'utf8').trim();
    } catch (e) {
      fail('IO_ERROR', `checkpoint: cannot read ${latest}: ${errMsg(e)}`);
    }
    if (target.length === 0 || target.startsWith('.') || /[/\\]/.test(target) || target === 'LATEST')
      fail('CORRUPT_FILE', `checkpoint ${latest}: ${JSON.stringify(target)} is not a checkpoint name`);
    if (fs.existsSync(path.join(dir, target))) return loadFrom(path.join(dir, target), groups);
    // Killed between moving a same-named checkpoint aside and renaming its replacement in.
    const aside = fs.readdirSync(dir).find((f) => f.startsWith(`.${target}.old-`) && IN_FLIGHT.test(f));
    if (aside) return loadFrom(path.join(dir, aside), groups);
  }
  const all = completeCheckpoints(dir);
  if (all.length > 0) return loadFrom(path.join(dir, all[all.length - 1]), groups);
  if (target !== null) fail('CORRUPT_FILE', `checkpoint ${latest}: names ${target}, which is not in ${dir} (and no other checkpoint is)`);
  return null;
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

/** Frees a loaded checkpoint's tensors (safe to call twice, and on null). */
export function disposeCheckpoint(ck: CheckpointData | null): void {
  if (ck) for (const g of Object.values(ck.tensors)) for (const t of Object.values(g)) t.dispose();
}
