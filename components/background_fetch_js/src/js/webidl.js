// WebIDL for the bindings: interface objects, prototypes and members with the descriptors
// WebIDL gives them (https://webidl.spec.whatwg.org/#es-interfaces), brand checks through
// internal slots, and the conversions the Background Fetch IDL uses.
//
// This file and the others of src/js/ are joined into one function
// `(native, envId, kind) => {...}`: their helpers stay out of the global scope.

const global = globalThis;
const interfaces = Object.create(null);
const slots = new WeakMap();
// Helpers shared between the files of src/js/.
const internal = {};

function brandsOf(name) {
  const brands = new Set();
  for (let n = name; n; n = interfaces[n] && interfaces[n].parent) brands.add(n);
  return brands;
}

// The internal slots of `object` if it implements `name`; otherwise a TypeError
// ("Illegal invocation") in this realm.
function slotsOf(object, name) {
  const s = object !== null && (typeof object === 'object' || typeof object === 'function')
    ? slots.get(object) : undefined;
  if (!s || !s.brands.has(name)) {
    throw new TypeError(`Illegal invocation: the object does not implement interface ${name}`);
  }
  return s;
}

function implementsInterface(object, name) {
  const s = object !== null && typeof object === 'object' ? slots.get(object) : undefined;
  return !!(s && s.brands.has(name));
}

// Gives `object` the internal slots of interface `name` (and its ancestors).
function initSlots(object, name, values) {
  let s = slots.get(object);
  if (!s) {
    // The values object becomes the slots (callers keep it to update them).
    s = values || {};
    s.brands = brandsOf(name);
    slots.set(object, s);
  } else {
    for (const b of brandsOf(name)) s.brands.add(b);
    Object.assign(s, values);
  }
  return s;
}

// A new platform object of interface `name` in this realm, without running its constructor.
function createObject(name, values) {
  const o = Object.create(interfaces[name].prototype);
  initSlots(o, name, values);
  return o;
}

function defineValue(o, key, value, w, e, c) {
  Object.defineProperty(o, key, { value, writable: w, enumerable: e, configurable: c });
}

function operationFunction(name, length, f, returnsPromise) {
  const fn = ({ [name](...args) {
    if (!returnsPromise) return f.apply(this, args);
    // https://webidl.spec.whatwg.org/#dfn-create-operation-function: an exception in an
    // operation returning a promise rejects the promise instead.
    try {
      return Promise.resolve(f.apply(this, args));
    } catch (e) {
      return Promise.reject(e);
    }
  } })[name];
  defineValue(fn, 'length', length, false, false, true);
  return fn;
}

// https://webidl.spec.whatwg.org/#interface-object
// d: { parent, construct(self, args) | null, length, attributes: {name: {get(s, self),
// set(s, v, self)}}, operations: {name: {length, call(s, args, self), promise}},
// constants: {name: value}, statics: {name: {length, call}}, exposed: bool, global: bool }
function defineInterface(name, d) {
  const parent = d.parent ? interfaces[d.parent] : null;
  const ctor = function (...args) {
    if (new.target === undefined) {
      throw new TypeError(`Failed to construct '${name}': Please use the 'new' operator`);
    }
    if (!d.construct) throw new TypeError('Illegal constructor');
    initSlots(this, name, {});
    const result = d.construct(slots.get(this), args, this);
    return result === undefined ? undefined : result;
  };
  defineValue(ctor, 'length', d.length || 0, false, false, true);
  defineValue(ctor, 'name', name, false, false, true);
  if (parent) Object.setPrototypeOf(ctor, parent.ctor);
  const proto = Object.create(parent ? parent.prototype : (d.protoParent || Object.prototype));
  defineValue(ctor, 'prototype', proto, false, false, false);
  defineValue(proto, 'constructor', ctor, true, false, true);
  for (const [k, v] of Object.entries(d.constants || {})) {
    defineValue(ctor, k, v, false, true, false);
    defineValue(proto, k, v, false, true, false);
  }
  // https://webidl.spec.whatwg.org/#Global: the members of a [Global] interface are on the
  // global object itself.
  const home = d.global ? global : proto;
  for (const [k, a] of Object.entries(d.attributes || {})) {
    defineAttribute(home, name, k, a);
  }
  for (const [k, op] of Object.entries(d.operations || {})) {
    const f = operationFunction(k, op.length || 0, function (...args) {
      // https://webidl.spec.whatwg.org/#dfn-create-operation-function step 2.1.2: an
      // undefined or null this is the global object.
      const self = this === undefined || this === null ? global : this;
      return op.call(slotsOf(self, name), args, self);
    }, op.promise);
    defineValue(home, k, f, true, true, true);
  }
  for (const [k, op] of Object.entries(d.statics || {})) {
    defineValue(ctor, k, operationFunction(k, op.length || 0, (...args) => op.call(args), op.promise),
      true, true, true);
  }
  if (d.iterable) {
    defineValue(proto, Symbol.iterator, proto[d.iterable], true, false, true);
  }
  defineValue(proto, Symbol.toStringTag, name, false, false, true);
  interfaces[name] = { name, parent: d.parent || null, ctor, prototype: proto, isGlobal: !!d.global };
  if (d.exposed !== false) defineValue(global, name, ctor, true, false, true);
  return ctor;
}

