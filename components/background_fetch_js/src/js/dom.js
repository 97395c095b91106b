// DOMException and QuotaExceededError (WebIDL), Event, EventTarget and event handlers (DOM),
// ErrorEvent and MessageEvent (HTML).

// https://webidl.spec.whatwg.org/#dfn-error-names-table: the legacy codes.
const legacyCodes = {
  IndexSizeError: 1, HierarchyRequestError: 3, WrongDocumentError: 4,
  InvalidCharacterError: 5, NoModificationAllowedError: 7, NotFoundError: 8,
  NotSupportedError: 9, InUseAttributeError: 10, InvalidStateError: 11, SyntaxError: 12,
  InvalidModificationError: 13, NamespaceError: 14, InvalidAccessError: 15,
  TypeMismatchError: 17, SecurityError: 18, NetworkError: 19, AbortError: 20,
  URLMismatchError: 21, QuotaExceededError: 22, TimeoutError: 23,
  InvalidNodeTypeError: 24, DataCloneError: 25,
};

// https://webidl.spec.whatwg.org/#idl-DOMException
defineInterface('DOMException', {
  protoParent: Error.prototype,
  length: 0,
  construct(s, [message, name]) {
    s.message = message === undefined ? '' : toDOMString(message);
    s.name = name === undefined ? 'Error' : toDOMString(name);
  },
  attributes: {
    name: { get: s => s.name },
    message: { get: s => s.message },
    code: { get: s => legacyCodes[s.name] || 0 },
  },
  constants: {
    INDEX_SIZE_ERR: 1, DOMSTRING_SIZE_ERR: 2, HIERARCHY_REQUEST_ERR: 3, WRONG_DOCUMENT_ERR: 4,
    INVALID_CHARACTER_ERR: 5, NO_DATA_ALLOWED_ERR: 6, NO_MODIFICATION_ALLOWED_ERR: 7,
    NOT_FOUND_ERR: 8, NOT_SUPPORTED_ERR: 9, INUSE_ATTRIBUTE_ERR: 10, INVALID_STATE_ERR: 11,
    SYNTAX_ERR: 12, INVALID_MODIFICATION_ERR: 13, NAMESPACE_ERR: 14, INVALID_ACCESS_ERR: 15,
    VALIDATION_ERR: 16, TYPE_MISMATCH_ERR: 17, SECURITY_ERR: 18, NETWORK_ERR: 19,
    ABORT_ERR: 20, URL_MISMATCH_ERR: 21, QUOTA_EXCEEDED_ERR: 22, TIMEOUT_ERR: 23,
    INVALID_NODE_TYPE_ERR: 24, DATA_CLONE_ERR: 25,
  },
});

// https://webidl.spec.whatwg.org/#quotaexceedederror
defineInterface('QuotaExceededError', {
  parent: 'DOMException',
  length: 0,
  construct(s, [message, options]) {
    s.message = message === undefined ? '' : toDOMString(message);
    s.name = 'QuotaExceededError';
    const o = toDictionary(options, 'options');
    s.quota = null;
    s.requested = null;
    if (o.quota !== undefined) {
      const q = Number(o.quota);
      if (!Number.isFinite(q)) throw new TypeError('quota is not a finite number');
      if (q < 0) throw new RangeError('quota is negative');
      s.quota = q;
    }
    if (o.requested !== undefined) {
      const r = Number(o.requested);
      if (!Number.isFinite(r)) throw new TypeError('requested is not a finite number');
      if (r < 0) throw new RangeError('requested is negative');
      s.requested = r;
    }
    if (s.quota !== null && s.requested !== null && s.requested < s.quota) {
      throw new RangeError('requested is less than quota');
    }
  },
  attributes: {
    quota: { get: s => s.quota },
    requested: { get: s => s.requested },
  },
});

function newDOMException(message, name) {
  return new global.DOMException(message, name);
}

// https://dom.spec.whatwg.org/#interface-event
function initEvent(s, type, init) {
  const i = toDictionary(init, 'eventInitDict');
  s.type = toDOMString(type);
  s.bubbles = toBoolean(i.bubbles);
  s.cancelable = toBoolean(i.cancelable);
  s.composed = toBoolean(i.composed);
  s.target = null;
  s.currentTarget = null;
  s.eventPhase = 0;
  s.stopPropagation = false;
  s.stopImmediate = false;
  s.canceled = false;
  s.inPassiveListener = false;
  s.dispatching = false;
  s.isTrusted = false;
  s.timeStamp = native.now();
  return i;
}

