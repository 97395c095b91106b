// ReadableStream (https://streams.spec.whatwg.org/#rs-class), the part bodies need: a default
// reader, an underlying source's start/pull/cancel, async iteration. A record's response body
// streams from the engine chunk by chunk, so it can be read while it is still downloading.
// FIXME: byte streams (BYOB readers), tee(), pipeTo() and pipeThrough() are not implemented.

function streamPull(s) {
  if (s.state !== 'readable' || s.pulling || !s.source || typeof s.source.pull !== 'function') return;
  if (s.queue.length > 0 || s.reads.length === 0) return;
  s.pulling = true;
  Promise.resolve()
    .then(() => s.source.pull.call(s.source, s.controller))
    .then(() => { s.pulling = false; streamPull(s); }, e => { s.pulling = false; streamError(s, e); });
}

function streamDeliver(s) {
  while (s.reads.length > 0 && s.queue.length > 0) s.reads.shift().resolve({ value: s.queue.shift(), done: false });
  if (s.state === 'closed' && s.queue.length === 0) {
    while (s.reads.length > 0) s.reads.shift().resolve({ value: undefined, done: true });
  }
  streamPull(s);
}

function streamClose(s) {
  if (s.state !== 'readable') return;
  s.state = 'closed';
  if (s.reader) slots.get(s.reader).closedResolve();
  streamDeliver(s);
}

function streamError(s, e) {
  if (s.state !== 'readable') return;
  s.state = 'errored';
  s.storedError = e;
  s.queue = [];
  while (s.reads.length > 0) s.reads.shift().reject(e);
  if (s.reader) slots.get(s.reader).closedReject(e);
}

function streamCancel(s, reason) {
  if (s.state === 'closed') return Promise.resolve();
  if (s.state === 'errored') return Promise.reject(s.storedError);
  s.queue = [];
  streamClose(s);
  const cancel = s.source && s.source.cancel;
  return Promise.resolve(typeof cancel === 'function' ? cancel.call(s.source, reason) : undefined).then(() => undefined);
}

defineInterface('ReadableStreamDefaultController', {
  attributes: { desiredSize: { get: s => (s.stream.state === 'readable' ? 1 - s.stream.queue.length : s.stream.state === 'closed' ? 0 : null) } },
  operations: {
    close: { call(s) { if (s.stream.state !== 'readable' || s.stream.closeRequested) throw new TypeError('The stream is not readable'); streamClose(s.stream); } },
    enqueue: {
      call(s, [chunk]) {
        if (s.stream.state !== 'readable') throw new TypeError('The stream is not readable');
        s.stream.queue.push(chunk);
        streamDeliver(s.stream);
      },
    },
    error: { call(s, [e]) { streamError(s.stream, e); } },
  },
});

defineInterface('ReadableStream', {
  length: 0,
  construct(s, [source, strategy]) {
    if (source !== undefined && source !== null && typeof source !== 'object') throw new TypeError('underlyingSource is not an object');
    if (source && source.type === 'bytes') throw new RangeError('FIXME: byte streams are not supported');
    Object.assign(s, { state: 'readable', queue: [], reads: [], reader: null, source: source || null, pulling: false, disturbed: false });
    s.controller = createObject('ReadableStreamDefaultController', { stream: s });
    Promise.resolve()
      .then(() => (s.source && typeof s.source.start === 'function' ? s.source.start.call(s.source, s.controller) : undefined))
      .then(() => { s.started = true; streamPull(s); }, e => streamError(s, e));
  },
  attributes: { locked: { get: s => s.reader !== null } },
  operations: {
    cancel: {
      promise: true,
      call(s, [reason]) {
        if (s.reader) throw new TypeError('The stream is locked');
        s.disturbed = true;
        return streamCancel(s, reason);
      },
    },
    getReader: {
      call(s, [options], self) {
        const o = toDictionary(options, 'options');
        if (o.mode !== undefined) throw new RangeError('FIXME: BYOB readers are not supported');
        return new global.ReadableStreamDefaultReader(self);
      },
    },
    values: {
      call(s, [options], self) {
        const reader = new global.ReadableStreamDefaultReader(self);
        const preventCancel = !!toDictionary(options, 'options').preventCancel;
        return {
          next: () => reader.read().then(r => { if (r.done) reader.releaseLock(); return r; }),
          return: value => (preventCancel ? Promise.resolve() : reader.cancel(value)).then(() => { reader.releaseLock(); return { value, done: true }; }),
          [Symbol.asyncIterator]() { return this; },
        };
      },
    },
  },
});
defineValue(interfaces.ReadableStream.prototype, Symbol.asyncIterator, interfaces.ReadableStream.prototype.values, true, false, true);

defineInterface('ReadableStreamDefaultReader', {
  length: 1,
  construct(s, [stream], self) {
    const ss = slotsOf(stream, 'ReadableStream');
    if (ss.reader) throw new TypeError('The stream is locked');
    s.stream = ss;
    s.closed = new Promise((resolve, reject) => { s.closedResolve = resolve; s.closedReject = reject; });
    s.closed.catch(() => {});
    ss.reader = self;
    if (ss.state === 'closed') s.closedResolve();
    if (ss.state === 'errored') s.closedReject(ss.storedError);
  },
  attributes: { closed: { get: s => s.closed } },
  operations: {
    read: {
      promise: true,
      call(s) {
        if (!s.stream) throw new TypeError('The reader is released');
        const ss = s.stream;
        ss.disturbed = true;
        if (ss.state === 'errored') throw ss.storedError;
        return new Promise((resolve, reject) => {
          ss.reads.push({ resolve, reject });
          streamDeliver(ss);
        });
      },
    },
    releaseLock: {
      call(s) {
        if (!s.stream) return;
        const e = new TypeError('The reader was released');
        while (s.stream.reads.length > 0) s.stream.reads.shift().reject(e);
        s.stream.reader = null;
        s.stream = null;
      },
    },
    cancel: {
      promise: true,
      call(s, [reason]) {
        if (!s.stream) throw new TypeError('The reader is released');
        return streamCancel(s.stream, reason);
      },
    },
  },
});

// A body's stream: its bytes in hand, or the engine's chunks (`chunk()` resolves with an
// ArrayBuffer, or null at the end).
function bodyStream(s) {
  const bytes = s.bytes;
  const chunk = s.chunk;
  return new global.ReadableStream({
    pull(controller) {
      if (bytes) {
        if (bytes.length) controller.enqueue(bytes.slice());
        controller.close();
        return undefined;
      }
      return chunk().then(b => {
        if (!(b instanceof ArrayBuffer)) controller.close();
        else controller.enqueue(new Uint8Array(b));
      });
    },
  });
}

// Reads a body's stream to the end.
async function readAllFromStream(stream) {
  const reader = stream.getReader();
  const parts = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (!(value instanceof Uint8Array)) throw new TypeError('A body chunk is not a Uint8Array');
    parts.push(value);
  }
  return concatBytes(parts);
}
