// The globals of each kind of realm: console, timers, queueMicrotask, structuredClone,
// location; the page's Window, navigator, test_driver and document stub; the host callback
// that receives the browser side's messages.

// https://console.spec.whatwg.org/ (printed by the host)
const consoleObject = {};
for (const level of ['log', 'info', 'warn', 'error', 'debug', 'trace']) {
  consoleObject[level] = (...args) => native.print(level, args.map(a => {
    if (typeof a === 'string') return a;
    try { return typeof a === 'object' && a !== null && !(a instanceof Error) ? JSON.stringify(a) : String(a); } catch (e) { return String(a); }
  }).join(' '));
}
defineValue(global, 'console', consoleObject, true, false, true);

// https://html.spec.whatwg.org/multipage/timers-and-user-prompts.html#timers
function timerHandler(handler, args) {
  return () => {
    try {
      if (typeof handler === 'function') handler.apply(global, args);
      else (0, global.eval)(toDOMString(handler));
    } catch (e) {
      reportException(e);
    }
  };
}
const intervals = new Map();
defineValue(global, 'setTimeout', function setTimeout(handler, timeout = 0, ...args) {
  return native.setTimer(timerHandler(handler, args), Number(timeout) || 0);
}, true, true, true);
defineValue(global, 'clearTimeout', function clearTimeout(id = 0) {
  native.clearTimer(Number(id) || 0);
}, true, true, true);
defineValue(global, 'setInterval', function setInterval(handler, timeout = 0, ...args) {
  const run = timerHandler(handler, args);
  const ms = Number(timeout) || 0;
  let id;
  const again = () => { const next = native.setTimer(again, ms); intervals.set(id, next); run(); };
  id = native.setTimer(again, ms);
  intervals.set(id, id);
  return id;
}, true, true, true);
defineValue(global, 'clearInterval', function clearInterval(id = 0) {
  native.clearTimer(intervals.get(id) || 0);
  intervals.delete(id);
}, true, true, true);
defineValue(global, 'queueMicrotask', function queueMicrotask(callback) {
  if (typeof callback !== 'function') throw new TypeError("Failed to execute 'queueMicrotask': parameter 1 is not of type 'Function'.");
  Promise.resolve().then(() => {
    try { callback(); } catch (e) { reportException(e); }
  });
}, true, true, true);
defineValue(global, 'structuredClone', function structuredClone(value) {
  return deserialize(serialize(value));
}, true, true, true);
defineValue(global, 'reportError', function reportError(e) { reportException(e); }, true, true, true);

// https://html.spec.whatwg.org/multipage/nav-history-apis.html#the-location-interface (read
// only) and WorkerLocation.
internal.makeLocation = (href, name) => {
  const u = parseURL(href);
  const o = Object.create(Object.prototype);
  for (const k of ['href', 'origin', 'protocol', 'host', 'hostname', 'port', 'pathname', 'search', 'hash']) {
    Object.defineProperty(o, k, { get: () => u[k], enumerable: true, configurable: true });
  }
  o.toString = () => u.href;
  Object.defineProperty(o, Symbol.toStringTag, { value: name, configurable: true });
  return o;
};

