// onnxforge-train: train an onnxforge training bundle with ONNX Runtime, in a browser tab
// (onnxruntime-web: WASM, or WebGPU when the browser offers it) or in Node.js (onnxruntime-node).
//
//   import { BundleTrainer } from './onnxforge-train.mjs';
//   const trainer = await BundleTrainer.open(ort, name => fetchBytes(name), { backend: 'wasm' });
//   trainer.on('step', ({ step, loss }) => ...);   // also 'epoch', 'done'
//   const result = await trainer.train();          // {steps, losses, val_accuracy, backend, weights, ...}
//   const weights = trainer.exportWeights();       // .safetensors bytes, the model's parameter names
//   const model = trainer.trainedModel();          // model.onnx bytes with the trained weights
//
// The loop follows manifest.json: the learning-rate schedule, AdamW's per-step scalars (double,
// then float32), the 1-based step count, the dropout seed of each epoch, the packing of the
// parameters into flat buffers and the order of the examples are the ones `onnxforge train
// --backend onnx` uses, so both train to the same weights. The carried state (parameters, optimizer
// moments, running statistics) stays in ONNX Runtime tensors from step to step: each step's outputs
// are the next step's inputs; the scalar inputs are tensors over buffers rewritten in place.

import { parseSafetensors, writeSafetensors } from './safetensors.mjs';

export { parseSafetensors, writeSafetensors };

export class BundleError extends Error {}

const P = 2147483647n;

/** The learning rate of 0-based `step` (onnxforge.runtime.training.schedules.learning_rate). */
export function learningRate(kind, base, step, total, warmup = 0) {
  if (warmup > 0 && step < warmup) return base * (step + 1) / warmup;
  if (kind === 'constant') return base;
  const span = Math.max(total - warmup, 1);
  const progress = Math.min(Math.max(step - warmup, 0) / span, 1.0);
  if (kind === 'linear') return base * (1.0 - progress);
  if (kind === 'cosine') return base * 0.5 * (1.0 + Math.cos(Math.PI * progress));
  throw new BundleError(`unknown schedule '${kind}'`);
}

/** AdamW's per-step scalars [k1, k2, decay] for 1-based step `t`, in double precision. */
export function adamwScalars(lr, t, weightDecay, betas = [0.9, 0.999], eps = 1e-8) {
  const [b1, b2] = betas;
  const den = lr * Math.sqrt(1.0 - b2 ** t) * (1.0 - b1);
  const k1 = den ? (1.0 - b1 ** t) * Math.sqrt(1.0 - b2) / den : Infinity;
  return [k1, k1 * eps / Math.sqrt(1.0 - b2), 1.0 - lr * weightDecay];
}

/** The dropout seed input of 1-based `epoch`: (seed * 100003 + epoch) mod 2^31 - 1, as a BigInt. */
export function dropoutSeed(seed, epoch) {
  const v = BigInt(seed) * 100003n + BigInt(epoch);
  return ((v % P) + P) % P;
}

const size = (shape) => shape.reduce((a, b) => a * b, 1);

/** A bundle's files: the manifest and a reader `read(name) -> Promise<Uint8Array>`. */
export async function openBundle(read) {
  const text = new TextDecoder().decode(await read('manifest.json'));
  const manifest = JSON.parse(text);
  if (manifest.format !== 'onnxforge-training-bundle') throw new BundleError('manifest.json is not an onnxforge training bundle');
  if (manifest.format_version > 1) throw new BundleError(`bundle format ${manifest.format_version} is newer than this library (1)`);
  return { manifest, read };
}

/** A dataset of the bundle ({inputs: {name: typed array}, rowSizes, target, order, examples}). */
export async function loadData(bundle, split) {
  const info = bundle.manifest.data && bundle.manifest.data[split];
  if (!info) return null;
  const tensors = await readTensors(bundle, info.file);
  const inputs = {};
  const shapes = {};
  const dtypes = {};
  for (const [key, t] of Object.entries(tensors)) {
    if (key.startsWith('input/')) { inputs[key.slice(6)] = t.data; shapes[key.slice(6)] = t.shape; dtypes[key.slice(6)] = t.dtype; }
  }
  return { inputs, shapes, dtypes, target: tensors.target, order: tensors.order || null, examples: info.examples };
}

/** The tensors of a bundle's .safetensors file; a file that is not one is an error naming it. */
export async function readTensors(bundle, file) {
  try {
    return parseSafetensors(await bundle.read(file)).tensors;
  } catch (e) {
    throw new BundleError(`${file}: ${e.message}`);
  }
}

class Emitter {
  constructor() { this.handlers = {}; }
  on(name, fn) { (this.handlers[name] ||= []).push(fn); return this; }
  emit(name, detail) { for (const fn of this.handlers[name] || []) fn(detail); }
}

