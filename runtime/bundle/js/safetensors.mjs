// safetensors (https://github.com/huggingface/safetensors) read and written in plain JavaScript:
// an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, __metadata__},
// then the tensors' bytes end to end. Tensors are {dtype: 'float32' | 'int64' | ..., shape, data: TypedArray}.

const CODES = { float32: 'F32', float64: 'F64', int64: 'I64', int32: 'I32', uint8: 'U8', bool: 'BOOL', int8: 'I8', float16: 'F16' };
const NAMES = Object.fromEntries(Object.entries(CODES).map(([k, v]) => [v, k]));
const ARRAYS = { float32: Float32Array, float64: Float64Array, int64: BigInt64Array, int32: Int32Array, uint8: Uint8Array,
  bool: Uint8Array, int8: Int8Array, float16: Uint16Array };

export class SafetensorsError extends Error {}

/** Parse safetensors bytes (Uint8Array or ArrayBuffer) into {tensors: {name: tensor}, metadata}. */
export function parseSafetensors(input) {
  const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
  if (bytes.length < 8) throw new SafetensorsError(`not a safetensors file: ${bytes.length} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (8 + n > bytes.length) throw new SafetensorsError(`safetensors header of ${n} bytes does not fit in ${bytes.length}`);
  let header;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw new SafetensorsError(`safetensors header is not JSON (${e.message})`);
  }
  const base = 8 + n;
  const tensors = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const dtype = NAMES[info.dtype];
    if (!dtype) throw new SafetensorsError(`tensor '${name}': dtype ${info.dtype} is not supported`);
    const [start, end] = info.data_offsets;
    const Ctor = ARRAYS[dtype];
    const count = info.shape.reduce((a, b) => a * b, 1);
    if (end - start !== count * Ctor.BYTES_PER_ELEMENT || base + end > bytes.length) {
      throw new SafetensorsError(`tensor '${name}': ${end - start} bytes at ${start} do not hold shape [${info.shape}] of ${dtype}`);
    }
    // a copy: the data may not sit at an offset the typed array's alignment allows
    const data = new Ctor(bytes.slice(base + start, base + end).buffer);
    tensors[name] = { dtype, shape: info.shape.slice(), data };
  }
  return { tensors, metadata: header.__metadata__ || {} };
}

/** Serialize {name: tensor} (and string metadata) to safetensors bytes (Uint8Array). */
export function writeSafetensors(tensors, metadata = null) {
  const names = Object.keys(tensors).sort();
  const header = {};
  if (metadata) header.__metadata__ = Object.fromEntries(Object.entries(metadata).map(([k, v]) => [k, String(v)]));
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    if (!CODES[t.dtype]) throw new SafetensorsError(`tensor '${name}': dtype ${t.dtype} cannot be written`);
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== count) throw new SafetensorsError(`tensor '${name}': ${t.data.length} values for shape [${t.shape}]`);
    header[name] = { dtype: CODES[t.dtype], shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + new TextEncoder().encode(json).length) % 8)) % 8); // the data 8-byte aligned
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const name of names) {
    const d = tensors[name].data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at);
    at += d.byteLength;
  }
  return out;
}