defineInterface('Event', {
  length: 1,
  construct(s, args) {
    requireArguments(args, 1, "Failed to construct 'Event'");
    initEvent(s, args[0], args[1]);
  },
  attributes: {
    type: { get: s => s.type },
    target: { get: s => s.target },
    srcElement: { get: s => s.target },
    currentTarget: { get: s => s.currentTarget },
    eventPhase: { get: s => s.eventPhase },
    cancelBubble: { get: s => s.stopPropagation, set(s, v) { if (v) s.stopPropagation = true; } },
    bubbles: { get: s => s.bubbles },
    cancelable: { get: s => s.cancelable },
    returnValue: {
      get: s => !s.canceled,
      set(s, v) { if (!v && s.cancelable && !s.inPassiveListener) s.canceled = true; },
    },
    defaultPrevented: { get: s => s.canceled },
    composed: { get: s => s.composed },
    isTrusted: { get: s => s.isTrusted },
    timeStamp: { get: s => s.timeStamp },
  },
  operations: {
    composedPath: { call: s => (s.dispatching && s.currentTarget ? [s.currentTarget] : []) },
    stopPropagation: { call(s) { s.stopPropagation = true; } },
    stopImmediatePropagation: { call(s) { s.stopPropagation = true; s.stopImmediate = true; } },
    preventDefault: { call(s) { if (s.cancelable && !s.inPassiveListener) s.canceled = true; } },
    initEvent: {
      length: 1,
      call(s, [type, bubbles, cancelable]) {
        if (s.dispatching) return;
        s.type = toDOMString(type);
        s.bubbles = toBoolean(bubbles);
        s.cancelable = toBoolean(cancelable);
      },
    },
  },
  constants: { NONE: 0, CAPTURING_PHASE: 1, AT_TARGET: 2, BUBBLING_PHASE: 3 },
});

// https://dom.spec.whatwg.org/#interface-eventtarget
defineInterface('EventTarget', {
  length: 0,
  construct(s) { s.listeners = []; },
  operations: {
    addEventListener: {
      length: 2,
      call(s, [type, callback, options], self) {
        if (!s.listeners) s.listeners = [];
        const o = typeof options === 'object' && options !== null ? options : { capture: !!options };
        if (callback === null || callback === undefined) return;
        const capture = !!o.capture;
        type = toDOMString(type);
        if (s.listeners.some(l => l.type === type && l.callback === callback && l.capture === capture)) return;
        const listener = { type, callback, capture, once: !!o.once, passive: !!o.passive, removed: false };
        if (o.signal) {
          if (o.signal.aborted) return;
          o.signal.addEventListener('abort', () => removeListener(s, listener));
        }
        s.listeners.push(listener);
      },
    },
    removeEventListener: {
      length: 2,
      call(s, [type, callback, options]) {
        if (!s.listeners) return;
        const capture = typeof options === 'object' && options !== null ? !!options.capture : !!options;
        type = toDOMString(type);
        const l = s.listeners.find(l => l.type === type && l.callback === callback && l.capture === capture);
        if (l) removeListener(s, l);
      },
    },
    dispatchEvent: {
      length: 1,
      call(s, [event], self) {
        const es = slotsOf(event, 'Event');
        if (es.dispatching) throw newDOMException('The event is already being dispatched.', 'InvalidStateError');
        es.isTrusted = false;
        return dispatchEvent(self, event);
      },
    },
  },
});

function removeListener(s, listener) {
  listener.removed = true;
  const i = s.listeners.indexOf(listener);
  if (i >= 0) s.listeners.splice(i, 1);
}

// https://dom.spec.whatwg.org/#concept-event-dispatch (a target with no parent: one
// invocation at the target).
function dispatchEvent(target, event) {
  const es = slots.get(event);
  const ts = slots.get(target) || initSlots(target, 'EventTarget', {});
  if (!ts.listeners) ts.listeners = [];
  es.dispatching = true;
  es.target = target;
  es.currentTarget = target;
  es.eventPhase = 2;
  for (const capture of [true, false]) {
    for (const l of ts.listeners.slice()) {
      if (es.stopImmediate) break;
      if (l.removed || l.type !== es.type || l.capture !== capture) continue;
      if (l.once) removeListener(ts, l);
      es.inPassiveListener = l.passive;
      try {
        if (typeof l.callback === 'function') {
          l.callback.call(target, event);
        } else {
          const handle = l.callback.handleEvent;
          if (typeof handle !== 'function') throw new TypeError('handleEvent is not a function');
          handle.call(l.callback, event);
        }
      } catch (e) {
        reportException(e);
      }
      es.inPassiveListener = false;
    }
  }
  es.dispatching = false;
  es.eventPhase = 0;
  es.currentTarget = null;
  es.stopPropagation = false;
  es.stopImmediate = false;
  return !es.canceled;
}

// Fires a trusted event at `target`.
function fireEvent(target, event) {
  slots.get(event).isTrusted = true;
  return dispatchEvent(target, event);
}