export class BundleTrainer extends Emitter {
  /** Open the bundle read by `read` with the ORT module `ort` (onnxruntime-web or -node).
   *  options: backend ('wasm' | 'webgpu' | 'cpu'), sessionOptions, yieldEvery (ms between yields
   *  to the event loop, for a page to repaint), trainData/valData (datasets to use instead). */
  static async open(ort, read, options = {}) {
    const bundle = await openBundle(read);
    const t = new BundleTrainer(ort, bundle, options);
    await t.init();
    return t;
  }

  constructor(ort, bundle, options = {}) {
    super();
    this.ort = ort;
    this.bundle = bundle;
    this.manifest = bundle.manifest;
    this.options = options;
    this.backend = options.backend || 'wasm';
    this.steps = 0;
    this.epoch = 0;
    this.losses = [];
    this.history = [];
  }

  async init() {
    const m = this.manifest;
    const file = (m.step_for_backend && m.step_for_backend[this.backend]) || m.step.file;
    this.stepInfo = file === m.step.file ? m.step : m.step_variants[file];
    const providers = this.backend === 'cpu' ? ['cpu'] : [this.backend];
    const so = { executionProviders: providers, ...(this.options.sessionOptions || {}) };
    this.session = await this.ort.InferenceSession.create(await this.bundle.read(this.stepInfo.file), so);
    this.evalSession = null;
    this.evalSessionOptions = so;
    const initial = await readTensors(this.bundle, m.parameters.file);
    const moments = await readTensors(this.bundle, m.optimizer.file);
    this.initial = initial;
    this.loadNamed({ ...initial, ...moments }, 0);
    const s = this.stepInfo.scalars;
    this.scalarBuffers = { lr: new Float32Array(1), step: new Float32Array(1), seed: new BigInt64Array(1),
      adamw: s.adamw.map(() => new Float32Array(1)) };
    const T = (type, buf) => new this.ort.Tensor(type, buf, []);
    this.scalarFeeds = { [s.lr]: T('float32', this.scalarBuffers.lr), [s.step]: T('float32', this.scalarBuffers.step) };
    if (s.seed) this.scalarFeeds[s.seed] = T('int64', this.scalarBuffers.seed);
    s.adamw.forEach((name, i) => { this.scalarFeeds[name] = T('float32', this.scalarBuffers.adamw[i]); });
    this.batcher = new Batcher(this.ort, this.stepInfo);
    this.train_ = this.options.trainData || await loadData(this.bundle, 'train');
    this.val = this.options.valData || await loadData(this.bundle, 'val');
  }

  // -- state ---------------------------------------------------------------------------------
  /** Write named values (parameters, unscaled optimizer moments, statistics) into the state tensors. */
  loadNamed(values, steps = null) {
    const current = this.state ? this.named() : {};
    this.state = {};
    for (const e of this.stepInfo.state) {
      const flat = new Float32Array(size(e.shape));
      for (const mem of e.members) {
        const v = values[mem.name] || (current[mem.name] && { data: current[mem.name] });
        if (!v) throw new BundleError(`no value for '${mem.name}' (state input '${e.input}')`);
        if (v.data.length !== mem.size) throw new BundleError(`'${mem.name}': ${v.data.length} values, the bundle expects ${mem.size}`);
        for (let i = 0; i < mem.size; i++) flat[mem.offset + i] = v.data[i] / e.scale; // double divide, float32 store
      }
      this.state[e.input] = new this.ort.Tensor('float32', flat, e.shape);
    }
    if (steps !== null) this.steps = steps;
  }

  /** The carried values by name ({name: Float32Array}), unpacked and unscaled. */
  named() {
    const out = {};
    for (const e of this.stepInfo.state) {
      const data = this.state[e.input].data;
      for (const mem of e.members) {
        const v = data.subarray(mem.offset, mem.offset + mem.size);
        out[mem.name] = e.scale === 1 ? v : Float32Array.from(v, (x) => x * e.scale);
      }
    }
    return out;
  }

  /** Every parameter and running statistic of the model ({name: {dtype, shape, data}}), trained values. */
  weights() {
    const named = this.named();
    const out = {};
    for (const [name, t] of Object.entries(this.initial)) out[name] = { dtype: 'float32', shape: t.shape, data: named[name] || t.data };
    return out;
  }

  /** The trained weights as .safetensors bytes (the names of model.onnx: `onnxforge weights import` takes them). */
  exportWeights() {
    return writeSafetensors(this.weights(), { format: 'onnxforge', step: this.steps });
  }

