// A small canonical ABI engine: component-level values <-> a core module's
// linear memory and flat parameters, as the Component Model's CanonicalABI.md
// defines them (alignment, size, flattening with MAX_FLAT_PARAMS = 16 and
// MAX_FLAT_RESULTS = 1, load/store, lift/lower, own/borrow handles, post-return).
// It covers the types wit/relay.wit uses (bool, u8/u16/u32/u64/s64, string,
// list, record, variant, enum, option, result, own/borrow) with UTF-8 strings,
// and exports called from the host ("lift" context: the callee returns one i32
// pointing at its results when they flatten to more than one value).
//
// JS values are those jco gave the package before: records are objects with
// camelCase keys, variants and results `{tag, val}` (kebab-case tags), enums
// their kebab-case label, `option` none is `undefined` (null accepted when
// lowering), u64/s64 are BigInt (Numbers accepted when lowering), list<u8> a
// Uint8Array.
//
// A `Context` is one instance's view of its memory, allocator and handle table.
// Errors: a host value that does not fit its type is a TypeError/RangeError
// thrown while lowering (before the guest function runs); anything wrong in
// what the guest hands back (a pointer out of bounds, invalid UTF-8, an unknown
// discriminant or handle) is a WebAssembly.RuntimeError, a trap.

import { Buffer, isUtf8 } from 'node:buffer';

export const MAX_FLAT_PARAMS = 16;
export const MAX_FLAT_RESULTS = 1;

const alignTo = (n, a) => Math.ceil(n / a) * a;
const camel = (name) => name.replace(/-([a-z0-9])/g, (_, c) => c.toUpperCase());

/** A trap: the guest (or what it handed back) broke the ABI's rules. */
export function trap(message) {
  return new WebAssembly.RuntimeError(message);
}

// ---- types ------------------------------------------------------------------------
//
// Each type is an object with: kind, size, align, flat (core types, 'i32'|'i64'),
// load(cx, ptr), store(cx, ptr, v), lowerFlat(cx, v, out) (pushes core values),
// and, for one-value types, liftFlat(cx, value).

function int(kind, size, signed) {
  const flat = size === 8 ? ['i64'] : ['i32'];
  const bits = size * 8;
  const big = size === 8;
  const min = signed ? -(2 ** (bits - 1)) : 0;
  const max = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
  const bmin = signed ? -(1n << BigInt(bits - 1)) : 0n;
  const bmax = signed ? (1n << BigInt(bits - 1)) - 1n : (1n << BigInt(bits)) - 1n;
  // Host value → the integer, checked (a TypeError or RangeError, as jco threw).
  const check = big
    ? (v) => {
        let b;
        if (typeof v === 'bigint') b = v;
        else if (typeof v === 'number' && Number.isInteger(v)) b = BigInt(v);
        else throw new TypeError(`expected an integer (${kind}), got ${typeof v === 'number' ? v : typeof v}`);
        if (b < bmin || b > bmax) throw new RangeError(`${v} is out of range for ${kind}`);
        return b;
      }
    : (v) => {
        let n = v;
        if (typeof n === 'bigint') n = Number(n);
        if (typeof n !== 'number' || !Number.isInteger(n)) throw new TypeError(`expected an integer (${kind}), got ${typeof v === 'number' ? v : typeof v}`);
        if (n < min || n > max) throw new RangeError(`${v} is out of range for ${kind}`);
        return n;
      };
  const t = { kind, size, align: size, flat, check };
  switch (kind) {
    case 'u8':
      t.load = (cx, p) => cx.dv.getUint8(p);
      t.store = (cx, p, v) => cx.dv.setUint8(p, check(v));
      t.liftFlat = (cx, x) => x & 0xff;
      break;
    case 'u16':
      t.load = (cx, p) => cx.dv.getUint16(p, true);
      t.store = (cx, p, v) => cx.dv.setUint16(p, check(v), true);
      t.liftFlat = (cx, x) => x & 0xffff;
      break;
    case 'u32':
      t.load = (cx, p) => cx.dv.getUint32(p, true);
      t.store = (cx, p, v) => cx.dv.setUint32(p, check(v), true);
      t.liftFlat = (cx, x) => x >>> 0;
      break;
    case 's32':
      t.load = (cx, p) => cx.dv.getInt32(p, true);
      t.store = (cx, p, v) => cx.dv.setInt32(p, check(v), true);
      t.liftFlat = (cx, x) => x | 0;
      break;
    case 'u64':
      t.load = (cx, p) => cx.dv.getBigUint64(p, true);
      t.store = (cx, p, v) => cx.dv.setBigUint64(p, check(v), true);
      t.liftFlat = (cx, x) => BigInt.asUintN(64, x);
      break;
    case 's64':
      t.load = (cx, p) => cx.dv.getBigInt64(p, true);
      t.store = (cx, p, v) => cx.dv.setBigInt64(p, check(v), true);
      t.liftFlat = (cx, x) => BigInt.asIntN(64, x);
      break;
    default:
      throw new Error(`no integer type ${kind}`);
  }
  // A u64 crosses a flat i64 parameter as a BigInt; V8 wraps it to 64 bits.
  t.lowerFlat = (cx, v, out) => out.push(check(v));
  return t;
}

