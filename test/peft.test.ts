// PEFT LoRA adapters: names, config round trip, the files PEFT writes, validation.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Tensor, tensor, randn, savePeftAdapter, loadPeftAdapter, peftName, parsePeftName, loraScale, PeftConfig, readSafetensorsHeader } from '../src';
import { expectCode, hostRandom, expectCodeAsync } from './helpers';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-peft-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

/** A LoRA adapter for `layers` layers of q/v projections, r = rank. */
function adapter(layers: number, rank: number, seed: number): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (let l = 0; l < layers; l++)
    for (const [p, inF, outF] of [['q_proj', 24, 24], ['v_proj', 24, 8]] as const) {
      const mod = `layers.${l}.self_attn.${p}`;
      out[peftName(mod, 'A')] = tensor(hostRandom(rank * inF, seed++), [rank, inF]);
      out[peftName(mod, 'B')] = randn([outF, rank], { seed: seed++, dtype: 'bfloat16' });
    }
  return out;
}

function disposeAll(ts: Record<string, Tensor>): void {
  for (const t of Object.values(ts)) t.dispose();
}

describe('PEFT names', () => {
  test('peftName and parsePeftName are inverses; the adapter-name and prefix variants parse', () => {
    expect(peftName('layers.0.self_attn.q_proj', 'A')).toBe('base_model.model.layers.0.self_attn.q_proj.lora_A.weight');
    expect(peftName('model.layers.31.mlp.down_proj', 'B')).toBe('base_model.model.model.layers.31.mlp.down_proj.lora_B.weight');
    for (const mod of ['layers.0.self_attn.q_proj', 'model.layers.12.mlp.gate_proj', 'x'])
      for (const which of ['A', 'B'] as const) expect(parsePeftName(peftName(mod, which))).toEqual({ modulePath: mod, which, adapterName: null });
    expect(parsePeftName('base_model.model.layers.3.mlp.up_proj.lora_B.default.weight')).toEqual({ modulePath: 'layers.3.mlp.up_proj', which: 'B', adapterName: 'default' });
    expect(parsePeftName('layers.3.mlp.up_proj.lora_A.weight')).toEqual({ modulePath: 'layers.3.mlp.up_proj', which: 'A', adapterName: null });
    expect(parsePeftName('base_model.model.layers.3.mlp.up_proj.weight')).toBeNull();
    expect(parsePeftName('base_model.model.embed_tokens.lora_embedding_A')).toBeNull();
    expect(parsePeftName('lora_A.weight')).toBeNull();
    expectCode(() => peftName('', 'A'), 'INVALID_ARGUMENT');
    expectCode(() => peftName('layers.0.', 'A'), 'INVALID_ARGUMENT');
    expectCode(() => peftName('x', 'C' as 'A'), 'INVALID_ARGUMENT', 'C');
  });

  test('loraScale: alpha / r, alpha / sqrt(r) with rsLoRA', () => {
    expect(loraScale({ r: 16, loraAlpha: 32 })).toBe(2);
    expect(loraScale({ r: 16, loraAlpha: 32, useRslora: true })).toBe(8);
  });
});