// https://html.spec.whatwg.org/multipage/webappapis.html#event-handler-attributes
function eventHandlerAttribute(type) {
  return {
    get(s) { return (s.handlers && s.handlers[type]) || null; },
    set(s, v, self) {
      if (!s.handlers) s.handlers = Object.create(null);
      if (!s.listeners) s.listeners = [];
      const value = typeof v === 'function' || (typeof v === 'object' && v !== null) ? v : null;
      if (!(type in s.handlers)) {
        // The listener is added once, at the position of the first non-null handler.
        s.handlers[type] = null;
        s.listeners.push({
          type, capture: false, once: false, passive: false, removed: false,
          callback(event) {
            const h = s.handlers[type];
            if (typeof h !== 'function') return;
            const r = h.call(this, event);
            if (r === false) event.preventDefault();
          },
        });
      }
      s.handlers[type] = value;
    },
  };
}

// https://html.spec.whatwg.org/multipage/webappapis.html#report-the-exception
function reportException(e) {
  native.print('error', 'Uncaught ' + (e && e.stack ? e.stack : String(e)));
  if (typeof global.dispatchEvent === 'function' && interfaces.ErrorEvent) {
    const event = createObject('ErrorEvent', {});
    const s = slots.get(event);
    initEvent(s, 'error', { cancelable: true });
    s.message = e && e.message !== undefined ? String(e.message) : String(e);
    s.error = e;
    s.filename = '';
    s.lineno = 0;
    s.colno = 0;
    // A worker's exception that its global's handlers did not cancel goes on to its Worker
    // object (workers.js).
    if (fireEvent(global, event) && internal.uncaught) internal.uncaught(e, s);
  }
}

// https://html.spec.whatwg.org/multipage/webappapis.html#errorevent
defineInterface('ErrorEvent', {
  parent: 'Event',
  length: 1,
  construct(s, args) {
    requireArguments(args, 1, "Failed to construct 'ErrorEvent'");
    const i = initEvent(s, args[0], args[1]);
    s.message = i.message === undefined ? '' : toDOMString(i.message);
    s.filename = i.filename === undefined ? '' : toUSVString(i.filename);
    s.lineno = i.lineno >>> 0;
    s.colno = i.colno >>> 0;
    s.error = i.error;
  },
  attributes: {
    message: { get: s => s.message },
    filename: { get: s => s.filename },
    lineno: { get: s => s.lineno },
    colno: { get: s => s.colno },
    error: { get: s => s.error },
  },
});

// https://html.spec.whatwg.org/multipage/webappapis.html#promiserejectionevent
defineInterface('PromiseRejectionEvent', {
  parent: 'Event',
  length: 2,
  construct(s, args) {
    requireArguments(args, 2, "Failed to construct 'PromiseRejectionEvent'");
    const i = initEvent(s, args[0], args[1]);
    s.promise = i.promise;
    s.reason = i.reason;
  },
  attributes: {
    promise: { get: s => s.promise },
    reason: { get: s => s.reason },
  },
});

// https://html.spec.whatwg.org/multipage/comms.html#messageevent
function initMessageEvent(s, type, init) {
  const i = initEvent(s, type, init);
  s.data = i.data === undefined ? null : i.data;
  s.origin = i.origin === undefined ? '' : toUSVString(i.origin);
  s.lastEventId = i.lastEventId === undefined ? '' : toDOMString(i.lastEventId);
  s.source = i.source === undefined ? null : i.source;
  s.ports = Object.freeze(i.ports ? Array.from(i.ports) : []);
  return i;
}

// The attributes of MessageEvent, which ExtendableMessageEvent has too.
const messageEventAttributes = {
    data: { get: s => s.data },
    origin: { get: s => s.origin },
    lastEventId: { get: s => s.lastEventId },
    source: { get: s => s.source },
    ports: { get: s => s.ports },
};

defineInterface('MessageEvent', {
  parent: 'Event',
  length: 1,
  construct(s, args) {
    requireArguments(args, 1, "Failed to construct 'MessageEvent'");
    initMessageEvent(s, args[0], args[1]);
  },
  attributes: messageEventAttributes,
});

// https://dom.spec.whatwg.org/#interface-abortcontroller
defineInterface('AbortSignal', {
  parent: 'EventTarget',
  attributes: {
    aborted: { get: s => s.aborted },
    reason: { get: s => s.reason },
    onabort: eventHandlerAttribute('abort'),
  },
  operations: {
    throwIfAborted: { call(s) { if (s.aborted) throw s.reason; } },
  },
});

