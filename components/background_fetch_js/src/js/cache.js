// The Cache API: https://w3c.github.io/ServiceWorker/#cache-objects. The entries are kept by
// the host (native.sync('cache*')), shared by the page and its service workers; matching and
// the batch operations run here.

// A change of the caches (cacheOpen, cacheDelete, cacheWrite). The host writes it through to
// its store first; a write that failed (a full disk) changed nothing, and the operation
// throws (its promise rejects) with an UnknownError, as Chromium's storage errors do.
function cacheChange(name, value) {
  const out = native.sync(name, envId, value);
  if (out !== null && typeof out === 'object' && 'storageError' in out) {
    throw newDOMException(out.storageError, 'UnknownError');
  }
  return out;
}

function cacheRequest(request) {
  return implementsInterface(request, 'Request') ? request : new global.Request(request);
}

function stripFragment(url) {
  const i = url.indexOf('#');
  return i < 0 ? url : url.slice(0, i);
}

function stripQuery(url) {
  const u = stripFragment(url);
  const i = u.indexOf('?');
  return i < 0 ? u : u.slice(0, i);
}

function headerValue(list, name) {
  const vs = list.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
  return vs.length ? vs.join(', ') : null;
}

// https://w3c.github.io/ServiceWorker/#request-matches-cached-item-algorithm
function requestMatchesCachedItem(query, entry, options) {
  // 1. If options["ignoreMethod"] is false and requestQuery's method is not `GET`, return false.
  if (!options.ignoreMethod && query.method !== 'GET') return false;
  // 2.-6. Compare the URLs, excluding fragments (and the queries with ignoreSearch).
  const strip = options.ignoreSearch ? stripQuery : stripFragment;
  if (strip(query.url) !== strip(entry.request.url)) return false;
  // 7. If response is null, options["ignoreVary"] is true, or response's header list does not
  //    contain `Vary`, return true.
  const vary = headerValue(entry.response.headers, 'vary');
  if (options.ignoreVary || vary === null) return true;
  // 8. For each fieldValue of the Vary values: `*` or a different header value is no match.
  for (const field of vary.split(',').map(f => f.trim().toLowerCase()).filter(Boolean)) {
    if (field === '*') return false;
    if (headerValue(entry.request.headers, field) !== headerValue(query.headers, field)) return false;
  }
  return true;
}

function queryData(request) {
  const s = slots.get(request);
  return { url: s.url, method: s.method, headers: slots.get(s.headers).list };
}

// https://w3c.github.io/ServiceWorker/#query-cache
function queryCache(name, request, options) {
  const entries = native.sync('cacheEntries', envId, name) || [];
  if (request === undefined) return entries;
  const query = queryData(request);
  return entries.filter(e => requestMatchesCachedItem(query, e, options));
}

function responseFromEntry(e) {
  return createResponse({
    type: e.response.type, status: e.response.status, statusText: e.response.statusText,
    headers: e.response.headers, url: e.response.url, hasBody: true,
    load: () => Promise.resolve(native.sync('cacheBody', envId, e.id)),
  });
}

function requestFromEntry(e) {
  return createRequest({ url: e.request.url, method: e.request.method, headers: e.request.headers, mode: 'cors', credentials: 'same-origin' });
}

function cacheQueryOptions(v) {
  const o = toDictionary(v, 'options');
  return { ignoreSearch: toBoolean(o.ignoreSearch), ignoreMethod: toBoolean(o.ignoreMethod), ignoreVary: toBoolean(o.ignoreVary) };
}

function cacheMatchAll(s, request, options) {
  let r;
  if (request !== undefined) {
    r = cacheRequest(request);
    if (slots.get(r).method !== 'GET' && !options.ignoreMethod) return [];
  }
  return queryCache(s.name, r, options).map(responseFromEntry);
}

// https://w3c.github.io/ServiceWorker/#cache-put
async function cachePut(name, request, response) {
  const rs = slots.get(request);
  // 2.-3. A request that is not http(s) or not GET is a TypeError.
  if (!/^https?:/.test(rs.url) || rs.method !== 'GET') {
    throw new TypeError("Failed to execute 'put' on 'Cache': Request method or scheme is unsupported");
  }
  const ps = slots.get(response);
  // 5. A 206 response is a TypeError.
  if (ps.status === 206) throw new TypeError("Failed to execute 'put' on 'Cache': Partial response (status code 206) is unsupported");
  // 6. A Vary of `*` is a TypeError.
  const vary = headerValue(slots.get(ps.headers).list, 'vary');
  if (vary !== null && vary.split(',').some(f => f.trim() === '*')) throw new TypeError("Failed to execute 'put' on 'Cache': Vary header contains *");
  // 7. A used body is a TypeError.
  if (ps.bodyUsed) throw new TypeError("Failed to execute 'put' on 'Cache': Response body is already used");
  const bytes = await consumeBody(ps, response);
  const id = native.sync('cacheAddBody', envId, null, bytes.slice().buffer);
  const query = queryData(request);
  const kept = (native.sync('cacheEntries', envId, name) || [])
    .filter(e => !requestMatchesCachedItem(query, e, {}));
  kept.push({
    id, request: query,
    response: { status: ps.status, statusText: ps.statusText, headers: slots.get(ps.headers).list, url: ps.url, type: ps.type },
  });
  cacheChange('cacheWrite', { name, entries: kept });
}