if (kind === 'window') {
  const pageURL = native.sync('baseUrl', envId, null);
  defineInterface('Window', {
    parent: 'EventTarget',
    global: true,
    attributes: {
      window: { get: () => global, global: true },
      self: { get: () => global, global: true },
      location: { get: s => s.location, global: true },
      navigator: { get: s => s.navigator, global: true },
      onerror: Object.assign(eventHandlerAttribute('error'), { global: true }),
      onload: Object.assign(eventHandlerAttribute('load'), { global: true }),
      onunhandledrejection: Object.assign(eventHandlerAttribute('unhandledrejection'), { global: true }),
      onmessage: Object.assign(eventHandlerAttribute('message'), { global: true }),
    },
  });
  defineInterface('Navigator', {
    attributes: {
      serviceWorker: { get: s => s.serviceWorker },
      userAgent: { get: () => 'background-fetch-js (Boa)' },
      onLine: { get: () => true },
    },
  });
  const ws = initSlots(global, 'Window', { listeners: [] });
  Object.setPrototypeOf(global, interfaces.Window.prototype);
  ws.location = internal.makeLocation(pageURL, 'Location');
  ws.navigator = createObject('Navigator', { serviceWorker: internal.serviceWorkerContainer });

  // test_driver (testdriver.js's API) answered by the host: utils.js loads testdriver.js only
  // when this is missing.
  defineValue(global, 'test_driver', {
    set_permission(descriptor, state) {
      native.settings('permission', toDOMString(state));
      return Promise.resolve();
    },
  }, true, false, true);

  // Defined once testharness.js has loaded (it would otherwise pick its window environment):
  // the `document` the upstream files touch. A <meta http-equiv=Content-Security-Policy>
  // appended to the head becomes the page's policy; a <script> loads and runs.
  defineValue(global, Symbol.for('background-fetch-js.afterHarness'), () => {
    const element = tag => {
      const attributes = new Map();
      const e = {
        tagName: tag.toUpperCase(),
        setAttribute(n, v) { attributes.set(String(n).toLowerCase(), String(v)); },
        getAttribute(n) { const v = attributes.get(String(n).toLowerCase()); return v === undefined ? null : v; },
        onload: null,
        onerror: null,
        src: '',
        async: true,
        content: '',
        httpEquiv: '',
      };
      return e;
    };
    const head = {
      appendChild(e) {
        if (e.tagName === 'META') {
          const equiv = (e.getAttribute('http-equiv') || e.httpEquiv || '').toLowerCase();
          if (equiv === 'content-security-policy') native.settings('csp', e.getAttribute('content') || e.content);
        } else if (e.tagName === 'SCRIPT') {
          native.queueTask(() => {
            const src = e.getAttribute('src') || e.src;
            try {
              const r = native.loadScript(parseURL(src, pageURL).href);
              if (r.status < 200 || r.status > 299) throw new Error(`${src} answered ${r.status}`);
              (0, global.eval)(r.text);
              if (typeof e.onload === 'function') e.onload(new global.Event('load'));
            } catch (err) {
              if (typeof e.onerror === 'function') e.onerror(new global.Event('error'));
              else reportException(err);
            }
          });
        }
        return e;
      },
    };
    const document = {
      head,
      body: head,
      documentElement: head,
      title: '',
      URL: pageURL,
      createElement: element,
      getElementsByTagName: () => [],
      querySelector: () => null,
      addEventListener() {},
    };
    defineValue(global, 'document', document, true, true, true);
  }, true, false, true);

  // The load event, after the page's scripts.
  defineValue(global, Symbol.for('background-fetch-js.load'), () => {
    fireEvent(global, new global.Event('load'));
  }, true, false, true);
}

// https://w3c.github.io/ServiceWorker/#self-caches (WindowOrWorkerGlobalScope)
extendInterface(kind === 'window' ? 'Window' : 'WorkerGlobalScope', {
  attributes: { caches: { get: () => internal.caches } },
});

native.setCallback(envId, msg => {
  switch (msg.type) {
    case 'progress':
      onProgress(msg.registration);
      break;
    case 'functionalevent':
      internal.functionalEvent(msg);
      break;
    case 'error':
      reportException(new Error(msg.message));
      break;
    case 'unhandledrejection': {
      // https://html.spec.whatwg.org/multipage/webappapis.html#notify-about-rejected-promises
      // (the promise's global: the realm whose Promise.prototype it has).
      if (Object.getPrototypeOf(msg.promise) !== Promise.prototype) break;
      const event = new global.PromiseRejectionEvent('unhandledrejection', { cancelable: true, promise: msg.promise, reason: msg.reason });
      slots.get(event).isTrusted = true;
      if (dispatchEvent(global, event)) {
        native.print('error', 'Uncaught (in promise) ' + (msg.reason && msg.reason.stack ? msg.reason.stack : String(msg.reason)));
      }
      break;
    }
  }
});

if (kind === 'window') {
  defineValue(global, Symbol.for('background-fetch-js.report'), r => native.report(r), true, false, true);
}