  /** Weights and optimizer state with the step count: continue later with loadCheckpoint. */
  saveCheckpoint() {
    const named = this.named();
    const tensors = this.weights();
    for (const o of this.manifest.optimizer.state) tensors[o.name] = { dtype: 'float32', shape: o.shape, data: named[o.name] };
    return writeSafetensors(tensors, { format: 'onnxforge-training-bundle-checkpoint', step: this.steps, epoch: this.epoch });
  }

  loadCheckpoint(bytes) {
    const { tensors, metadata } = parseSafetensors(bytes);
    for (const [name, t] of Object.entries(tensors)) {
      const want = this.initial[name] || this.manifest.optimizer.state.find((o) => o.name === name);
      if (!want) throw new BundleError(`the checkpoint holds '${name}', which this bundle does not have`);
      if (size(want.shape) !== t.data.length) throw new BundleError(`checkpoint '${name}': shape [${t.shape}], the bundle's is [${want.shape}]`);
    }
    this.loadNamed(tensors, Number(metadata.step || 0));
    this.epoch = Number(metadata.epoch || 0);
  }

  /** model.onnx with the trained weights (bytes), see writeWeightsInto. */
  async trainedModel() {
    return writeWeightsInto(await this.bundle.read(this.manifest.model.inference_model), this.weights(), this.manifest);
  }

  // -- steps ---------------------------------------------------------------------------------
  /** One training step on `feeds` at rate `lr`: returns the loss. */
  async step(feeds, lr) {
    const sb = this.scalarBuffers;
    const t = this.steps + 1;
    sb.lr[0] = lr;
    sb.step[0] = t;
    if (sb.adamw.length) {
      const k = adamwScalars(lr, t, this.manifest.adamw.weight_decay, this.manifest.adamw.betas, this.manifest.adamw.eps);
      k.forEach((v, i) => { sb.adamw[i][0] = v; });
    }
    const out = await this.session.run({ ...feeds, ...this.scalarFeeds, ...this.state });
    for (const e of this.stepInfo.state) this.state[e.input] = out[e.output];
    this.steps = t;
    return out[this.stepInfo.loss].data[0];
  }

  /** Train the remaining epochs (to manifest.training.epochs, or `epochs`); returns the result. */
  async train({ epochs = null } = {}) {
    const m = this.manifest;
    const cfg = m.training;
    const data = this.train_;
    if (!data) throw new BundleError('the bundle has no training data (bundle it with --data)');
    const last = epochs || cfg.epochs;
    const n = data.examples;
    const b = m.batch.size;
    const stop = m.batch.drop_last ? n - (n % b) : n;
    const perEpoch = Math.ceil(stop / b);
    const total = perEpoch * cfg.epochs;
    const rows = new Int32Array(n);
    const t0 = now();
    let stepsDone = 0;
    let lastYield = now();
    while (this.epoch < last) {
      const epoch = this.epoch + 1;
      if (this.stepInfo.scalars.seed) this.scalarBuffers.seed[0] = dropoutSeed(cfg.seed, epoch);
      if (data.order && cfg.shuffle) rows.set(data.order.data.subarray((epoch - 1) * n, epoch * n));
      else for (let i = 0; i < n; i++) rows[i] = i;
      let lossSum = 0;
      const e0 = now();
      for (let start = 0; start < stop; start += b) {
        const at = rows.subarray(start, Math.min(start + b, stop));
        const lr = learningRate(m.schedule.kind, m.schedule.base_lr, this.steps, total, m.schedule.warmup_steps);
        const loss = await this.step(this.batcher.feeds(data, at), lr);
        this.losses.push(loss);
        lossSum += loss * at.length;
        stepsDone++;
        this.emit('step', { step: this.steps, epoch, loss, lr, total });
        if (this.options.yieldEvery && now() - lastYield > this.options.yieldEvery) {
          await new Promise((r) => setTimeout(r, 0));
          lastYield = now();
        }
      }
      const seconds = (now() - e0) / 1000;
      this.epoch = epoch;
      const record = { epoch, loss: lossSum / stop, steps_per_s: perEpoch / seconds, seconds };
      if (this.val) Object.assign(record, prefixed(await this.evaluate(this.val)));
      this.history.push(record);
      this.emit('epoch', record);
    }
    const seconds = (now() - t0) / 1000;
    const result = this.result({ seconds, steps_per_s: stepsDone / seconds });
    this.emit('done', result);
    return result;
  }

  result(extra = {}) {
    const last = this.history[this.history.length - 1] || {};
    const weights = {};
    for (const [name, t] of Object.entries(this.weights())) weights[name] = Array.from(t.data);
    return { steps: this.steps, epochs: this.epoch, losses: this.losses.slice(), val_loss: last.val_loss ?? null,
      val_accuracy: last.val_accuracy ?? null, backend: this.backend, history: this.history, ...extra, weights };
  }