function defineAttribute(target, iface, k, a) {
  const get = Object.getOwnPropertyDescriptor({
    get [k]() {
      const self = this === undefined || this === null ? global : this;
      if (!a.promise) return a.get(slotsOf(self, iface), self);
      // https://webidl.spec.whatwg.org/#dfn-attribute-getter: an exception in the getter
      // of a promise-typed attribute is a rejected promise.
      try {
        return a.get(slotsOf(self, iface), self);
      } catch (e) {
        return Promise.reject(e);
      }
    },
  }, k).get;
  let set;
  if (a.set) {
    set = Object.getOwnPropertyDescriptor({
      set [k](v) {
        const self = this === undefined || this === null ? global : this;
        a.set(slotsOf(self, iface), v, self);
      },
    }, k).set;
  }
  Object.defineProperty(target, k, { get, set, enumerable: true, configurable: true });
}

// Members of a partial interface, added to an interface defined earlier.
function extendInterface(name, d) {
  const proto = interfaces[name].isGlobal ? global : interfaces[name].prototype;
  for (const [k, a] of Object.entries(d.attributes || {})) defineAttribute(proto, name, k, a);
  for (const [k, op] of Object.entries(d.operations || {})) {
    const f = operationFunction(k, op.length || 0, function (...args) {
      const self = this === undefined || this === null ? global : this;
      return op.call(slotsOf(self, name), args, self);
    }, op.promise);
    defineValue(proto, k, f, true, true, true);
  }
}

// https://webidl.spec.whatwg.org/#es-DOMString
function toDOMString(v) {
  if (typeof v === 'symbol') throw new TypeError('Cannot convert a Symbol to a string');
  return String(v);
}

// https://webidl.spec.whatwg.org/#es-USVString
function toUSVString(v) {
  const s = toDOMString(v);
  return s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

// https://webidl.spec.whatwg.org/#es-unsigned-long-long (no [EnforceRange])
function toUnsignedLongLong(v) {
  let x = Number(v);
  if (!Number.isFinite(x)) return 0;
  x = Math.trunc(x);
  const m = 2 ** 64;
  x = x % m;
  return x < 0 ? x + m : x;
}

function toBoolean(v) {
  return !!v;
}

// A dictionary argument: undefined and null are the empty dictionary; other non-objects
// throw.
function toDictionary(v, what) {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' && typeof v !== 'function') {
    throw new TypeError(`${what} is not an object`);
  }
  return v;
}

function requireArguments(args, n, what) {
  if (args.length < n) {
    throw new TypeError(`${what}: ${n} argument${n > 1 ? 's' : ''} required, but only ${args.length} present.`);
  }
}

// https://webidl.spec.whatwg.org/#es-sequence
function toSequence(v, convert, what) {
  if (v === null || (typeof v !== 'object' && typeof v !== 'function')) {
    throw new TypeError(`${what} is not a sequence`);
  }
  const method = v[Symbol.iterator];
  if (typeof method !== 'function') throw new TypeError(`${what} is not iterable`);
  const out = [];
  for (const item of v) out.push(convert(item));
  return out;
}

// A value settled by the browser side as an engine exception becomes the exception object,
// created in this realm.
function engineError(e) {
  if (!e || !e.__domError) return e;
  if (e.isTypeError) return new TypeError(e.message);
  if (e.name === 'QuotaExceededError') {
    return new global.QuotaExceededError(e.message, {
      quota: e.quota === null ? undefined : e.quota,
      requested: e.requested === null ? undefined : e.requested,
    });
  }
  return new global.DOMException(e.message, e.name);
}

// native.op with its rejection turned into an exception of this realm.
function engineOp(name, args, ...buffers) {
  return native.op(name, envId, args, ...buffers).catch(e => { throw engineError(e); });
}