function signalAbort(signal, reason) {
  const s = slots.get(signal);
  if (s.aborted) return;
  s.aborted = true;
  s.reason = reason === undefined ? newDOMException('signal is aborted without reason', 'AbortError') : reason;
  fireEvent(signal, new global.Event('abort'));
}

defineInterface('AbortController', {
  construct(s) {
    s.signal = createObject('AbortSignal', { listeners: [], aborted: false, reason: undefined });
  },
  attributes: { signal: { get: s => s.signal } },
  operations: { abort: { call(s, [reason]) { signalAbort(s.signal, reason); } } },
});

// https://html.spec.whatwg.org/multipage/structured-data.html#structured-clone: the value as
// a realm-neutral record, read back with deserialize() in the receiving realm.
function serialize(v, memory = new Map()) {
  if (v === null || typeof v !== 'object') {
    if (typeof v === 'function' || typeof v === 'symbol') {
      throw newDOMException(`${String(v)} could not be cloned.`, 'DataCloneError');
    }
    return { t: 'prim', v };
  }
  if (memory.has(v)) return memory.get(v);
  const rec = {};
  memory.set(v, rec);
  if (Array.isArray(v)) {
    rec.t = 'array';
    rec.length = v.length;
    rec.props = Object.keys(v).map(k => [k, serialize(v[k], memory)]);
  } else if (v instanceof Date) {
    rec.t = 'date'; rec.v = v.getTime();
  } else if (v instanceof RegExp) {
    rec.t = 'regexp'; rec.source = v.source; rec.flags = v.flags;
  } else if (v instanceof ArrayBuffer) {
    rec.t = 'buffer'; rec.bytes = new Uint8Array(v.slice(0));
  } else if (ArrayBuffer.isView(v)) {
    rec.t = 'view'; rec.ctor = v.constructor.name;
    rec.bytes = new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
  } else if (v instanceof Map) {
    rec.t = 'map'; rec.entries = [...v].map(([a, b]) => [serialize(a, memory), serialize(b, memory)]);
  } else if (v instanceof Set) {
    rec.t = 'set'; rec.values = [...v].map(a => serialize(a, memory));
  } else if (implementsInterface(v, 'DOMException')) {
    rec.t = 'domexception'; rec.name = v.name; rec.message = v.message;
  } else if (v instanceof Error) {
    rec.t = 'error'; rec.name = v.name; rec.message = String(v.message);
  } else if (implementsInterface(v, 'Blob')) {
    const s = slots.get(v);
    rec.t = implementsInterface(v, 'File') ? 'file' : 'blob';
    rec.bytes = s.bytes.slice(); rec.type = s.type; rec.name = s.name; rec.lastModified = s.lastModified;
  } else if (slots.has(v)) {
    throw newDOMException('A platform object could not be cloned.', 'DataCloneError');
  } else {
    rec.t = 'object';
    rec.props = Object.keys(v).map(k => [k, serialize(v[k], memory)]);
  }
  return rec;
}

function deserialize(rec, memory = new Map()) {
  if (rec.t === 'prim') return rec.v;
  if (memory.has(rec)) return memory.get(rec);
  let out;
  switch (rec.t) {
    case 'array':
      out = new Array(rec.length); memory.set(rec, out);
      for (const [k, r] of rec.props) out[k] = deserialize(r, memory);
      return out;
    case 'object':
      out = {}; memory.set(rec, out);
      for (const [k, r] of rec.props) out[k] = deserialize(r, memory);
      return out;
    case 'date': out = new Date(rec.v); break;
    case 'regexp': out = new RegExp(rec.source, rec.flags); break;
    case 'buffer': out = new Uint8Array(rec.bytes).buffer; break;
    case 'view': {
      const C = global[rec.ctor] || Uint8Array;
      const b = new Uint8Array(rec.bytes).buffer;
      out = rec.ctor === 'DataView' ? new DataView(b) : new C(b);
      break;
    }
    case 'map':
      out = new Map(); memory.set(rec, out);
      for (const [a, b] of rec.entries) out.set(deserialize(a, memory), deserialize(b, memory));
      return out;
    case 'set':
      out = new Set(); memory.set(rec, out);
      for (const a of rec.values) out.add(deserialize(a, memory));
      return out;
    case 'domexception': out = newDOMException(rec.message, rec.name); break;
    case 'error': {
      const C = { EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError }[rec.name] || Error;
      out = new C(rec.message);
      break;
    }
    case 'blob':
      out = createObject('Blob', { bytes: new Uint8Array(rec.bytes), type: rec.type });
      break;
    case 'file':
      out = createObject('File', { bytes: new Uint8Array(rec.bytes), type: rec.type, name: rec.name, lastModified: rec.lastModified });
      break;
    default: out = undefined;
  }
  memory.set(rec, out);
  return out;
}