export const u8 = int('u8', 1, false);
export const u16 = int('u16', 2, false);
export const u32 = int('u32', 4, false);
export const s32 = int('s32', 4, true);
export const u64 = int('u64', 8, false);
export const s64 = int('s64', 8, true);

function checkBool(v) {
  if (typeof v !== 'boolean') throw new TypeError(`expected a boolean, got ${typeof v}`);
  return v ? 1 : 0;
}
export const bool = {
  kind: 'bool',
  size: 1,
  align: 1,
  flat: ['i32'],
  load: (cx, p) => cx.dv.getUint8(p) !== 0,
  store: (cx, p, v) => cx.dv.setUint8(p, checkBool(v)),
  lowerFlat: (cx, v, out) => out.push(checkBool(v)),
  liftFlat: (cx, x) => x !== 0,
};

/** string: UTF-8, (ptr, byte length); stored with cabi_realloc(0, 0, 1, exact length). */
export const string = {
  kind: 'string',
  size: 8,
  align: 4,
  flat: ['i32', 'i32'],
  load(cx, p) {
    const dv = cx.dv;
    return cx.readString(dv.getUint32(p, true), dv.getUint32(p + 4, true));
  },
  store(cx, p, v) {
    const [ptr, len] = cx.writeString(v);
    cx.dv.setUint32(p, ptr, true);
    cx.dv.setUint32(p + 4, len, true);
  },
  lowerFlat(cx, v, out) {
    const [ptr, len] = cx.writeString(v);
    out.push(ptr, len);
  },
};

/** list<T>; list<u8> is a Uint8Array both ways (a Buffer or an array of bytes is accepted). */
export function list(elem) {
  const bytes = elem === u8;
  const t = { kind: 'list', elem, size: 8, align: 4, flat: ['i32', 'i32'] };
  const lower = (cx, v) => {
    if (bytes) return cx.writeBytes(v);
    if (!Array.isArray(v)) throw new TypeError(`expected an array, got ${typeof v}`);
    const n = v.length;
    const ptr = cx.alloc(elem.align, n * elem.size);
    for (let i = 0; i < n; i++) elem.store(cx, ptr + i * elem.size, v[i]);
    return [ptr, n];
  };
  t.load = (cx, p) => {
    const dv = cx.dv;
    const ptr = dv.getUint32(p, true);
    const n = dv.getUint32(p + 4, true);
    if (bytes) return cx.readBytes(ptr, n);
    cx.bounds(ptr, n * elem.size);
    if (ptr % elem.align) throw trap(`misaligned list at ${ptr}`);
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = elem.load(cx, ptr + i * elem.size);
    return out;
  };
  t.store = (cx, p, v) => {
    const [ptr, n] = lower(cx, v);
    cx.dv.setUint32(p, ptr, true);
    cx.dv.setUint32(p + 4, n, true);
  };
  t.lowerFlat = (cx, v, out) => {
    const [ptr, n] = lower(cx, v);
    out.push(ptr, n);
  };
  return t;
}

