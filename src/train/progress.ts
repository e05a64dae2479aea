// progress.ts: training progress: a bar on a TTY (cli-progress: loss, lr, throughput,
// ETA), one JSON object per step on stderr otherwise.
import * as fs from 'fs';
import { SingleBar, Presets } from 'cli-progress';
import { asIoError } from './files';

/** Fields a progress update shows. */
export interface ProgressInfo {
  stage: string;
  step: number;
  totalSteps: number;
  loss: number;
  lr: number;
  throughput: number;
}

/** Progress of one stage at a time; silent when disabled. */
export class Progress {
  private bar: SingleBar | null = null;
  private readonly tty: boolean;
  constructor(private readonly enabled: boolean, private readonly stream: NodeJS.WriteStream = process.stderr) {
    this.tty = !!stream.isTTY;
  }
  start(stage: string, total: number, at: number): void {
    if (!this.enabled || !this.tty) return;
    this.bar = new SingleBar(
      { format: `${stage} [{bar}] {value}/{total} | loss {loss} | lr {lr} | {tput}/s | ETA {eta_formatted}`, stream: this.stream, hideCursor: true },
      Presets.shades_classic,
    );
    this.bar.start(total, at, { loss: '-', lr: '-', tput: '-' });
  }
  update(i: ProgressInfo): void {
    if (!this.enabled) return;
    if (this.bar) this.bar.update(i.step, { loss: i.loss.toFixed(4), lr: i.lr.toExponential(2), tput: i.throughput.toFixed(1) });
    else if (!this.tty) this.stream.write(JSON.stringify(i) + '\n');
  }
  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}

/**
 * On resume: keeps the first `lines` lines of a log.jsonl (the steps the checkpoint
 * covers), dropping those a killed run logged after its last checkpoint, so that the
 * resumed run's lines follow without duplicates. A missing file is created empty.
 */
export function trimLog(file: string, lines: number): void {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    // absent: start a new one
  }
  const kept = text.split('\n').filter((l) => l.trim().length > 0).slice(0, lines);
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, kept.map((l) => l + '\n').join(''));
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw asIoError(e, 'resume', file);
  }
}