  /** Loss (and accuracy for a classifier) of the current weights on a dataset, inference semantics. */
  async evaluate(data = this.val, batch = 512) {
    return evaluate(this, data, batch);
  }
}

/** model.onnx bytes with each parameter's raw float32 bytes overwritten at the offsets the
 *  manifest records (same length: no protobuf length changes, no protobuf library). */
function writeWeightsInto(model, weights, manifest) {
  const bytes = model.slice();
  for (const [name, [offset, length]] of Object.entries(manifest.model.weight_offsets)) {
    const d = weights[name].data;
    if (d.byteLength !== length) throw new BundleError(`'${name}': ${d.byteLength} bytes, model.onnx holds ${length}`);
    bytes.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), offset);
  }
  return bytes;
}

/** `trainer.evaluate`: the evaluation model on the current weights, in batches of `batch`. */
async function evaluate(trainer, data, batch) {
  const ev = trainer.manifest.eval;
  trainer.evalSession ||= await trainer.ort.InferenceSession.create(await trainer.bundle.read(ev.file), trainer.evalSessionOptions);
  const named = trainer.named();
  const params = {};
  const shapes = Object.fromEntries(trainer.stepInfo.state.flatMap((e) => e.members.map((mem) => [mem.name, mem.shape])));
  for (const name of ev.state) params[name] = new trainer.ort.Tensor('float32', named[name], shapes[name]);
  const classify = trainer.manifest.model.task !== 'regression' && data.target.dtype === 'int64';
  let lossSum = 0;
  let correct = 0;
  for (let start = 0; start < data.examples; start += batch) {
    const rows = Int32Array.from({ length: Math.min(batch, data.examples - start) }, (_, i) => start + i);
    const feeds = trainer.batcher.feeds(data, rows);
    feeds[ev.target] = feeds[trainer.stepInfo.target];
    if (ev.target !== trainer.stepInfo.target) delete feeds[trainer.stepInfo.target];
    const out = await trainer.evalSession.run({ ...feeds, ...params });
    lossSum += out[ev.loss].data[0] * rows.length;
    if (classify) correct += countCorrect(out[ev.output], feeds[ev.target].data);
  }
  const result = { loss: lossSum / data.examples };
  if (classify) result.accuracy = correct / data.examples;
  return result;
}

/** A step's feeds from rows of a dataset: views of the data when the rows are consecutive, else
 *  gathered into buffers reused step after step. */
class Batcher {
  constructor(ort, stepInfo) {
    this.ort = ort;
    this.stepInfo = stepInfo;
    this.buffers = {};
  }

  feeds(data, rows) {
    const feeds = {};
    const b = rows.length;
    for (const name of this.stepInfo.feeds) {
      const src = data.inputs[name];
      const shape = data.shapes[name];
      const row = size(shape.slice(1));
      const dtype = (data.dtypes && data.dtypes[name]) || 'float32'; // int64 token ids feed as BigInt64Array
      feeds[name] = new this.ort.Tensor(dtype, gather(src, rows, row, this.buffer(name, b * row, src.constructor)), [b, ...shape.slice(1)]);
    }
    const tgt = data.target;
    const trow = size(tgt.shape.slice(1));
    const Ctor = tgt.dtype === 'int64' ? BigInt64Array : Float32Array;
    feeds[this.stepInfo.target] = new this.ort.Tensor(tgt.dtype, gather(tgt.data, rows, trow, this.buffer('#target', b * trow, Ctor)), [b, ...tgt.shape.slice(1)]);
    return feeds;
  }

  buffer(key, n, Ctor) {
    const k = `${key}:${n}`;
    return (this.buffers[k] ||= new Ctor(n));
  }
}

function prefixed(r) {
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [`val_${k}`, v]));
}

function gather(src, rows, row, out) {
  const contiguous = rows.length > 0 && rows[rows.length - 1] - rows[0] === rows.length - 1 && isRun(rows);
  if (contiguous) return src.subarray(rows[0] * row, (rows[0] + rows.length) * row);
  for (let i = 0; i < rows.length; i++) out.set(src.subarray(rows[i] * row, (rows[i] + 1) * row), i * row);
  return out;
}

function isRun(rows) {
  for (let i = 1; i < rows.length; i++) if (rows[i] !== rows[i - 1] + 1) return false;
  return true;
}

function countCorrect(scores, labels) {
  const [n, c] = [scores.dims[0], size(scores.dims.slice(1))];
  const d = scores.data;
  let correct = 0;
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < c; j++) if (d[i * c + j] > d[i * c + best]) best = j;
    if (BigInt(best) === BigInt(labels[i])) correct++;
  }
  return correct;
}

function now() {
  return globalThis.performance ? performance.now() : Date.now();
}