defineInterface('Cache', {
  operations: {
    match: {
      length: 1,
      promise: true,
      call(s, args) {
        requireArguments(args, 1, "Failed to execute 'match' on 'Cache'");
        return cacheMatchAll(s, args[0], cacheQueryOptions(args[1]))[0];
      },
    },
    matchAll: {
      promise: true,
      call: (s, [request, options]) => Object.freeze(cacheMatchAll(s, request, cacheQueryOptions(options))),
    },
    add: {
      length: 1,
      promise: true,
      call(s, args, self) {
        requireArguments(args, 1, "Failed to execute 'add' on 'Cache'");
        return self.addAll([args[0]]);
      },
    },
    addAll: {
      length: 1,
      promise: true,
      async call(s, [requests]) {
        const list = toSequence(requests, cacheRequest, 'requests');
        const responses = await Promise.all(list.map(r => global.fetch(r)));
        for (const r of responses) {
          if (!r.ok) throw new TypeError(`Failed to execute 'addAll' on 'Cache': Request failed (${r.status})`);
        }
        for (let i = 0; i < list.length; i++) await cachePut(s.name, list[i], responses[i]);
      },
    },
    put: {
      length: 2,
      promise: true,
      call(s, args) {
        requireArguments(args, 2, "Failed to execute 'put' on 'Cache'");
        const response = args[1];
        slotsOf(response, 'Response');
        return cachePut(s.name, cacheRequest(args[0]), response);
      },
    },
    delete: {
      length: 1,
      promise: true,
      call(s, args) {
        requireArguments(args, 1, "Failed to execute 'delete' on 'Cache'");
        const options = cacheQueryOptions(args[1]);
        const r = cacheRequest(args[0]);
        if (slots.get(r).method !== 'GET' && !options.ignoreMethod) return false;
        const query = queryData(r);
        const entries = native.sync('cacheEntries', envId, s.name) || [];
        const kept = entries.filter(e => !requestMatchesCachedItem(query, e, options));
        cacheChange('cacheWrite', { name: s.name, entries: kept });
        return kept.length !== entries.length;
      },
    },
    keys: {
      promise: true,
      call(s, [request, options]) {
        const o = cacheQueryOptions(options);
        let r;
        if (request !== undefined) {
          r = cacheRequest(request);
          if (slots.get(r).method !== 'GET' && !o.ignoreMethod) return Object.freeze([]);
        }
        return Object.freeze(queryCache(s.name, r, o).map(requestFromEntry));
      },
    },
  },
});

// https://w3c.github.io/ServiceWorker/#cachestorage-interface
defineInterface('CacheStorage', {
  operations: {
    match: {
      length: 1,
      promise: true,
      call(s, args) {
        requireArguments(args, 1, "Failed to execute 'match' on 'CacheStorage'");
        const o = toDictionary(args[1], 'options');
        const options = cacheQueryOptions(o);
        const names = o.cacheName !== undefined ? [toDOMString(o.cacheName)] : native.sync('cacheNames', envId, null);
        for (const name of names) {
          if (!native.sync('cacheNames', envId, null).includes(name)) return undefined;
          const found = cacheMatchAll({ name }, args[0], options)[0];
          if (found) return found;
        }
        return undefined;
      },
    },
    has: { length: 1, promise: true, call: (s, [name]) => native.sync('cacheNames', envId, null).includes(toDOMString(name)) },
    open: {
      length: 1,
      promise: true,
      call(s, args) {
        requireArguments(args, 1, "Failed to execute 'open' on 'CacheStorage'");
        const name = toDOMString(args[0]);
        cacheChange('cacheOpen', name);
        return createObject('Cache', { name });
      },
    },
    delete: { length: 1, promise: true, call: (s, [name]) => cacheChange('cacheDelete', toDOMString(name)) },
    keys: { promise: true, call: () => native.sync('cacheNames', envId, null) },
  },
});

internal.caches = createObject('CacheStorage', {});
