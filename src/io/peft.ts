// peft.ts: LoRA adapters in the Hugging Face PEFT layout: a folder with
// adapter_config.json and adapter_model.safetensors, as PeftModel.save_pretrained writes
// and PeftModel.from_pretrained reads.
//
// Tensor names: `base_model.model.<module path>.lora_A.weight` ([r, in]) and
// `...lora_B.weight` ([out, r]); the module path is the one of the base model, e.g.
// `layers.0.self_attn.q_proj` for a LlamaModel (`model.layers.0...` for a
// LlamaForCausalLM). PEFT drops the adapter name ("default") from saved names but
// some files keep it (`lora_A.default.weight`): both are read.
import * as fs from 'fs';
import * as path from 'path';
import { fail } from '../errors';
import { Tensor } from '../tensor';
import { loadSafetensors, saveSafetensors, LoadSafetensorsOptions } from './safetensors';

/** A LoRA adapter's configuration (adapter_config.json, camel-cased). */
export interface PeftConfig {
  /** LoRA rank (a positive integer). */
  r: number;
  /** LoRA alpha: the update is scaled by alpha / r (alpha / sqrt(r) with useRslora). */
  loraAlpha: number;
  /** Module names (suffixes of module paths) the adapter applies to, or a regex string. */
  targetModules: string[] | string;
  /** Dropout on the LoRA path's input (default 0). */
  loraDropout?: number;
  /** The base model (a Hub id or a path), or null. */
  baseModelNameOrPath?: string | null;
  /** PEFT task type (default 'FEATURE_EXTRACTION', as LLM2Vec's encoders), or null. */
  taskType?: string | null;
  /** Which biases are trained (default 'none'). */
  bias?: 'none' | 'all' | 'lora_only';
  /** Whether the adapter is saved for inference only (default true). */
  inferenceMode?: boolean;
  /** Whether the base weight is stored [in, out] (default false: [out, in], nn.Linear). */
  fanInFanOut?: boolean;
  /** Modules trained in full and saved beside the adapter (default null). */
  modulesToSave?: string[] | null;
  /** rsLoRA scaling alpha / sqrt(r) (default false). */
  useRslora?: boolean;
  /** Per-module ranks overriding r (PEFT's rank_pattern; default {}). */
  rankPattern?: Record<string, number>;
  /** Per-module alphas overriding loraAlpha (PEFT's alpha_pattern; default {}). */
  alphaPattern?: Record<string, number>;
}

const CONFIG_FILE = 'adapter_config.json';
const WEIGHTS_FILE = 'adapter_model.safetensors';

/** The LoRA scale of a configuration: alpha / r, or alpha / sqrt(r) with useRslora. */
export function loraScale(config: Pick<PeftConfig, 'r' | 'loraAlpha' | 'useRslora'>): number {
  return config.useRslora ? config.loraAlpha / Math.sqrt(config.r) : config.loraAlpha / config.r;
}

/**
 * The PEFT tensor name of a LoRA matrix: `base_model.model.<modulePath>.lora_A.weight`
 * (A: [r, in]) or `...lora_B.weight` (B: [out, r]). modulePath is the base model's
 * module path, e.g. 'layers.0.self_attn.q_proj'.
 */
export function peftName(modulePath: string, which: 'A' | 'B'): string {
  if (typeof modulePath !== 'string' || modulePath.length === 0 || modulePath.startsWith('.') || modulePath.endsWith('.'))
    fail('INVALID_ARGUMENT', `peftName(modulePath): a dotted module path is required (got ${JSON.stringify(modulePath)})`);
  if (which !== 'A' && which !== 'B') fail('INVALID_ARGUMENT', `peftName(which): 'A' or 'B' is required (got ${JSON.stringify(which)})`);
  return `base_model.model.${modulePath}.lora_${which}.weight`;
}

/** What parsePeftName() returns for a LoRA tensor name. */
export interface ParsedPeftName {
  modulePath: string;
  which: 'A' | 'B';
  /** The adapter name when the file keeps it (`lora_A.default.weight` -> 'default'), else null. */
  adapterName: string | null;
}

const PEFT_NAME = /^(?:base_model\.model\.)?(.+?)\.lora_([AB])(?:\.([^.]+))?\.weight$/;

