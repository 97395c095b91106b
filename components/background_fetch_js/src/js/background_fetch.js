// The Background Fetch API: https://wicg.github.io/background-fetch/ (the IDL of
// interfaces/background-fetch.idl). The algorithms run in the engine; these bindings convert
// arguments, call it through native.op and keep one object per background fetch per realm.

// https://wicg.github.io/background-fetch/#background-fetch-manager
defineInterface('BackgroundFetchManager', {
  operations: {
    // https://wicg.github.io/background-fetch/#background-fetch-manager-fetch
    fetch: {
      length: 2,
      promise: true,
      call(s, args) {
        requireArguments(args, 2, "Failed to execute 'fetch' on 'BackgroundFetchManager'");
        const id = toDOMString(args[0]);
        let requests = args[1];
        // (RequestInfo or sequence<RequestInfo>): an iterable object that is not a Request is
        // the sequence.
        if (requests !== null && typeof requests === 'object' && !implementsInterface(requests, 'Request') &&
            typeof requests[Symbol.iterator] === 'function') {
          requests = toSequence(requests, x => (implementsInterface(x, 'Request') ? x : toUSVString(x)), 'requests');
        } else {
          requests = [implementsInterface(requests, 'Request') ? requests : toUSVString(requests)];
        }
        const o = toDictionary(args[2], 'options');
        const options = { downloadTotal: toUnsignedLongLong(o.downloadTotal === undefined ? 0 : o.downloadTotal) };
        if (o.title !== undefined) options.title = toDOMString(o.title);
        if (o.icons !== undefined) options.icons = toSequence(o.icons, imageResource, 'icons');
        // 6.1. Let internalRequest be the request of the result of invoking the Request
        //      constructor with request. If this throws an exception, return a promise
        //      rejected with the exception.
        const buffers = [];
        const data = requests.map(r => requestData(new global.Request(r), buffers));
        const reg = s.registration;
        return engineOp('fetch', { scope: reg.scope, id, requests: data, options, active: reg.isActive() }, ...buffers)
          .then(d => registrationObject(d));
      },
    },
    // https://wicg.github.io/background-fetch/#background-fetch-manager-get
    get: {
      length: 1,
      promise: true,
      call(s, args) {
        requireArguments(args, 1, "Failed to execute 'get' on 'BackgroundFetchManager'");
        const id = toDOMString(args[0]);
        return engineOp('get', { scope: s.registration.scope, id }).then(d => (d === null ? undefined : registrationObject(d)));
      },
    },
    // https://wicg.github.io/background-fetch/#background-fetch-manager-getIds
    getIds: {
      promise: true,
      call(s) {
        return engineOp('getIds', { scope: s.registration.scope }).then(ids => Object.freeze(ids.slice()));
      },
    },
  },
});

function imageResource(v) {
  const i = toDictionary(v, 'ImageResource');
  if (i.src === undefined) throw new TypeError("required member src is undefined");
  const out = { src: toUSVString(i.src) };
  if (i.sizes !== undefined) out.sizes = toDOMString(i.sizes);
  if (i.type !== undefined) out.type = toDOMString(i.type);
  if (i.label !== undefined) out.label = toDOMString(i.label);
  return out;
}

// This realm's BackgroundFetchRegistration objects, by background fetch.
const registrationObjects = new Map();

function registrationObject(d) {
  let o = registrationObjects.get(d.uid);
  if (!o) {
    o = createObject('BackgroundFetchRegistration', { uid: d.uid, listeners: [], data: d });
    registrationObjects.set(d.uid, o);
  }
  slots.get(o).data = d;
  return o;
}

// The instance's current values: the engine updates them ("update background fetch
// instances"), so they are read live.
function liveData(s) {
  const d = native.sync('regData', envId, s.uid);
  if (d) s.data = d;
  return s.data;
}

function queryOptions(v) {
  const o = toDictionary(v, 'options');
  return { ignoreSearch: toBoolean(o.ignoreSearch), ignoreMethod: toBoolean(o.ignoreMethod), ignoreVary: toBoolean(o.ignoreVary) };
}

function recordObjects(list) {
  return list.map(r => {
    const request = createRequest({
      url: r.request.url, method: r.request.method, headers: r.request.headers, mode: r.request.mode,
      credentials: r.request.credentials, cache: r.request.cache, redirect: r.request.redirect,
      integrity: r.request.integrity, referrer: r.request.referrer, hasBody: r.hasBody,
      load: () => engineOp('requestBody', { record: r.record }),
    });
    return createObject('BackgroundFetchRecord', { record: r.record, request, responseReady: null });
  });
}

function matchAll(s, request, options) {
  const buffers = [];
  const data = request === undefined ? null : requestData(new global.Request(request), buffers);
  return engineOp('matchAll', { uid: s.uid, request: data, options: queryOptions(options) }, ...buffers).then(recordObjects);
}

// https://wicg.github.io/background-fetch/#background-fetch-registration
defineInterface('BackgroundFetchRegistration', {
  parent: 'EventTarget',
  attributes: {
    id: { get: s => s.data.id },
    uploadTotal: { get: s => liveData(s).uploadTotal },
    uploaded: { get: s => liveData(s).uploaded },
    downloadTotal: { get: s => liveData(s).downloadTotal },
    downloaded: { get: s => liveData(s).downloaded },
    result: { get: s => liveData(s).result },
    failureReason: { get: s => liveData(s).failureReason },
    recordsAvailable: { get: s => liveData(s).recordsAvailable },
    onprogress: eventHandlerAttribute('progress'),
  },
  operations: {
    // https://wicg.github.io/background-fetch/#background-fetch-registration-abort
    abort: { promise: true, call: s => engineOp('abort', { uid: s.uid }) },
    // https://wicg.github.io/background-fetch/#background-fetch-registration-match
    match: {
      length: 1,
      promise: true,
      call(s, args) {
        requireArguments(args, 1, "Failed to execute 'match' on 'BackgroundFetchRegistration'");
        const [request, options] = args;
        return matchAll(s, implementsInterface(request, 'Request') ? request : toUSVString(request), options)
          .then(records => records[0]);
      },
    },
    // https://wicg.github.io/background-fetch/#background-fetch-registration-matchall
    matchAll: {
      promise: true,
      call(s, [request, options]) {
        const r = request === undefined ? undefined : implementsInterface(request, 'Request') ? request : toUSVString(request);
        return matchAll(s, r, options);
      },
    },
  },
});

// https://wicg.github.io/background-fetch/#background-fetch-record
defineInterface('BackgroundFetchRecord', {
  attributes: {
    request: { get: s => s.request },
    responseReady: {
      promise: true,
      get(s) {
        if (!s.responseReady) {
          s.responseReady = engineOp('responseReady', { record: s.record }).then(d => createResponse({
            type: d.type, status: d.status, statusText: d.statusText, headers: d.headers, url: d.url,
            urlList: d.urlList, hasBody: true, load: () => engineOp('body', { response: d.response }),
            // The body as it downloads: the engine's chunks, in order.
            chunk: () => engineOp('bodyChunk', { response: d.response }),
          }));
        }
        return s.responseReady;
      },
    },
  },
});

// The browser side's progress notifications: update background fetch instances, step 6.10:
// fire an event named "progress" at the instance.
function onProgress(d) {
  const o = registrationObjects.get(d.uid);
  if (!o) return;
  slots.get(o).data = d;
  fireEvent(o, new global.Event('progress'));
}
