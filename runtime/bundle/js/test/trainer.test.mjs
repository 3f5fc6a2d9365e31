// The JS library under Node's test runner: `node --test test/` in this folder (pytest runs it:
// tests/runtime/bundle/test_bundle_js.py). Bundles are made with onnxforge (the Python in
// $ONNXFORGE_PYTHON, else python3) and the reference numbers come from onnxforge's own functions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BundleTrainer, adamwScalars, dropoutSeed, learningRate, parseSafetensors, writeSafetensors } from '../onnxforge-train.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const python = process.env.ONNXFORGE_PYTHON || 'python3';
const ortNode = createRequire(path.join(here, '..', 'x.js'))('onnxruntime-node');
const ortWeb = await import('../node_modules/onnxruntime-web/dist/ort.wasm.min.mjs');
ortWeb.env.wasm.numThreads = 1;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'onnxforge-js-'));

function py(code) { // the last line Python prints is the JSON answer
  const lines = execFileSync(python, ['-c', code], { encoding: 'utf8' }).trim().split('\n');
  return JSON.parse(lines[lines.length - 1]);
}

// one Python process makes the bundle and every reference number (each start costs seconds)
const bundle = path.join(tmp, 'b');
const ref = py(`
import json, sys
import onnx
from onnxforge.cli.main import cli
from onnxforge.graphs import mlp
from onnxforge.runtime.bundle.reference import train_bundle
from onnxforge.runtime.training.schedules import learning_rate
from onnxforge.runtime.training.stepgraph.optim import adamw_scalars
from onnxforge.samples import path
onnx.save(mlp(64, [32], 10, dropout=0.2, seed=0), ${JSON.stringify(path.join(tmp, 'mlp.onnx'))})
cli(["bundle", ${JSON.stringify(path.join(tmp, 'mlp.onnx'))}, "-o", ${JSON.stringify(bundle)}, "--data", str(path("digits_train.npz")),
     "--val", str(path("digits_test.npz")), "--epochs", "3", "--batch-size", "64", "--lr", "0.01", "--schedule", "cosine",
     "--warmup-steps", "5", "--seed", "3"], standalone_mode=False)
rates = [[k, w, s, learning_rate(k, 0.003, s, 100, w)] for k in ("constant", "linear", "cosine") for w in (0, 10) for s in range(0, 101, 7)]
adamw = [[lr, t, [float(v) for v in adamw_scalars(lr, t, 0.01).values()]] for lr in (1e-3, 0.03) for t in (1, 2, 10, 1000)]
seeds = [[s, e, (s * 100003 + e) % 2147483647] for s in (0, 3, -5, 2**40) for e in (1, 2, 99)]
weights = {k: v.reshape(-1).tolist() for k, v in train_bundle(${JSON.stringify(bundle)})[0].items()}
sys.stdout.flush()
print("\\n" + json.dumps({"rates": rates, "adamw": adamw, "seeds": seeds, "weights": weights}))`);
const written = {}; // files written here, read back by Python in the last test

const reader = (dir) => async (name) => new Uint8Array(readFileSync(path.join(dir, name)));
const open = (ort, backend, dir = bundle) => BundleTrainer.open(ort, reader(dir), { backend, sessionOptions: backend === 'cpu' ? { intraOpNumThreads: 1 } : {} });

function maxDiff(a, b) {
  let m = 0;
  for (const name of Object.keys(a)) {
    assert.equal(a[name].length, b[name].length, name);
    for (let i = 0; i < a[name].length; i++) m = Math.max(m, Math.abs(a[name][i] - b[name][i]));
  }
  return m;
}

test('the schedule, AdamW scalars and dropout seeds equal the Python reference', () => {
  for (const [kind, warm, step, want] of ref.rates) {
    assert.equal(Math.fround(learningRate(kind, 0.003, step, 100, warm)), Math.fround(want), `${kind} warm-up ${warm} step ${step}`);
  }
  for (const [lr, t, want] of ref.adamw) {
    const got = adamwScalars(lr, t, 0.01).map(Math.fround);
    assert.deepEqual(got, want.map(Math.fround), `lr ${lr} t ${t}`);
  }
  for (const [s, e, want] of ref.seeds) assert.equal(dropoutSeed(s, e), BigInt(want));
});