/**
 * The inverse of peftName(): `[base_model.model.]<modulePath>.lora_{A|B}[.<adapter>].weight`
 * -> {modulePath, which, adapterName}; null for a name that is not a LoRA matrix (e.g. a
 * modules_to_save weight).
 */
export function parsePeftName(name: string): ParsedPeftName | null {
  if (typeof name !== 'string') return null;
  const m = PEFT_NAME.exec(name);
  if (!m) return null;
  return { modulePath: m[1], which: m[2] as 'A' | 'B', adapterName: m[3] ?? null };
}

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Checks a PeftConfig (from the caller or a file); `where` names it in messages. */
function checkConfig(c: Record<string, unknown>, where: string, code: 'INVALID_ARGUMENT' | 'CORRUPT_FILE', keys: Record<string, string>): void {
  const bad = (key: string, msg: string): never => fail(code, `${where}: ${keys[key] ?? key} ${msg}`);
  if (!Number.isSafeInteger(c.r) || (c.r as number) <= 0) bad('r', `must be a positive integer (got ${JSON.stringify(c.r)})`);
  if (typeof c.loraAlpha !== 'number' || !Number.isFinite(c.loraAlpha)) bad('loraAlpha', `must be a finite number (got ${JSON.stringify(c.loraAlpha)})`);
  const tm = c.targetModules;
  if (!(typeof tm === 'string' || (Array.isArray(tm) && tm.length > 0 && tm.every((s) => typeof s === 'string' && s.length > 0))))
    bad('targetModules', `must be a non-empty list of module names or a regex string (got ${JSON.stringify(tm)})`);
  if (c.loraDropout !== undefined && (typeof c.loraDropout !== 'number' || !(c.loraDropout >= 0 && c.loraDropout < 1)))
    bad('loraDropout', `must be a number in [0, 1) (got ${JSON.stringify(c.loraDropout)})`);
  if (c.bias !== undefined && !['none', 'all', 'lora_only'].includes(c.bias as string))
    bad('bias', `must be 'none', 'all' or 'lora_only' (got ${JSON.stringify(c.bias)})`);
  for (const k of ['baseModelNameOrPath', 'taskType'])
    if (c[k] !== undefined && c[k] !== null && typeof c[k] !== 'string') bad(k, `must be a string or null`);
  for (const k of ['inferenceMode', 'fanInFanOut', 'useRslora'])
    if (c[k] !== undefined && typeof c[k] !== 'boolean') bad(k, `must be a boolean`);
  if (c.fanInFanOut === true) bad('fanInFanOut', 'true (Conv1D-style [in, out] weights) is not supported');
  if (c.modulesToSave !== undefined && c.modulesToSave !== null && !(Array.isArray(c.modulesToSave) && c.modulesToSave.every((s) => typeof s === 'string')))
    bad('modulesToSave', 'must be a list of strings or null');
  for (const k of ['rankPattern', 'alphaPattern']) {
    const p = c[k];
    if (p === undefined || p === null) continue;
    if (!isObj(p) || !Object.values(p).every((v) => typeof v === 'number' && Number.isFinite(v))) bad(k, 'must map module names to numbers');
    if (k === 'rankPattern' && !Object.values(p as Record<string, number>).every((v) => Number.isSafeInteger(v) && v > 0))
      bad(k, 'must map module names to positive integers');
  }
}

/** camelCase field -> adapter_config.json key. */
const SNAKE: Record<string, string> = {
  r: 'r', loraAlpha: 'lora_alpha', targetModules: 'target_modules', loraDropout: 'lora_dropout',
  baseModelNameOrPath: 'base_model_name_or_path', taskType: 'task_type', bias: 'bias',
  inferenceMode: 'inference_mode', fanInFanOut: 'fan_in_fan_out', modulesToSave: 'modules_to_save',
  useRslora: 'use_rslora', rankPattern: 'rank_pattern', alphaPattern: 'alpha_pattern',
};

