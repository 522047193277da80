// Reading a WebAssembly component binary far enough to run it on a core wasm
// engine: which core module inside it is the main one, and that module's
// function signatures (to check them against the canonical ABI's flattening of
// the WIT before the first call). Nothing here executes anything.
//
// Binary format: the Component Model's Binary.md (a component is a preamble and
// sections; section 1 is a core module, given whole) and the core spec's binary
// format (sections 1 type, 2 import, 3 function, 7 export).

const MAGIC = [0x00, 0x61, 0x73, 0x6d];
const CORE_VERSION = [0x01, 0x00, 0x00, 0x00];
// Component preamble: version 0x0d (the stable pre-1.0 encoding), layer 1.
const COMPONENT_LAYER = [0x01, 0x00];

class Reader {
  constructor(bytes, pos = 0, end = bytes.length) {
    this.b = bytes;
    this.pos = pos;
    this.end = end;
  }

  byte() {
    if (this.pos >= this.end) throw new Error('unexpected end of the binary');
    return this.b[this.pos++];
  }

  u32() {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.byte();
      result |= (b & 0x7f) << shift;
      if (!(b & 0x80)) break;
      shift += 7;
      if (shift > 28) {
        // The fifth byte may carry only the top 4 bits.
        const last = this.byte();
        if (last > 0x0f) throw new Error('u32 LEB128 out of range');
        result |= last << 28;
        break;
      }
    }
    return result >>> 0;
  }

  name() {
    const n = this.u32();
    if (this.pos + n > this.end) throw new Error('name runs past its section');
    const s = new TextDecoder('utf-8', { fatal: true }).decode(this.b.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }

  /** Each section: {id, start, end} (the content, without id and size). */
  *sections() {
    while (this.pos < this.end) {
      const id = this.byte();
      const size = this.u32();
      const start = this.pos;
      const end = start + size;
      if (end > this.end) throw new Error(`section ${id} runs past the end of the binary`);
      this.pos = end;
      yield { id, start, end };
    }
  }
}

const startsWith = (bytes, at, prefix) => prefix.every((b, i) => bytes[at + i] === b);

/** The names a core module exports, by kind ('func', 'table', 'memory', 'global', 'tag'). */
function coreExports(bytes) {
  const r = new Reader(bytes, 8);
  const out = [];
  for (const s of r.sections()) {
    if (s.id !== 7) continue;
    const e = new Reader(bytes, s.start, s.end);
    for (let n = e.u32(); n > 0; n--) {
      const name = e.name();
      const kind = ['func', 'table', 'memory', 'global', 'tag'][e.byte()] ?? 'unknown';
      out.push({ name, kind, index: e.u32() });
    }
  }
  return out;
}

/**
 * The main core module of a component binary: the core module section (at the
 * component's top level) that exports `memory` and `cabi_realloc`. Returns a
 * copy of its bytes. Throws an Error saying what is wrong otherwise.
 * @param {Uint8Array} bytes the component
 * @param {string} [what] how to name the binary in errors
 */
export function mainCoreModule(bytes, what = 'the component') {
  if (!(bytes instanceof Uint8Array) || bytes.length < 8 || !startsWith(bytes, 0, MAGIC)) {
    throw new Error(`${what} is not a WebAssembly binary`);
  }
  if (startsWith(bytes, 4, CORE_VERSION)) {
    throw new Error(`${what} is a core module, not a component`);
  }
  if (!startsWith(bytes, 6, COMPONENT_LAYER)) {
    throw new Error(`${what} is not a WebAssembly component (unknown layer ${bytes[6]}.${bytes[7]})`);
  }
  const r = new Reader(bytes, 8);
  const candidates = [];
  let modules = 0;
  for (const s of r.sections()) {
    if (s.id !== 1) continue;
    modules++;
    const module = bytes.subarray(s.start, s.end);
    if (!startsWith(module, 0, MAGIC) || !startsWith(module, 4, CORE_VERSION)) {
      throw new Error(`${what}: core module section ${modules} is not a core module`);
    }
    const exports = coreExports(module);
    const has = (name, kind) => exports.some((e) => e.name === name && e.kind === kind);
    if (has('memory', 'memory') && has('cabi_realloc', 'func')) candidates.push(module);
  }
  if (candidates.length !== 1) {
    throw new Error(
      `${what}: expected one core module exporting \`memory\` and \`cabi_realloc\` among its ${modules} core modules, found ${candidates.length}`,
    );
  }
  return candidates[0].slice();
}

const VALTYPE = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x7b: 'v128', 0x70: 'funcref', 0x6f: 'externref' };

function valtype(r) {
  const t = VALTYPE[r.byte()];
  if (!t) throw new Error('unsupported value type in a function signature');
  return t;
}

/**
 * The core signature of every imported and exported function of a core module:
 * {imports: Map<"module\0name", {params, results}>, exports: Map<name, {params, results}>},
 * each type spelled 'i32' | 'i64' | 'f32' | 'f64'.
 */
export function coreSignatures(bytes) {
  const r = new Reader(bytes, 8);
  const types = [];
  const funcTypes = []; // function index → type index (imports first)
  const imports = new Map();
  const exportIndex = new Map();
  for (const s of r.sections()) {
    const e = new Reader(bytes, s.start, s.end);
    if (s.id === 1) {
      for (let n = e.u32(); n > 0; n--) {
        const form = e.byte();
        if (form !== 0x60) throw new Error(`unsupported type form 0x${form.toString(16)} (only plain function types)`);
        const params = [];
        for (let k = e.u32(); k > 0; k--) params.push(valtype(e));
        const results = [];
        for (let k = e.u32(); k > 0; k--) results.push(valtype(e));
        types.push({ params, results });
      }
    } else if (s.id === 2) {
      for (let n = e.u32(); n > 0; n--) {
        const module = e.name();
        const name = e.name();
        const kind = e.byte();
        if (kind === 0x00) {
          const t = e.u32();
          imports.set(`${module}\0${name}`, types[t]);
          funcTypes.push(t);
        } else if (kind === 0x01) {
          e.byte(); // reftype
          limits(e);
        } else if (kind === 0x02) {
          limits(e);
        } else if (kind === 0x03) {
          e.byte();
          e.byte();
        } else if (kind === 0x04) {
          e.byte();
          e.u32();
        } else {
          throw new Error(`unknown import kind ${kind}`);
        }
      }
    } else if (s.id === 3) {
      for (let n = e.u32(); n > 0; n--) funcTypes.push(e.u32());
    } else if (s.id === 7) {
      for (let n = e.u32(); n > 0; n--) {
        const name = e.name();
        const kind = e.byte();
        const index = e.u32();
        if (kind === 0x00) exportIndex.set(name, index);
      }
    }
  }
  const exports = new Map();
  for (const [name, index] of exportIndex) exports.set(name, types[funcTypes[index]]);
  return { imports, exports };
}

function limits(r) {
  const flags = r.byte();
  r.u32();
  if (flags & 0x01) r.u32();
}