test('safetensors: written here (read back by Python below), and Python\'s read here', () => {
  const file = path.join(tmp, 'js.safetensors');
  const tensors = { 'a/w': { dtype: 'float32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6.5]) },
    b: { dtype: 'int64', shape: [2], data: BigInt64Array.from([7n, -9n]) } };
  const bytes = writeSafetensors(tensors, { step: 4 });
  writeFileSync(file, bytes);
  written.safetensors = file;
  const params = parseSafetensors(readFileSync(path.join(bundle, 'parameters.safetensors'))).tensors;
  assert.deepEqual(params['fc1.weight'].shape, [32, 64]);
  assert.throws(() => parseSafetensors(new Uint8Array([1, 2, 3])), /not a safetensors file/);
});

test('onnxruntime-web (wasm) and onnxruntime-node train the bundle to the same weights', async () => {
  const web = await open(ortWeb, 'wasm');
  const node = await open(ortNode, 'cpu');
  const [a, b] = [await web.train(), await node.train()];
  assert.equal(a.steps, 69); // 1437 examples, batch 64: 23 steps an epoch, 3 epochs
  assert.ok(maxDiff(a.weights, b.weights) < 1e-5, `max difference ${maxDiff(a.weights, b.weights)}`);
  assert.ok(a.val_accuracy > 0.8, `val accuracy ${a.val_accuracy}`);
  assert.ok(Math.abs(a.val_accuracy - b.val_accuracy) < 0.01);
  // shuffled from the bundle's orders, dropout seeded per epoch, warm-up and cosine, AdamW: the loop
  // Python's tests hold to `train --backend onnx` (reference.py) reaches the same weights
  const reference = ref.weights;
  assert.ok(maxDiff(reference, b.weights) < 1e-4, `Node and Python differ by ${maxDiff(reference, b.weights)}`);
});

test('a checkpoint taken after epoch 1 continues to the uninterrupted weights', async () => {
  const whole = await (await open(ortNode, 'cpu')).train();
  const first = await open(ortNode, 'cpu');
  await first.train({ epochs: 1 });
  const ckpt = first.saveCheckpoint();
  const second = await open(ortNode, 'cpu');
  second.loadCheckpoint(ckpt);
  assert.equal(second.steps, 23);
  assert.equal(second.epoch, 1);
  const rest = await second.train();
  // AdamW's moments are stored as m and v (the carried m / (1 - b1) rounded through float32 and
  // back, as Python's checkpoints do): equal to rounding, not to the bit
  assert.ok(maxDiff(whole.weights, rest.weights) < 1e-6, `max difference ${maxDiff(whole.weights, rest.weights)}`);
  const bad = writeSafetensors({ 'fc1.weight': { dtype: 'float32', shape: [2], data: new Float32Array(2) } });
  assert.throws(() => second.loadCheckpoint(bad), /shape \[2\]/);
});

test('exported weights and the trained model.onnx hold the trained values', async () => {
  const t = await open(ortNode, 'cpu');
  await t.train({ epochs: 1 });
  const w = parseSafetensors(t.exportWeights()).tensors;
  const named = t.weights();
  assert.deepEqual(Object.keys(w).sort(), Object.keys(named).sort());
  assert.deepEqual(Array.from(w['fc2.bias'].data), Array.from(named['fc2.bias'].data));
  const model = path.join(tmp, 'trained.onnx');
  writeFileSync(model, await t.trainedModel());
  written.model = model;
  written.modelWeights = Object.fromEntries(Object.entries(named).map(([k, v]) => [k, Array.from(v.data)]));
});

test('Python reads the safetensors and the trained model.onnx written here', () => {
  const back = py(`
import json
from safetensors import safe_open
from onnxforge.runtime.modelio.files import load_model
from onnxforge.runtime.modelio.weights import model_weights
with safe_open(${JSON.stringify(written.safetensors)}, "np") as f:
    tensors = {k: [list(f.get_tensor(k).shape), str(f.get_tensor(k).dtype), f.get_tensor(k).reshape(-1).tolist()] for k in f.keys()}
    meta = f.metadata()
model = {k: v.reshape(-1).tolist() for k, v in model_weights(load_model(${JSON.stringify(written.model)})).items()}
print(json.dumps({"tensors": tensors, "meta": meta, "model": model}))`);
  assert.deepEqual(back.tensors['a/w'], [[2, 3], 'float32', [1, 2, 3, 4, 5, 6.5]]);
  assert.deepEqual(back.tensors.b, [[2], 'int64', [7, -9]]);
  assert.deepEqual(back.meta, { step: '4' });
  assert.equal(maxDiff(back.model, written.modelWeights), 0);
});