/** The adapter_config.json object PEFT writes for a LoRA adapter. */
function toJson(c: PeftConfig): Record<string, unknown> {
  return {
    alpha_pattern: c.alphaPattern ?? {},
    auto_mapping: null,
    base_model_name_or_path: c.baseModelNameOrPath ?? null,
    bias: c.bias ?? 'none',
    fan_in_fan_out: c.fanInFanOut ?? false,
    inference_mode: c.inferenceMode ?? true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: c.loraAlpha,
    lora_dropout: c.loraDropout ?? 0,
    modules_to_save: c.modulesToSave ?? null,
    peft_type: 'LORA',
    r: c.r,
    rank_pattern: c.rankPattern ?? {},
    revision: null,
    target_modules: Array.isArray(c.targetModules) ? [...c.targetModules] : c.targetModules,
    task_type: c.taskType === undefined ? 'FEATURE_EXTRACTION' : c.taskType,
    use_dora: false,
    use_rslora: c.useRslora ?? false,
  };
}

/** Reads the LoRA pairs of an adapter's tensors; checks that they pair up with matching ranks. */
function checkPairs(tensors: Record<string, Tensor>, config: PeftConfig, file: string, code: 'INVALID_ARGUMENT' | 'CORRUPT_FILE'): void {
  const mods = new Map<string, { A?: Tensor; B?: Tensor; nameA?: string; nameB?: string }>();
  for (const [name, t] of Object.entries(tensors)) {
    const p = parsePeftName(name);
    if (!p) continue;
    const m = mods.get(p.modulePath) ?? {};
    if (m[p.which]) fail(code, `${file}: two lora_${p.which} tensors for module ${p.modulePath} ("${m[`name${p.which}`]}" and "${name}")`);
    m[p.which] = t;
    m[`name${p.which}`] = name;
    mods.set(p.modulePath, m);
  }
  const patterned = config.rankPattern && Object.keys(config.rankPattern).length > 0;
  for (const [mod, { A, B, nameA, nameB }] of mods) {
    if (!A || !B) fail(code, `${file}: module ${mod} has lora_${A ? 'A' : 'B'} ("${nameA ?? nameB}") without lora_${A ? 'B' : 'A'}`);
    if (A.ndim !== 2 || B.ndim !== 2 || A.shape[0] !== B.shape[1])
      fail(code, `${file}: module ${mod}: lora_A [${A.shape}] and lora_B [${B.shape}] must be [r, in] and [out, r]`);
    if (!patterned && A.shape[0] !== config.r)
      fail(code, `${file}: module ${mod}: lora_A "${nameA}" has rank ${A.shape[0]} but the config says r = ${config.r}`);
  }
}

/**
 * Writes a LoRA adapter folder as PEFT does: adapter_config.json (peft_type "LORA", r,
 * lora_alpha, lora_dropout, target_modules, bias, task_type, base_model_name_or_path,
 * inference_mode, fan_in_fan_out, modules_to_save, ... with PEFT's defaults) and
 * adapter_model.safetensors holding `tensors` under the names given (build them with
 * peftName()). The folder is created if needed. The LoRA pairs are checked (each lora_A
 * [r, in] has its lora_B [out, r], r matches the config unless rankPattern is set).
 */
export async function savePeftAdapter(dir: string, tensors: Record<string, Tensor>, config: PeftConfig): Promise<void> {
  const what = `savePeftAdapter(${JSON.stringify(dir)})`;
  if (typeof dir !== 'string' || dir.length === 0) fail('INVALID_ARGUMENT', 'savePeftAdapter(dir): dir must be a non-empty string');
  if (!isObj(config)) fail('INVALID_ARGUMENT', `${what}: config must be an object`);
  checkConfig(config as unknown as Record<string, unknown>, `${what}: config`, 'INVALID_ARGUMENT', {});
  if (!isObj(tensors)) fail('INVALID_ARGUMENT', `${what}: tensors must be an object of name -> Tensor`);
  for (const [n, t] of Object.entries(tensors)) if (!(t instanceof Tensor)) fail('INVALID_ARGUMENT', `${what}: tensors["${n}"] is not a Tensor`);
  checkPairs(tensors, config, what, 'INVALID_ARGUMENT');
  try {
    await fs.promises.mkdir(dir, { recursive: true });
  } catch (e) {
    fail('IO_ERROR', `${what}: cannot create the folder: ${(e as Error).message}`);
  }
  await saveSafetensors(path.join(dir, WEIGHTS_FILE), tensors, { format: 'pt' });
  const cfgPath = path.join(dir, CONFIG_FILE);
  const tmp = `${cfgPath}.tmp-${process.pid}`;
  try {
    await fs.promises.writeFile(tmp, JSON.stringify(toJson(config), null, 2) + '\n');
    await fs.promises.rename(tmp, cfgPath);
  } catch (e) {
    await fs.promises.unlink(tmp).catch(() => undefined);
    fail('IO_ERROR', `${what}: cannot write ${cfgPath}: ${(e as Error).message}`);
  }
}