/** record: [[kebab-name, type], ...] → an object with camelCase keys. */
export function record(fields) {
  let size = 0;
  let align = 1;
  const offsets = {};
  const fs = fields.map(([name, type]) => {
    size = alignTo(size, type.align);
    const f = { name, key: camel(name), type, offset: size };
    offsets[f.key] = size;
    size += type.size;
    align = Math.max(align, type.align);
    return f;
  });
  size = alignTo(size, align);
  const t = { kind: 'record', fields: fs, offsets, size, align, flat: fs.flatMap((f) => f.type.flat) };
  const object = (v) => {
    if (v === null || typeof v !== 'object') throw new TypeError(`expected an object (record ${fs.map((f) => f.key).join(', ')}), got ${v === null ? 'null' : typeof v}`);
    return v;
  };
  t.load = (cx, p) => {
    const out = {};
    for (const f of fs) out[f.key] = f.type.load(cx, p + f.offset);
    return out;
  };
  t.store = (cx, p, v) => {
    object(v);
    for (const f of fs) f.type.store(cx, p + f.offset, v[f.key]);
  };
  t.lowerFlat = (cx, v, out) => {
    object(v);
    for (const f of fs) f.type.lowerFlat(cx, v[f.key], out);
  };
  return t;
}

function join(a, b) {
  if (a === b) return a;
  if ((a === 'i32' && b === 'f32') || (a === 'f32' && b === 'i32')) return 'i32';
  return 'i64';
}

function discriminant(n) {
  if (n <= 1 << 8) return u8;
  if (n <= 1 << 16) return u16;
  return u32;
}

/**
 * variant: [[kebab-name, type | null], ...] ↔ {tag, val} (no `val` for an empty
 * case). `shape` 'enum' | 'option' | 'result' selects the specialised JS shapes.
 */
export function variant(cases, shape = 'variant') {
  const disc = discriminant(cases.length);
  let caseAlign = 1;
  let caseSize = 0;
  const flat = [];
  for (const [, type] of cases) {
    if (!type) continue;
    caseAlign = Math.max(caseAlign, type.align);
    caseSize = Math.max(caseSize, type.size);
    type.flat.forEach((ft, i) => {
      flat[i] = i < flat.length ? join(flat[i], ft) : ft;
    });
  }
  const payload = alignTo(disc.size, caseAlign);
  const align = Math.max(disc.align, caseAlign);
  const size = alignTo(payload + caseSize, align);
  const index = new Map(cases.map(([name], i) => [name, i]));
  const t = { kind: shape, cases, disc, payload, size, align, flat: ['i32', ...flat] };

  // Host value → [case index, payload value].
  let pick;
  let make;
  if (shape === 'enum') {
    pick = (v) => {
      const i = index.get(v);
      if (i === undefined) throw new TypeError(`${JSON.stringify(v)} is not one of ${cases.map(([n]) => n).join(', ')}`);
      return [i, undefined];
    };
    make = (i) => cases[i][0];
  } else if (shape === 'option') {
    pick = (v) => (v === undefined || v === null ? [0, undefined] : [1, v]);
    make = (i, val) => (i === 0 ? undefined : val);
  } else {
    pick = (v) => {
      if (v === null || typeof v !== 'object') throw new TypeError(`expected {tag, val}, got ${v === null ? 'null' : typeof v}`);
      const i = index.get(v.tag);
      if (i === undefined) throw new TypeError(`unknown case ${JSON.stringify(v.tag)} (expected ${cases.map(([n]) => n).join(', ')})`);
      return [i, v.val];
    };
    make = (i, val) => (cases[i][1] ? { tag: cases[i][0], val } : { tag: cases[i][0] });
  }

  const loadDisc = (cx, p) => {
    const i = disc.load(cx, p);
    if (i >= cases.length) throw trap(`invalid discriminant ${i} (${cases.length} cases)`);
    return i;
  };
  t.load = (cx, p) => {
    const i = loadDisc(cx, p);
    const type = cases[i][1];
    return make(i, type ? type.load(cx, p + payload) : undefined);
  };
  t.store = (cx, p, v) => {
    const [i, val] = pick(v);
    disc.store(cx, p, i);
    const type = cases[i][1];
    if (type) type.store(cx, p + payload, val);
  };
  t.lowerFlat = (cx, v, out) => {
    const [i, val] = pick(v);
    out.push(i);
    const at = out.length;
    const type = cases[i][1];
    if (type) type.lowerFlat(cx, val, out);
    // The case's values into the joined types (i32 → i64 zero-extends), the
    // rest of the variant's width zero.
    for (let k = 0; k < flat.length; k++) {
      const want = flat[k];
      if (at + k < out.length) {
        const have = type.flat[k];
        if (have === 'i32' && want === 'i64') out[at + k] = BigInt(out[at + k] >>> 0);
      } else {
        out.push(want === 'i64' ? 0n : 0);
      }
    }
  };
  if (flat.length === 0) t.liftFlat = (cx, x) => {
    if (x >>> 0 >= cases.length) throw trap(`invalid discriminant ${x >>> 0}`);
    return make(x >>> 0);
  };
  return t;
}