describe('PEFT adapters', () => {
  const config: PeftConfig = { r: 4, loraAlpha: 8, loraDropout: 0.05, targetModules: TARGETS, baseModelNameOrPath: 'meta-llama/Meta-Llama-3-8B' };

  test('save writes the files PEFT reads; load returns the same config and bit-identical tensors', async () => {
    const ts = adapter(2, 4, 1);
    const d = path.join(dir, 'a1');
    await savePeftAdapter(d, ts, config);
    expect(fs.readdirSync(d).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const raw = JSON.parse(fs.readFileSync(path.join(d, 'adapter_config.json'), 'utf8'));
    expect(raw).toMatchObject({
      peft_type: 'LORA', r: 4, lora_alpha: 8, lora_dropout: 0.05, target_modules: TARGETS, bias: 'none',
      task_type: 'FEATURE_EXTRACTION', base_model_name_or_path: 'meta-llama/Meta-Llama-3-8B', inference_mode: true,
      fan_in_fan_out: false, modules_to_save: null, use_rslora: false, use_dora: false,
    });
    const h = await readSafetensorsHeader(path.join(d, 'adapter_model.safetensors'));
    expect(h.metadata.format).toBe('pt');
    expect(h.tensors['base_model.model.layers.1.self_attn.v_proj.lora_B.weight']).toMatchObject({ dtype: 'BF16', shape: [8, 4] });

    const back = await loadPeftAdapter(d);
    try {
      expect(back.config).toEqual({ ...config, taskType: 'FEATURE_EXTRACTION', bias: 'none', inferenceMode: true, fanInFanOut: false, modulesToSave: null, useRslora: false, rankPattern: {}, alphaPattern: {} });
      expect(back.rawConfig.peft_type).toBe('LORA');
      expect(Object.keys(back.tensors).sort()).toEqual(Object.keys(ts).sort());
      for (const [k, t] of Object.entries(ts)) {
        expect(back.tensors[k].dtype).toBe(t.dtype);
        expect(Array.from(back.tensors[k].view())).toEqual(Array.from(t.view()));
      }
    } finally {
      disposeAll(back.tensors);
    }
    // Load options pass through to the safetensors reader.
    const cast = await loadPeftAdapter(d, { dtype: 'float32' });
    expect(Object.values(cast.tensors).every((t) => t.dtype === 'float32')).toBe(true);
    disposeAll(cast.tensors);
    disposeAll(ts);
  });

  test('a PEFT-written file with the adapter name in tensor names and a regex target_modules loads', async () => {
    const d = path.join(dir, 'a2');
    const ts: Record<string, Tensor> = {
      'base_model.model.layers.0.mlp.up_proj.lora_A.default.weight': randn([2, 6], { seed: 3 }),
      'base_model.model.layers.0.mlp.up_proj.lora_B.default.weight': randn([5, 2], { seed: 4 }),
    };
    await savePeftAdapter(d, ts, { r: 2, loraAlpha: 16, targetModules: '.*mlp.*' });
    const back = await loadPeftAdapter(d);
    expect(back.config.targetModules).toBe('.*mlp.*');
    expect(loraScale(back.config)).toBe(8);
    disposeAll(back.tensors);
    disposeAll(ts);
  });

  test('bad configs and tensors: INVALID_ARGUMENT on save, CORRUPT_FILE on load naming the file and field', async () => {
    const ts = adapter(1, 4, 10);
    const d = path.join(dir, 'bad');
    for (const [patch, part] of [
      [{ r: 0 }, 'r'], [{ r: 2.5 }, 'r'], [{ loraAlpha: NaN }, 'loraAlpha'], [{ targetModules: [] }, 'targetModules'],
      [{ targetModules: [3] }, 'targetModules'], [{ loraDropout: 1.5 }, 'loraDropout'], [{ bias: 'some' }, 'bias'], [{ fanInFanOut: true }, 'fanInFanOut'],
    ] as [Record<string, unknown>, string][])
      await expectCodeAsync(savePeftAdapter(d, ts, { ...config, ...patch } as PeftConfig), 'INVALID_ARGUMENT', part);
    // r in the config differs from the tensors' rank; a lone lora_A.
    await expectCodeAsync(savePeftAdapter(d, ts, { ...config, r: 8 }), 'INVALID_ARGUMENT', 'rank 4', 'r = 8');
    const lone = { [peftName('layers.0.mlp.up_proj', 'A')]: ts[peftName('layers.0.self_attn.q_proj', 'A')] };
    await expectCodeAsync(savePeftAdapter(d, lone, config), 'INVALID_ARGUMENT', 'without lora_B');
    const mismatched = { [peftName('m', 'A')]: ts[peftName('layers.0.self_attn.q_proj', 'A')], [peftName('m', 'B')]: ts[peftName('layers.0.self_attn.q_proj', 'A')] };
    await expectCodeAsync(savePeftAdapter(d, mismatched, config), 'INVALID_ARGUMENT', '[r, in] and [out, r]');

    await savePeftAdapter(d, ts, config);
    const cfgPath = path.join(d, 'adapter_config.json');
    const good = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
    for (const [patch, part] of [
      [{ r: -1 }, 'r'], [{ lora_alpha: 'x' }, 'lora_alpha'], [{ target_modules: null }, 'target_modules'],
      [{ peft_type: 'IA3' }, 'peft_type'], [{ use_dora: true }, 'DoRA'], [{ rank_pattern: { q_proj: 0 } }, 'rank_pattern'],
    ] as [Record<string, unknown>, string][]) {
      fs.writeFileSync(cfgPath, JSON.stringify({ ...good, ...patch }));
      await expectCodeAsync(loadPeftAdapter(d), 'CORRUPT_FILE', cfgPath, part);
    }
    fs.writeFileSync(cfgPath, '{"peft_type": "LORA", ');
    await expectCodeAsync(loadPeftAdapter(d), 'CORRUPT_FILE', cfgPath, 'JSON');
    fs.writeFileSync(cfgPath, JSON.stringify({ ...good, r: 8 }));
    await expectCodeAsync(loadPeftAdapter(d), 'CORRUPT_FILE', 'adapter_model.safetensors', 'r = 8');
    fs.writeFileSync(cfgPath, JSON.stringify({ ...good, r: 8, rank_pattern: { q_proj: 4 } })); // per-module ranks: not checked against r
    disposeAll((await loadPeftAdapter(d)).tensors);
    fs.writeFileSync(cfgPath, JSON.stringify(good));
    fs.renameSync(path.join(d, 'adapter_model.safetensors'), path.join(d, 'adapter_model.bin'));
    await expectCodeAsync(loadPeftAdapter(d), 'IO_ERROR', 'adapter_model.bin');
    await expectCodeAsync(loadPeftAdapter(path.join(dir, 'nope')), 'IO_ERROR', 'adapter_config.json');
    disposeAll(ts);
  });
});