/** What loadPeftAdapter() returns. */
export interface PeftAdapter {
  config: PeftConfig;
  /** adapter_config.json as read (every field, snake_case). */
  rawConfig: Record<string, unknown>;
  /** The tensors of adapter_model.safetensors under their file names. */
  tensors: Record<string, Tensor>;
}

/**
 * Reads a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors).
 * The config is checked: peft_type "LORA", r a positive integer, lora_alpha a number,
 * target_modules a list or a string, fan_in_fan_out false (CORRUPT_FILE otherwise, naming
 * the file and field); so are the LoRA pairs (each A [r, in] with its B [out, r]).
 * A folder with only adapter_model.bin (pickle) gives IO_ERROR: only safetensors is read.
 * options are those of loadSafetensors (device, dtype, names).
 */
export async function loadPeftAdapter(dir: string, options: LoadSafetensorsOptions = {}): Promise<PeftAdapter> {
  const what = `loadPeftAdapter(${JSON.stringify(dir)})`;
  if (typeof dir !== 'string' || dir.length === 0) fail('INVALID_ARGUMENT', 'loadPeftAdapter(dir): dir must be a non-empty string');
  const cfgPath = path.join(dir, CONFIG_FILE);
  let text: string;
  try {
    text = await fs.promises.readFile(cfgPath, 'utf8');
  } catch (e) {
    fail('IO_ERROR', `${what}: cannot read ${cfgPath}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    fail('CORRUPT_FILE', `${cfgPath}: not valid JSON (${(e as Error).message})`);
  }
  if (!isObj(raw)) fail('CORRUPT_FILE', `${cfgPath}: not a JSON object`);
  if (raw.peft_type !== 'LORA') fail('CORRUPT_FILE', `${cfgPath}: peft_type ${JSON.stringify(raw.peft_type)} is not "LORA" (only LoRA adapters are read)`);
  if (raw.use_dora === true) fail('CORRUPT_FILE', `${cfgPath}: use_dora = true (DoRA) is not supported`);
  const pick = <T>(k: string): T | undefined => (raw[k] === undefined ? undefined : (raw[k] as T));
  const config: PeftConfig = {
    r: raw.r as number,
    loraAlpha: raw.lora_alpha as number,
    targetModules: raw.target_modules as string[] | string,
    loraDropout: pick<number>('lora_dropout'),
    baseModelNameOrPath: pick<string | null>('base_model_name_or_path'),
    taskType: pick<string | null>('task_type'),
    bias: pick<'none' | 'all' | 'lora_only'>('bias'),
    inferenceMode: pick<boolean>('inference_mode'),
    fanInFanOut: pick<boolean>('fan_in_fan_out'),
    modulesToSave: pick<string[] | null>('modules_to_save'),
    useRslora: pick<boolean>('use_rslora'),
    rankPattern: pick<Record<string, number>>('rank_pattern') ?? undefined,
    alphaPattern: pick<Record<string, number>>('alpha_pattern') ?? undefined,
  };
  for (const k of Object.keys(config) as (keyof PeftConfig)[]) if (config[k] === undefined) delete config[k];
  checkConfig(config as unknown as Record<string, unknown>, cfgPath, 'CORRUPT_FILE', SNAKE);
  const weights = path.join(dir, WEIGHTS_FILE);
  if (!fs.existsSync(weights)) {
    const bin = fs.existsSync(path.join(dir, 'adapter_model.bin'));
    fail('IO_ERROR', `${what}: ${weights} is missing${bin ? ' (adapter_model.bin, a pickle, is not read: convert it to safetensors)' : ''}`);
  }
  const tensors = await loadSafetensors(weights, options);
  try {
    if (options.names === undefined) checkPairs(tensors, config, weights, 'CORRUPT_FILE');
  } catch (e) {
    for (const t of Object.values(tensors)) t.dispose();
    throw e;
  }
  return { config, rawConfig: raw, tensors };
}