export const enumType = (labels) => variant(labels.map((l) => [l, null]), 'enum');
export const option = (type) => variant([['none', null], ['some', type]], 'option');
export const result = (ok, err) => variant([['ok', ok], ['err', err]], 'result');

/** A resource type; `dtor` names the export that destroys a rep (resources the component defines). */
export function resource(name, { dtor } = {}) {
  return { name, dtor };
}

/** own<R>: an i32 handle in the instance's table; lifted to the resource's rep (the host now owns it). */
export function own(rt) {
  const t = { kind: 'own', rt, size: 4, align: 4, flat: ['i32'] };
  t.load = (cx, p) => cx.handles.take(cx.dv.getUint32(p, true), rt);
  t.liftFlat = (cx, x) => cx.handles.take(x >>> 0, rt);
  t.store = () => {
    throw new TypeError(`passing an own<${rt.name}> to the guest is not supported`);
  };
  t.lowerFlat = t.store;
  return t;
}

/** borrow<R> of a resource the callee defines: lowered as its rep (CanonicalABI.md lower_borrow). */
export function borrow(rt) {
  const t = { kind: 'borrow', rt, size: 4, align: 4, flat: ['i32'] };
  const check = (v) => {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new TypeError(`expected a ${rt.name} rep`);
    return v;
  };
  t.store = (cx, p, v) => cx.dv.setUint32(p, check(v), true);
  t.lowerFlat = (cx, v, out) => out.push(check(v) | 0);
  t.load = () => {
    throw trap(`the guest handed out a borrow<${rt.name}>`);
  };
  return t;
}

// ---- the handle table ---------------------------------------------------------------

/**
 * One component instance's handles (CanonicalABI.md HandleTable): index 0 is
 * never used; freed slots are reused last-in first-out.
 */
export class HandleTable {
  #slots = [null];
  #free = [];

  insert(rt, rep) {
    const i = this.#free.length ? this.#free.pop() : this.#slots.length;
    this.#slots[i] = { rt, rep };
    return i;
  }

  get(i, rt) {
    const h = this.#slots[i];
    if (!h || (rt && h.rt !== rt)) throw trap(`unknown ${rt ? `${rt.name} ` : ''}handle ${i}`);
    return h;
  }

  /** Removes handle `i` (of type `rt`) and returns its rep. */
  take(i, rt) {
    const h = this.get(i, rt);
    this.#slots[i] = null;
    this.#free.push(i);
    return h.rep;
  }
}

// ---- the context ----------------------------------------------------------------------

/** One instance's memory, allocator and handles, for load/store. */
export class Context {
  constructor(memory, realloc) {
    this.memory = memory;
    this.realloc = realloc;
    this.handles = new HandleTable();
    this.refresh();
  }

  /** New views after the memory grew (growing detaches the old buffer). */
  refresh() {
    const buf = this.memory.buffer;
    this.u8 = new Uint8Array(buf);
    this.dv = new DataView(buf);
    this.buf = Buffer.from(buf);
  }

  /** Views that are current: called after every call into the guest. */
  fresh() {
    if (this.u8.byteLength === 0 || this.u8.buffer !== this.memory.buffer) this.refresh();
  }

  bounds(ptr, len) {
    if (ptr + len > this.u8.length) throw trap(`${len} bytes at ${ptr} are outside memory (${this.u8.length} bytes)`);
  }

  /** cabi_realloc(0, 0, align, size): memory the guest owns from the call on. */
  alloc(align, size) {
    if (size === 0) return align; // nothing is read: any aligned, non-null pointer
    const ptr = this.realloc(0, 0, align, size) >>> 0;
    this.fresh();
    if (ptr % align || ptr + size > this.u8.length) throw trap(`cabi_realloc returned ${ptr} for ${size} bytes`);
    return ptr;
  }

  /** A JS string → [ptr, byte length] of its UTF-8 in guest memory. */
  writeString(v) {
    if (typeof v !== 'string') throw new TypeError(`expected a string, got ${v === null ? 'null' : typeof v}`);
    if (v.length === 0) return [1, 0];
    const n = Buffer.byteLength(v, 'utf8');
    const ptr = this.alloc(1, n);
    this.buf.write(v, ptr, n, 'utf8');
    return [ptr, n];
  }

