// llama-save.test.ts: a LlamaEncoder written as a Hugging Face directory reads back
// identically (config, weights, tokenizer), and adapters must be merged first.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { LlamaEncoder, noGrad, tensor, trainBpeTokenizer, Tokenizer } from '../src';
import { saveLlamaPretrained, tinyLlamaConfig, llamaConfigToHf } from '../src/models/llama-save';
import { parseLlamaConfig } from '../src/models/llama-config';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l2c-llama-save-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('save -> fromPretrained gives the same config, weights and outputs', async () => {
  const tok = trainBpeTokenizer(['a dog runs on the grass', 'two cats sleep on a red sofa', 'a man rides a bike'], { vocabSize: 300, minFrequency: 1 });
  const cfg = tinyLlamaConfig({ hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: tok.vocabSize, bosTokenId: tok.bosId, eosTokenId: tok.eosId, padTokenId: tok.padId });
  expect(parseLlamaConfig(llamaConfigToHf(cfg))).toEqual(cfg);
  const enc = new LlamaEncoder(cfg, { seed: 3 });
  const dir = path.join(tmp, 'm');
  await saveLlamaPretrained(enc, dir, tok);
  expect(fs.readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
  const back = await LlamaEncoder.fromPretrained(dir);
  const ids = tensor(new Int32Array([5, 9, 13, 40, 2, 7, 8, 0]), [2, 4], { dtype: 'int32' });
  const mask = tensor(new Int32Array([1, 1, 1, 1, 1, 1, 1, 0]), [2, 4], { dtype: 'int32' });
  const a = noGrad(() => enc.forward(ids, mask)).toArray();
  const b = noGrad(() => back.forward(ids, mask)).toArray();
  expect(Array.from(b)).toEqual(Array.from(a));
  const tok2 = Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
  expect(tok2.encode('a dog sleeps')).toEqual(tok.encode('a dog sleeps'));
  enc.withLora({ r: 2, seed: 1 });
  await expect(saveLlamaPretrained(enc, path.join(tmp, 'x'))).rejects.toThrow(/LoRA adapters/);
});
