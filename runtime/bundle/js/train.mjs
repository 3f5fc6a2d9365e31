#!/usr/bin/env node
// Train this bundle in Node.js with onnxruntime-node and print the result as one JSON line:
//   node train.mjs [--epochs N] [--weights-out trained.safetensors] [--model-out trained.onnx]
//                  [--checkpoint-out ckpt.safetensors] [--resume ckpt.safetensors] [--threads N] [--quiet]
// onnxruntime-node is looked for next to the bundle, then from the current folder, then in
// $ONNXFORGE_NODE_MODULES (a node_modules folder):
//   ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.31.1
import { readFile, writeFile, rename } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BundleTrainer } from './onnxforge-train.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

async function loadOrt() {
  const places = [path.join(here, 'x.js'), path.join(process.cwd(), 'x.js')];
  if (process.env.ONNXFORGE_NODE_MODULES) places.push(path.join(process.env.ONNXFORGE_NODE_MODULES, '..', 'x.js'));
  for (const from of places) {
    try {
      return createRequire(from)('onnxruntime-node');
    } catch (e) {
      if (e.code !== 'MODULE_NOT_FOUND') throw e;
    }
  }
  console.error('onnxruntime-node is not installed: run `ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.31.1` '
    + 'in the bundle folder (or set ONNXFORGE_NODE_MODULES to a node_modules folder holding it)');
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { quiet: false };
  const names = { '--epochs': 'epochs', '--weights-out': 'weightsOut', '--model-out': 'modelOut',
    '--checkpoint-out': 'checkpointOut', '--resume': 'resume', '--threads': 'threads' };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--quiet') opts.quiet = true;
    else if (names[argv[i]] && i + 1 < argv.length) opts[names[argv[i]]] = argv[++i];
    else { console.error(`unknown argument '${argv[i]}'; see the comment at the top of train.mjs`); process.exit(2); }
  }
  return opts;
}

async function atomicWrite(file, bytes) {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, bytes);
  await rename(tmp, file);
}

async function main() {
const opts = parseArgs(process.argv.slice(2));
const ort = await loadOrt();
const threads = Number(opts.threads || 1);
const trainer = await BundleTrainer.open(ort, (name) => readFile(path.join(here, name)).then((b) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength)), {
  backend: 'cpu', sessionOptions: { intraOpNumThreads: threads, interOpNumThreads: 1 } });
if (opts.resume) trainer.loadCheckpoint(new Uint8Array(await readFile(opts.resume)));
if (!opts.quiet) {
  trainer.on('epoch', (r) => console.error(`epoch ${r.epoch}: loss ${r.loss.toFixed(4)}`
    + (r.val_accuracy != null ? `, val accuracy ${(100 * r.val_accuracy).toFixed(2)}%` : '') + `, ${r.steps_per_s.toFixed(0)} steps/s`));
}
const result = await trainer.train({ epochs: opts.epochs ? Number(opts.epochs) : null });
result.backend = 'node-cpu';
if (opts.weightsOut) await atomicWrite(opts.weightsOut, trainer.exportWeights());
if (opts.modelOut) await atomicWrite(opts.modelOut, await trainer.trainedModel());
if (opts.checkpointOut) await atomicWrite(opts.checkpointOut, trainer.saveCheckpoint());
process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => { // one line, not a stack: a bad bundle or file is the user's to fix
  console.error(`Error: ${e && e.message ? e.message : e}`);
  process.exit(1);
});