  /** Bytes → [ptr, length] of a copy in guest memory. */
  writeBytes(v) {
    let bytes = v;
    if (!(bytes instanceof Uint8Array)) {
      if (Array.isArray(bytes)) bytes = Uint8Array.from(bytes, (b) => u8.check(b));
      else throw new TypeError(`expected a Uint8Array, got ${v === null ? 'null' : typeof v}`);
    }
    const n = bytes.length;
    if (n === 0) return [1, 0];
    const ptr = this.alloc(1, n);
    this.u8.set(bytes, ptr);
    return [ptr, n];
  }

  /** UTF-8 in guest memory → a JS string; invalid UTF-8 is a trap. */
  readString(ptr, len) {
    if (len === 0) return '';
    this.bounds(ptr, len);
    const view = this.u8.subarray(ptr, ptr + len);
    if (!isUtf8(view)) throw trap(`the guest returned a string that is not UTF-8 (${len} bytes at ${ptr})`);
    return this.buf.toString('utf8', ptr, ptr + len);
  }

  /** A copy of guest bytes, as a Buffer (a Uint8Array). */
  readBytes(ptr, len) {
    if (len === 0) return Buffer.alloc(0);
    this.bounds(ptr, len);
    return Buffer.copyBytesFrom(this.u8, ptr, len);
  }
}

// ---- functions ---------------------------------------------------------------------------

/** CanonicalABI.md flatten_functype(ft, 'lift'): the core signature of an export. */
export function flattenExport(params, results) {
  let flatParams = params.flatMap(([, t]) => t.flat);
  if (flatParams.length > MAX_FLAT_PARAMS) flatParams = ['i32'];
  let flatResults = results ? results.flat : [];
  if (flatResults.length > MAX_FLAT_RESULTS) flatResults = ['i32'];
  return { params: flatParams, results: flatResults };
}

/** flatten_functype(ft, 'lower'): the core signature of an import (results through a pointer). */
export function flattenImport(params, results) {
  let flatParams = params.flatMap(([, t]) => t.flat);
  if (flatParams.length > MAX_FLAT_PARAMS) flatParams = ['i32'];
  let flatResults = results ? results.flat : [];
  if (flatResults.length > MAX_FLAT_RESULTS) {
    flatParams = [...flatParams, 'i32'];
    flatResults = [];
  }
  return { params: flatParams, results: flatResults };
}

/**
 * A host function calling the export `core` (canon lift, seen from the caller):
 * lowers the arguments (flat, or into memory from cabi_realloc past 16 flat
 * values), calls, lifts the result (from the pointer it returns past one flat
 * value), then calls `post` (cabi_post_*) with the core result. `enter()` runs
 * before anything touches the instance and `failed(err)` gets every exception
 * once the guest has been entered (the caller poisons the instance).
 * @returns {(...args) => unknown}
 */
export function lift(cx, { params, results, core, post, enter, failed }) {
  const flatCount = params.reduce((n, [, t]) => n + t.flat.length, 0);
  const viaMemory = flatCount > MAX_FLAT_PARAMS;
  const tuple = viaMemory ? record(params) : null;
  const resultFlat = results ? results.flat.length : 0;
  if (resultFlat === 1 && !results.liftFlat) throw new Error(`no flat lifting for a ${results.kind} result`);
  const liftResult = !results
    ? () => undefined
    : resultFlat > MAX_FLAT_RESULTS
      ? (r) => results.load(cx, r >>> 0)
      : (r) => results.liftFlat(cx, r);
  return (...args) => {
    enter();
    let flat;
    try {
      if (viaMemory) {
        const values = {};
        tuple.fields.forEach((f, i) => {
          values[f.key] = args[i];
        });
        const ptr = cx.alloc(tuple.align, tuple.size);
        tuple.store(cx, ptr, values);
        flat = [ptr];
      } else {
        flat = [];
        for (let i = 0; i < params.length; i++) params[i][1].lowerFlat(cx, args[i], flat);
      }
    } catch (e) {
      // A host value that does not fit its type: refused before the function
      // ran (what cabi_realloc handed out stays the guest's, consistent).
      // Anything else (cabi_realloc trapped) is a trap.
      if ((e instanceof TypeError || e instanceof RangeError) && !(e instanceof WebAssembly.RuntimeError)) throw e;
      throw failed(e);
    }
    try {
      const r = core(...flat);
      cx.fresh();
      const value = liftResult(r);
      if (post) post(r);
      return value;
    } catch (e) {
      throw failed(e);
    }
  };
}
