// URL and URLSearchParams (URL), TextEncoder/TextDecoder (Encoding), Blob, File, FormData
// (File API, XHR), Headers, Request, Response and fetch() (Fetch): what the upstream files and
// the service workers use.

function parseURL(input, base) {
  return native.sync('parseUrl', envId, { input: toUSVString(input), base: base === undefined ? null : toUSVString(base) });
}

// https://url.spec.whatwg.org/#urlsearchparams
function parseQuery(q) {
  const out = [];
  for (const part of q.split('&')) {
    if (part === '') continue;
    const i = part.indexOf('=');
    const name = i < 0 ? part : part.slice(0, i);
    const value = i < 0 ? '' : part.slice(i + 1);
    const dec = x => { try { return decodeURIComponent(x.replace(/\+/g, ' ')); } catch (e) { return x; } };
    out.push([dec(name), dec(value)]);
  }
  return out;
}

function serializeQuery(list) {
  const enc = x => encodeURIComponent(x).replace(/%20/g, '+').replace(/[!'()~]/g, c => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  return list.map(([n, v]) => enc(n) + '=' + enc(v)).join('&');
}

function updateURLQuery(s) {
  if (!s.url) return;
  const q = serializeQuery(s.list);
  const u = slots.get(s.url);
  const parsed = parseURL(u.href.replace(/[?#].*$/, '') + (q ? '?' + q : '') + u.hash);
  if (parsed) Object.assign(u, parsed);
}

defineInterface('URLSearchParams', {
  length: 0,
  construct(s, [init]) {
    s.list = [];
    s.url = null;
    if (init === undefined || init === null) return;
    if (typeof init === 'object' || typeof init === 'function') {
      if (typeof init[Symbol.iterator] === 'function') {
        for (const pair of init) {
          const p = Array.from(pair);
          if (p.length !== 2) throw new TypeError('Each pair must have exactly two items');
          s.list.push([toUSVString(p[0]), toUSVString(p[1])]);
        }
      } else {
        for (const k of Object.keys(init)) s.list.push([toUSVString(k), toUSVString(init[k])]);
      }
    } else {
      let q = toUSVString(init);
      if (q.startsWith('?')) q = q.slice(1);
      s.list = parseQuery(q);
    }
  },
  attributes: { size: { get: s => s.list.length } },
  operations: {
    append: { length: 2, call(s, [n, v]) { s.list.push([toUSVString(n), toUSVString(v)]); updateURLQuery(s); } },
    delete: { length: 1, call(s, [n, v]) { n = toUSVString(n); s.list = s.list.filter(p => !(p[0] === n && (v === undefined || p[1] === toUSVString(v)))); updateURLQuery(s); } },
    get: { length: 1, call(s, [n]) { n = toUSVString(n); const p = s.list.find(p => p[0] === n); return p ? p[1] : null; } },
    getAll: { length: 1, call(s, [n]) { n = toUSVString(n); return s.list.filter(p => p[0] === n).map(p => p[1]); } },
    has: { length: 1, call(s, [n, v]) { n = toUSVString(n); return s.list.some(p => p[0] === n && (v === undefined || p[1] === toUSVString(v))); } },
    set: {
      length: 2,
      call(s, [n, v]) {
        n = toUSVString(n); v = toUSVString(v);
        const i = s.list.findIndex(p => p[0] === n);
        if (i < 0) s.list.push([n, v]);
        else { s.list[i] = [n, v]; s.list = s.list.filter((p, j) => j <= i || p[0] !== n); }
        updateURLQuery(s);
      },
    },
    sort: { call(s) { s.list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)); updateURLQuery(s); } },
    forEach: { length: 1, call(s, [cb, thisArg], self) { for (const [n, v] of s.list.slice()) cb.call(thisArg, v, n, self); } },
    entries: { call: s => s.list.map(p => p.slice())[Symbol.iterator]() },
    keys: { call: s => s.list.map(p => p[0])[Symbol.iterator]() },
    values: { call: s => s.list.map(p => p[1])[Symbol.iterator]() },
    toString: { call: s => serializeQuery(s.list) },
  },
  iterable: 'entries',
});

// https://url.spec.whatwg.org/#url-class
// FIXME: the URL setters other than search, hash and href are not implemented.
defineInterface('URL', {
  length: 1,
  construct(s, args) {
    requireArguments(args, 1, "Failed to construct 'URL'");
    const parsed = parseURL(args[0], args[1]);
    if (!parsed) throw new TypeError(`Failed to construct 'URL': Invalid URL`);
    Object.assign(s, parsed);
  },
  attributes: {
    href: {
      get: s => s.href,
      set(s, v) { const p = parseURL(v); if (!p) throw new TypeError('Invalid URL'); Object.assign(s, p); if (s.params) slots.get(s.params).list = parseQuery(s.search.slice(1)); },
    },
    origin: { get: s => s.origin },
    protocol: { get: s => s.protocol },
    username: { get: s => s.username },
    password: { get: s => s.password },
    host: { get: s => s.host },
    hostname: { get: s => s.hostname },
    port: { get: s => s.port },
    pathname: { get: s => s.pathname },
    search: {
      get: s => s.search,
      set(s, v) { v = toUSVString(v); const p = parseURL(s.href.replace(/[?#].*$/, '') + (v && !v.startsWith('?') ? '?' : '') + v + s.hash); if (p) Object.assign(s, p); if (s.params) slots.get(s.params).list = parseQuery(s.search.slice(1)); },
    },
    searchParams: {
      get(s, self) {
        if (!s.params) s.params = createObject('URLSearchParams', { list: parseQuery(s.search.slice(1)), url: self });
        return s.params;
      },
    },
    hash: {
      get: s => s.hash,
      set(s, v) { v = toUSVString(v); const p = parseURL(s.href.replace(/#.*$/, '') + (v && !v.startsWith('#') ? '#' : '') + v); if (p) Object.assign(s, p); },
    },
  },
  operations: {
    toJSON: { call: s => s.href },
    toString: { call: s => s.href },
  },
  statics: {
    canParse: { length: 1, call: ([u, b]) => !!parseURL(u, b) },
    parse: { length: 1, call: ([u, b]) => { try { return new global.URL(u, b); } catch (e) { return null; } } },
  },
});

// https://encoding.spec.whatwg.org/#interface-textencoder
defineInterface('TextEncoder', {
  construct() {},
  attributes: { encoding: { get: () => 'utf-8' } },
  operations: {
    encode: { call: (s, [input]) => new Uint8Array(native.utf8Encode(input === undefined ? '' : toUSVString(input))) },
  },
});

function bytesOfBufferSource(v) {
  if (v instanceof ArrayBuffer) return new Uint8Array(v.slice(0));
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
  return null;
}

// https://encoding.spec.whatwg.org/#interface-textdecoder (UTF-8 only)
defineInterface('TextDecoder', {
  construct(s, [label]) {
    const l = label === undefined ? 'utf-8' : toDOMString(label).trim().toLowerCase();
    if (!['utf-8', 'utf8', 'unicode-1-1-utf-8'].includes(l)) {
      throw new RangeError(`FIXME: only UTF-8 is supported, not '${l}'`);
    }
  },
  attributes: { encoding: { get: () => 'utf-8' }, fatal: { get: () => false }, ignoreBOM: { get: () => false } },
  operations: {
    decode: {
      call(s, [input]) {
        if (input === undefined) return '';
        const b = bytesOfBufferSource(input);
        if (!b) throw new TypeError('not a BufferSource');
        return native.utf8Decode(b.buffer);
      },
    },
  },
});

function utf8(string) {
  return new Uint8Array(native.utf8Encode(string));
}

function concatBytes(list) {
  const n = list.reduce((a, b) => a + b.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const b of list) { out.set(b, o); o += b.length; }
  return out;
}

// https://w3c.github.io/FileAPI/#blob-section
function blobParts(parts) {
  const out = [];
  if (parts === undefined) return out;
  for (const p of toSequence(parts, x => x, 'blobParts')) {
    if (implementsInterface(p, 'Blob')) out.push(slots.get(p).bytes);
    else {
      const b = bytesOfBufferSource(p);
      out.push(b || utf8(toUSVString(p)));
    }
  }
  return concatBytes(out);
}

function normalizeType(t) {
  if (t === undefined) return '';
  t = toDOMString(t);
  return /[^\u0020-\u007E]/.test(t) ? '' : t.toLowerCase();
}

defineInterface('Blob', {
  length: 0,
  construct(s, [parts, options]) {
    const o = toDictionary(options, 'options');
    s.bytes = blobParts(parts);
    s.type = normalizeType(o.type);
  },
  attributes: {
    size: { get: s => s.bytes.length },
    type: { get: s => s.type },
  },
  operations: {
    slice: {
      call(s, [start, end, contentType]) {
        const n = s.bytes.length;
        const rel = (x, d) => (x === undefined ? d : x < 0 ? Math.max(n + Math.trunc(x), 0) : Math.min(Math.trunc(x), n));
        const a = rel(start, 0);
        const b = rel(end, n);
        return createObject('Blob', { bytes: s.bytes.slice(a, Math.max(a, b)), type: normalizeType(contentType) });
      },
    },
    text: { promise: true, call: s => native.utf8Decode(s.bytes.slice().buffer) },
    arrayBuffer: { promise: true, call: s => s.bytes.slice().buffer },
    bytes: { promise: true, call: s => s.bytes.slice() },
  },
});

defineInterface('File', {
  parent: 'Blob',
  length: 2,
  construct(s, args) {
    requireArguments(args, 2, "Failed to construct 'File'");
    const [bits, name, options] = args;
    const o = toDictionary(options, 'options');
    s.bytes = blobParts(bits);
    s.type = normalizeType(o.type);
    s.name = toUSVString(name);
    s.lastModified = o.lastModified === undefined ? Date.now() : Number(o.lastModified);
  },
  attributes: {
    name: { get: s => s.name },
    lastModified: { get: s => s.lastModified },
  },
});

// https://xhr.spec.whatwg.org/#interface-formdata
function formEntry(name, value, filename) {
  name = toUSVString(name);
  if (implementsInterface(value, 'Blob')) {
    const vs = slots.get(value);
    if (!implementsInterface(value, 'File') || filename !== undefined) {
      value = createObject('File', {
        bytes: vs.bytes, type: vs.type, lastModified: Date.now(),
        name: filename !== undefined ? toUSVString(filename) : implementsInterface(value, 'File') ? vs.name : 'blob',
      });
    }
    return [name, value];
  }
  return [name, toUSVString(value)];
}

defineInterface('FormData', {
  length: 0,
  construct(s, [form]) {
    if (form !== undefined) throw new TypeError('FIXME: FormData(form) is not supported');
    s.list = [];
  },
  operations: {
    append: { length: 2, call(s, [n, v, f]) { s.list.push(formEntry(n, v, f)); } },
    delete: { length: 1, call(s, [n]) { n = toUSVString(n); s.list = s.list.filter(e => e[0] !== n); } },
    get: { length: 1, call(s, [n]) { n = toUSVString(n); const e = s.list.find(e => e[0] === n); return e ? e[1] : null; } },
    getAll: { length: 1, call(s, [n]) { n = toUSVString(n); return s.list.filter(e => e[0] === n).map(e => e[1]); } },
    has: { length: 1, call(s, [n]) { n = toUSVString(n); return s.list.some(e => e[0] === n); } },
    set: {
      length: 2,
      call(s, [n, v, f]) {
        const e = formEntry(n, v, f);
        const i = s.list.findIndex(x => x[0] === e[0]);
        if (i < 0) s.list.push(e);
        else { s.list[i] = e; s.list = s.list.filter((x, j) => j <= i || x[0] !== e[0]); }
      },
    },
    forEach: { length: 1, call(s, [cb, thisArg], self) { for (const [n, v] of s.list.slice()) cb.call(thisArg, v, n, self); } },
    entries: { call: s => s.list.map(e => e.slice())[Symbol.iterator]() },
    keys: { call: s => s.list.map(e => e[0])[Symbol.iterator]() },
    values: { call: s => s.list.map(e => e[1])[Symbol.iterator]() },
  },
  iterable: 'entries',
});

let boundaryCounter = 0;
// https://html.spec.whatwg.org/multipage/form-control-infrastructure.html#multipart/form-data-encoding-algorithm
function multipart(list) {
  const boundary = '----BackgroundFetchJsBoundary' + (++boundaryCounter).toString(16).padStart(8, '0') + Math.floor(native.now()).toString(16);
  const escape = n => n.replace(/\r\n|\r|\n/g, '\r\n').replace(/\n/g, '%0A').replace(/\r/g, '%0D').replace(/"/g, '%22');
  const parts = [];
  for (const [name, value] of list) {
    if (typeof value === 'string') {
      parts.push(utf8(`--${boundary}\r\nContent-Disposition: form-data; name="${escape(name)}"\r\n\r\n${value.replace(/\r\n|\r|\n/g, '\r\n')}\r\n`));
    } else {
      const vs = slots.get(value);
      parts.push(utf8(`--${boundary}\r\nContent-Disposition: form-data; name="${escape(name)}"; filename="${escape(vs.name)}"\r\nContent-Type: ${vs.type || 'application/octet-stream'}\r\n\r\n`));
      parts.push(vs.bytes);
      parts.push(utf8('\r\n'));
    }
  }
  parts.push(utf8(`--${boundary}--\r\n`));
  return { bytes: concatBytes(parts), type: `multipart/form-data; boundary=${boundary}` };
}

// https://fetch.spec.whatwg.org/#concept-bodyinit-extract
function extractBody(object) {
  if (implementsInterface(object, 'ReadableStream')) {
    // FIXME: a ReadableStream body is read whole before it is sent (no streamed uploads).
    return { stream: object, type: null };
  }
  if (typeof object === 'string') return { bytes: utf8(object), type: 'text/plain;charset=UTF-8' };
  if (implementsInterface(object, 'Blob')) {
    const s = slots.get(object);
    return { bytes: s.bytes.slice(), type: s.type || null };
  }
  const b = bytesOfBufferSource(object);
  if (b) return { bytes: b, type: null };
  if (implementsInterface(object, 'FormData')) return multipart(slots.get(object).list);
  if (implementsInterface(object, 'URLSearchParams')) {
    return { bytes: utf8(serializeQuery(slots.get(object).list)), type: 'application/x-www-form-urlencoded;charset=UTF-8' };
  }
  return { bytes: utf8(toUSVString(object)), type: 'text/plain;charset=UTF-8' };
}

// https://fetch.spec.whatwg.org/#headers-class
const forbiddenRequestHeaders = new Set(['accept-charset', 'accept-encoding', 'access-control-request-headers',
  'access-control-request-method', 'connection', 'content-length', 'cookie', 'cookie2', 'date', 'dnt', 'expect',
  'host', 'keep-alive', 'origin', 'referer', 'set-cookie', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'via']);

function normalizeHeaderValue(v) {
  return toDOMString(v).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, '');
}

function checkHeaderName(n) {
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(n)) throw new TypeError(`'${n}' is not a valid HTTP header name`);
}

function checkHeaderValue(v) {
  if (/[\0\r\n]/.test(v)) throw new TypeError(`'${v}' is not a valid HTTP header value`);
}

function headersAppend(s, name, value) {
  name = toDOMString(name);
  value = normalizeHeaderValue(value);
  checkHeaderName(name);
  checkHeaderValue(value);
  if (s.guard === 'immutable') throw new TypeError('Headers are immutable');
  if (s.guard === 'request' && (forbiddenRequestHeaders.has(name.toLowerCase()) || /^(proxy-|sec-)/i.test(name))) return;
  s.list.push([name, value]);
}

function fillHeaders(s, init) {
  if (init === undefined || init === null) return;
  if (typeof init !== 'object' && typeof init !== 'function') throw new TypeError('Headers init is not an object');
  if (implementsInterface(init, 'Headers')) {
    for (const [n, v] of slots.get(init).list) headersAppend(s, n, v);
  } else if (typeof init[Symbol.iterator] === 'function') {
    for (const pair of init) {
      const p = Array.from(pair);
      if (p.length !== 2) throw new TypeError('Each header pair must be a name and a value');
      headersAppend(s, p[0], p[1]);
    }
  } else {
    for (const k of Object.keys(init)) headersAppend(s, k, init[k]);
  }
}

function sortedHeaders(s) {
  const names = [...new Set(s.list.map(([n]) => n.toLowerCase()))].sort();
  const out = [];
  for (const n of names) {
    if (n === 'set-cookie') {
      for (const [m, v] of s.list) if (m.toLowerCase() === n) out.push([n, v]);
    } else {
      out.push([n, s.list.filter(([m]) => m.toLowerCase() === n).map(([, v]) => v).join(', ')]);
    }
  }
  return out;
}

defineInterface('Headers', {
  length: 0,
  construct(s, [init]) {
    s.list = [];
    s.guard = 'none';
    fillHeaders(s, init);
  },
  operations: {
    append: { length: 2, call(s, [n, v]) { headersAppend(s, n, v); } },
    delete: {
      length: 1,
      call(s, [n]) {
        n = toDOMString(n); checkHeaderName(n);
        if (s.guard === 'immutable') throw new TypeError('Headers are immutable');
        s.list = s.list.filter(([m]) => m.toLowerCase() !== n.toLowerCase());
      },
    },
    get: {
      length: 1,
      call(s, [n]) {
        n = toDOMString(n).toLowerCase(); checkHeaderName(n);
        const vs = s.list.filter(([m]) => m.toLowerCase() === n).map(([, v]) => v);
        return vs.length ? vs.join(', ') : null;
      },
    },
    getSetCookie: { call: s => s.list.filter(([m]) => m.toLowerCase() === 'set-cookie').map(([, v]) => v) },
    has: { length: 1, call(s, [n]) { n = toDOMString(n).toLowerCase(); checkHeaderName(n); return s.list.some(([m]) => m.toLowerCase() === n); } },
    set: {
      length: 2,
      call(s, [n, v]) {
        n = toDOMString(n); v = normalizeHeaderValue(v); checkHeaderName(n); checkHeaderValue(v);
        if (s.guard === 'immutable') throw new TypeError('Headers are immutable');
        const i = s.list.findIndex(([m]) => m.toLowerCase() === n.toLowerCase());
        if (i < 0) { headersAppend(s, n, v); return; }
        s.list[i] = [s.list[i][0], v];
        s.list = s.list.filter(([m], j) => j <= i || m.toLowerCase() !== n.toLowerCase());
      },
    },
    forEach: { length: 1, call(s, [cb, thisArg], self) { for (const [n, v] of sortedHeaders(s)) cb.call(thisArg, v, n, self); } },
    entries: { call: s => sortedHeaders(s)[Symbol.iterator]() },
    keys: { call: s => sortedHeaders(s).map(p => p[0])[Symbol.iterator]() },
    values: { call: s => sortedHeaders(s).map(p => p[1])[Symbol.iterator]() },
  },
  iterable: 'entries',
});

function newHeaders(list, guard) {
  return createObject('Headers', { list: list.map(p => [p[0], p[1]]), guard });
}

// The body mixin: https://fetch.spec.whatwg.org/#body-mixin. A body is in hand (`bytes`), or
// loaded from the engine on first read (`load()`).
function consumeBody(s, self) {
  if (s.bodyUsed) return Promise.reject(new TypeError('Body has already been consumed.'));
  if (s.stream) {
    const ss = slots.get(s.stream);
    if (ss.disturbed || ss.reader) return Promise.reject(new TypeError('Body has already been consumed.'));
    s.bodyUsed = true;
    return readAllFromStream(s.stream);
  }
  s.bodyUsed = s.hasBody;
  if (!s.hasBody) return Promise.resolve(new Uint8Array(0));
  if (s.bytes) return Promise.resolve(s.bytes);
  return s.load().then(buffer => new Uint8Array(buffer));
}

function mimeOf(s) {
  const h = slots.get(s.headers).list.find(([n]) => n.toLowerCase() === 'content-type');
  return h ? h[1] : '';
}

const bodyOperations = {
  arrayBuffer: { promise: true, call: (s, a, self) => consumeBody(s, self).then(b => b.slice().buffer) },
  bytes: { promise: true, call: (s, a, self) => consumeBody(s, self).then(b => b.slice()) },
  blob: { promise: true, call: (s, a, self) => consumeBody(s, self).then(b => createObject('Blob', { bytes: b.slice(), type: normalizeType(mimeOf(s)) })) },
  text: { promise: true, call: (s, a, self) => consumeBody(s, self).then(b => native.utf8Decode(b.slice().buffer)) },
  json: { promise: true, call: (s, a, self) => consumeBody(s, self).then(b => JSON.parse(native.utf8Decode(b.slice().buffer))) },
  formData: {
    promise: true,
    call: (s, a, self) => consumeBody(s, self).then(b => {
      const type = mimeOf(s);
      if (/^application\/x-www-form-urlencoded/i.test(type)) {
        const f = new global.FormData();
        for (const [n, v] of parseQuery(native.utf8Decode(b.slice().buffer))) f.append(n, v);
        return f;
      }
      throw new TypeError('FIXME: only application/x-www-form-urlencoded bodies are parsed by formData()');
    }),
  },
};

const bodyAttributes = {
  bodyUsed: { get: s => s.bodyUsed || !!(s.stream && slots.get(s.stream).disturbed) },
  // https://fetch.spec.whatwg.org/#dom-body-body: the body's stream, made on first use.
  body: {
    get(s) {
      if (!s.hasBody) return null;
      if (!s.stream) {
        if (s.bodyUsed) return null;
        if (!s.bytes && !s.chunk) {
          // A body loaded whole (the engine's request bodies): one chunk.
          const load = s.load;
          let done = false;
          s.chunk = () => (done ? Promise.resolve(null) : (done = true, load()));
        }
        s.stream = bodyStream(s);
      }
      return s.stream;
    },
  },
};

const methodNames = ['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT'];
const requestModes = ['navigate', 'same-origin', 'no-cors', 'cors'];
const requestCredentials = ['omit', 'same-origin', 'include'];
const requestCaches = ['default', 'no-store', 'reload', 'no-cache', 'force-cache', 'only-if-cached'];
const requestRedirects = ['follow', 'error', 'manual'];

function enumValue(v, values, what) {
  const s = toDOMString(v);
  if (!values.includes(s)) throw new TypeError(`'${s}' is not a valid value for enumeration ${what}`);
  return s;
}

function baseURL() {
  return native.sync('baseUrl', envId, null);
}

// https://fetch.spec.whatwg.org/#dom-request
defineInterface('Request', {
  length: 1,
  construct(s, args) {
    requireArguments(args, 1, "Failed to construct 'Request'");
    const [input, init] = args;
    const i = toDictionary(init, 'init');
    let r;
    if (implementsInterface(input, 'Request')) {
      const src = slots.get(input);
      if (src.bodyUsed) throw new TypeError('Cannot construct a Request with a Request object that has already been used.');
      r = {
        url: src.url, method: src.method, headerList: slots.get(src.headers).list.slice(), mode: src.mode,
        credentials: src.credentials, cache: src.cache, redirect: src.redirect, integrity: src.integrity,
        hasBody: src.hasBody, bytes: src.bytes, load: src.load, referrer: src.referrer, keepalive: src.keepalive,
      };
      if (i.body !== undefined && i.body !== null) src.bodyUsed = src.hasBody;
    } else {
      // 5.2-5.4: Parse input with baseURL; a failure or credentials is a TypeError.
      const parsed = parseURL(input, baseURL());
      if (!parsed) throw new TypeError(`Failed to construct 'Request': Invalid URL '${input}'`);
      if (parsed.username || parsed.password) {
        throw new TypeError(`Failed to construct 'Request': Request cannot be constructed from a URL that includes credentials: ${input}`);
      }
      r = {
        url: parsed.href, method: 'GET', headerList: [], mode: 'cors', credentials: 'same-origin',
        cache: 'default', redirect: 'follow', integrity: '', hasBody: false, bytes: null, load: null,
        referrer: 'about:client', keepalive: false,
      };
    }
    if (i.mode !== undefined) {
      r.mode = enumValue(i.mode, requestModes, 'RequestMode');
      if (r.mode === 'navigate') throw new TypeError("Failed to construct 'Request': Cannot construct a Request with a RequestInit whose mode member is set as 'navigate'.");
    }
    if (i.credentials !== undefined) r.credentials = enumValue(i.credentials, requestCredentials, 'RequestCredentials');
    if (i.cache !== undefined) r.cache = enumValue(i.cache, requestCaches, 'RequestCache');
    if (i.redirect !== undefined) r.redirect = enumValue(i.redirect, requestRedirects, 'RequestRedirect');
    if (i.integrity !== undefined) r.integrity = toDOMString(i.integrity);
    if (i.keepalive !== undefined) r.keepalive = toBoolean(i.keepalive);
    if (i.method !== undefined) {
      let m = toDOMString(i.method);
      if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(m)) throw new TypeError(`'${m}' is not a valid HTTP method.`);
      if (['CONNECT', 'TRACE', 'TRACK'].includes(m.toUpperCase())) throw new TypeError(`'${m}' HTTP method is unsupported.`);
      if (methodNames.includes(m.toUpperCase())) m = m.toUpperCase();
      r.method = m;
    }
    s.url = r.url;
    s.method = r.method;
    s.mode = r.mode;
    s.credentials = r.credentials;
    s.cache = r.cache;
    s.redirect = r.redirect;
    s.integrity = r.integrity;
    s.referrer = r.referrer;
    s.keepalive = r.keepalive;
    s.signal = createObject('AbortSignal', { listeners: [], aborted: false, reason: undefined });
    s.headers = newHeaders([], 'request');
    const hs = slots.get(s.headers);
    if (r.mode === 'no-cors') {
      if (!['GET', 'HEAD', 'POST'].includes(r.method)) throw new TypeError(`'${r.method}' is unsupported in no-cors mode.`);
      hs.guard = 'request-no-cors';
    }
    if (i.headers !== undefined) {
      const h = {list: [], guard: 'none'};
      fillHeaders(h, i.headers);
      for (const [n, v] of h.list) headersAppend(hs, n, v);
    } else {
      for (const [n, v] of r.headerList) headersAppend(hs, n, v);
    }
    const body = i.body;
    if ((body !== undefined && body !== null) || r.hasBody && body !== null && body !== undefined) {
      if (r.method === 'GET' || r.method === 'HEAD') throw new TypeError("Failed to construct 'Request': Request with GET/HEAD method cannot have body.");
    }
    if (body !== undefined && body !== null) {
      const e = extractBody(body);
      s.hasBody = true;
      s.bytes = e.bytes || null;
      if (e.stream) s.stream = e.stream;
      s.load = null;
      if (e.type !== null && !hs.list.some(([n]) => n.toLowerCase() === 'content-type')) hs.list.push(['Content-Type', e.type]);
    } else {
      s.hasBody = r.hasBody;
      s.bytes = r.bytes;
      s.load = r.load;
      if (r.hasBody && (r.method === 'GET' || r.method === 'HEAD')) throw new TypeError("Failed to construct 'Request': Request with GET/HEAD method cannot have body.");
    }
    s.bodyUsed = false;
  },
  attributes: Object.assign({
    method: { get: s => s.method },
    url: { get: s => s.url },
    headers: { get: s => s.headers },
    destination: { get: () => '' },
    referrer: { get: s => (s.referrer === 'no-referrer' ? '' : s.referrer) },
    referrerPolicy: { get: () => '' },
    mode: { get: s => s.mode },
    credentials: { get: s => s.credentials },
    cache: { get: s => s.cache },
    redirect: { get: s => s.redirect },
    integrity: { get: s => s.integrity },
    keepalive: { get: s => s.keepalive },
    isReloadNavigation: { get: () => false },
    isHistoryNavigation: { get: () => false },
    signal: { get: s => s.signal },
    duplex: { get: () => 'half' },
  }, bodyAttributes),
  operations: Object.assign({
    clone: {
      call(s) {
        if (s.bodyUsed) throw new TypeError("Failed to execute 'clone' on 'Request': Request body is already used");
        if (s.stream) throw new TypeError("FIXME: clone() of a body whose stream was taken (tee() is not implemented)");
        return createRequest(Object.assign({}, s, { headerList: slots.get(s.headers).list, bytes: s.bytes && s.bytes.slice() }));
      },
    },
  }, bodyOperations),
});

// A Request object from data (`{url, method, headers, mode, credentials, ...}`), for
// `record.request` and clone().
function createRequest(d) {
  const o = createObject('Request', {
    url: d.url, method: d.method, mode: d.mode, credentials: d.credentials, cache: d.cache || 'default',
    redirect: d.redirect || 'follow', integrity: d.integrity || '', referrer: d.referrer || 'about:client',
    keepalive: false, hasBody: !!d.hasBody, bytes: d.bytes || null, load: d.load || null, bodyUsed: false,
  });
  const s = slots.get(o);
  s.headers = newHeaders(d.headerList || d.headers || [], 'request');
  s.signal = createObject('AbortSignal', { listeners: [], aborted: false, reason: undefined });
  return o;
}

// What native.op needs of a request: its data, and its body as a buffer index.
function requestData(r, buffers) {
  const s = slots.get(r);
  let body = null;
  if (s.hasBody) {
    if (!s.bytes) throw new TypeError('FIXME: a request whose body is not in hand cannot be sent again');
    buffers.push(s.bytes.slice().buffer);
    body = buffers.length - 1;
  }
  return {
    url: s.url, method: s.method, headers: slots.get(s.headers).list, mode: s.mode,
    credentials: s.credentials, cache: s.cache, redirect: s.redirect, integrity: s.integrity, body,
  };
}

const nullBodyStatus = [101, 103, 204, 205, 304];

// https://fetch.spec.whatwg.org/#response-class
defineInterface('Response', {
  length: 0,
  construct(s, [body, init]) {
    const i = toDictionary(init, 'init');
    const status = i.status === undefined ? 200 : Number(i.status) & 0xffff;
    if (status < 200 || status > 599) throw new RangeError(`Failed to construct 'Response': The status provided (${status}) is outside the range [200, 599].`);
    const statusText = i.statusText === undefined ? '' : toDOMString(i.statusText);
    s.type = 'default';
    s.url = '';
    s.urlList = [];
    s.status = status;
    s.statusText = statusText;
    s.headers = newHeaders([], 'response');
    if (i.headers !== undefined) fillHeaders(slots.get(s.headers), i.headers);
    s.hasBody = false;
    s.bytes = null;
    s.bodyUsed = false;
    if (body !== undefined && body !== null) {
      if (nullBodyStatus.includes(status)) throw new TypeError('Response with null body status cannot have body');
      const e = extractBody(body);
      s.hasBody = true;
      s.bytes = e.bytes || null;
      if (e.stream) s.stream = e.stream;
      const hs = slots.get(s.headers);
      if (e.type !== null && !hs.list.some(([n]) => n.toLowerCase() === 'content-type')) hs.list.push(['Content-Type', e.type]);
    }
  },
  attributes: Object.assign({
    type: { get: s => s.type },
    url: { get: s => s.url },
    redirected: { get: s => s.urlList.length > 1 },
    status: { get: s => s.status },
    ok: { get: s => s.status >= 200 && s.status <= 299 },
    statusText: { get: s => s.statusText },
    headers: { get: s => s.headers },
  }, bodyAttributes),
  operations: Object.assign({
    clone: {
      call(s) {
        if (s.bodyUsed) throw new TypeError("Failed to execute 'clone' on 'Response': Response body is already used");
        if (s.stream) throw new TypeError("FIXME: clone() of a body whose stream was taken (tee() is not implemented)");
        if (s.hasBody && !s.bytes) {
          // Both copies read the one body from the engine.
          const once = s.load();
          s.load = () => once;
          return createResponse(Object.assign({}, s, { headers: slots.get(s.headers).list, load: () => once }));
        }
        return createResponse(Object.assign({}, s, { headers: slots.get(s.headers).list, bytes: s.bytes && s.bytes.slice() }));
      },
    },
  }, bodyOperations),
  statics: {
    error: { call: () => createResponse({ type: 'error', status: 0, statusText: '', headers: [], url: '', hasBody: false }) },
    redirect: {
      length: 1,
      call([url, status]) {
        const parsed = parseURL(url, baseURL());
        if (!parsed) throw new TypeError('Invalid URL');
        status = status === undefined ? 302 : Number(status);
        if (![301, 302, 303, 307, 308].includes(status)) throw new RangeError('Invalid redirect status');
        return createResponse({ type: 'default', status, statusText: '', headers: [['Location', parsed.href]], url: '', hasBody: false });
      },
    },
    json: {
      length: 1,
      call([data, init]) {
        const text = JSON.stringify(data);
        if (text === undefined) throw new TypeError('The data is not JSON-serializable');
        const r = new global.Response(text, init);
        const hs = slots.get(slots.get(r).headers);
        hs.list = hs.list.filter(([n]) => n.toLowerCase() !== 'content-type');
        hs.list.push(['Content-Type', 'application/json']);
        return r;
      },
    },
  },
});

// A Response object from data (`{status, statusText, headers, url, type}`), its body in
// `bytes` or loaded by `load()`.
function createResponse(d) {
  const o = createObject('Response', {
    type: d.type || 'basic', url: d.url || '', urlList: d.urlList || (d.url ? [d.url] : []), status: d.status,
    statusText: d.statusText || '', hasBody: d.hasBody !== false, bytes: d.bytes || null, load: d.load || null,
    chunk: d.chunk || null, stream: null, bodyUsed: false,
  });
  slots.get(o).headers = newHeaders(d.headers || [], 'immutable');
  return o;
}

// https://fetch.spec.whatwg.org/#fetch-method (the page's, through the loopback network): the
// native side runs main fetch's policy checks (bad port, mixed content, CSP) and the CORS
// protocol (natives.rs, "pageFetch").
defineValue(global, 'fetch', operationFunction('fetch', 1, function (input, init) {
  const request = new global.Request(input, init);
  const buffers = [];
  const data = requestData(request, buffers);
  return native.op('pageFetch', envId, data, ...buffers).then(
    head => createResponse({
      type: 'basic', status: head.status, statusText: head.statusText, headers: head.headers, url: head.url,
      hasBody: true, bytes: new Uint8Array(head.body),
    }),
    () => { throw new TypeError('Failed to fetch'); },
  );
}, true), true, false, true);
