// Web workers and channel messaging (HTML), as far as testharness.js's worker environments,
// idlharness.js and apps need: MessageChannel and MessagePort (entangled across realms, with
// port message queues and transfer), Worker and SharedWorker, and the worker global scopes
// (WorkerGlobalScope, DedicatedWorkerGlobalScope, SharedWorkerGlobalScope) with
// WorkerNavigator and its navigator.serviceWorker.
//
// https://html.spec.whatwg.org/multipage/web-messaging.html#channel-messaging
// https://html.spec.whatwg.org/multipage/workers.html
//
// Every worker global is a realm of the one event loop (see event_loop.rs), made by
// native.createWorker(url, null, kind) and connected to the engine as a Worker environment.

const workerGlobalKey = Symbol.for('background-fetch-js.workerGlobal');
const isWorkerKind = kind === 'dedicatedworker' || kind === 'sharedworker';

// https://html.spec.whatwg.org/multipage/workers.html#workerglobalscope
if (kind !== 'window') {
  defineInterface('WorkerGlobalScope', {
    parent: 'EventTarget',
    global: true,
    attributes: {
      self: { get: () => global, global: true },
      location: { get: s => s.location, global: true },
      navigator: { get: s => s.navigator, global: true },
      onerror: Object.assign(eventHandlerAttribute('error'), { global: true }),
      onunhandledrejection: Object.assign(eventHandlerAttribute('unhandledrejection'), { global: true }),
    },
    operations: {
      // https://html.spec.whatwg.org/multipage/workers.html#dom-workerglobalscope-importscripts
      importScripts: {
        call(s, urls) {
          for (const u of urls) {
            const url = parseURL(u, s.scriptURL);
            if (!url) throw newDOMException(`The URL '${u}' is invalid.`, 'SyntaxError');
            let response;
            try {
              // A service worker's imports are kept with its registration (s.scope).
              response = native.loadScript(url.href, s.scope);
            } catch (e) {
              throw newDOMException(`The script at '${url.href}' failed to load.`, 'NetworkError');
            }
            if (response.status < 200 || response.status > 299) {
              throw newDOMException(`The script at '${url.href}' failed to load.`, 'NetworkError');
            }
            (0, global.eval)(response.text);
          }
        },
      },
    },
  });

  // https://html.spec.whatwg.org/multipage/workers.html#workernavigator
  defineInterface('WorkerNavigator', {
    attributes: {
      userAgent: { get: () => 'background-fetch-js (Boa)' },
      onLine: { get: () => true },
    },
  });
}

// ---------------------------------------------------------------------------------------
// Channel messaging.
//
// A port's side of an entanglement is an "end", a realm-neutral record shared by the port
// object that owns it (in any realm) and the other side:
//   { peer: the other end, owner: the owning port's delivery function (null while shipped
//     or closed), enabled: its port message queue is enabled, queue: messages waiting for
//     it, closed }
// A message is { record, ends, portRecords } (StructuredSerializeWithTransfer's result).

function newEnds() {
  const a = { peer: null, owner: null, enabled: false, queue: [], closed: false };
  const b = { peer: a, owner: null, enabled: false, queue: [], closed: false };
  a.peer = b;
  return [a, b];
}

// Hands a message to an end: a task on its owner's event loop once its port message queue is
// enabled.
function postToEnd(end, message) {
  if (!end || end.closed) return;
  if (end.enabled && end.owner) end.owner(message);
  else end.queue.push(message);
}

// https://html.spec.whatwg.org/multipage/web-messaging.html#dom-messageport-start
function enableEnd(end) {
  if (end.enabled) return;
  end.enabled = true;
  const waiting = end.queue.splice(0);
  for (const m of waiting) if (end.owner) end.owner(m);
}

// https://html.spec.whatwg.org/multipage/structured-data.html#structuredserializewithtransfer
// (MessagePorts are the only transferable objects here).
function serializeWithTransfer(message, transfer, self) {
  const memory = new Map();
  const ports = [];
  const portRecords = [];
  for (const t of transfer) {
    // FIXME: ArrayBuffer and other transferables are not transferred.
    if (!implementsInterface(t, 'MessagePort')) {
      throw newDOMException('Only MessagePorts can be transferred.', 'DataCloneError');
    }
    if (memory.has(t)) throw newDOMException('A port is listed twice in the transfer list.', 'DataCloneError');
    if (t === self || !slots.get(t).end) {
      throw newDOMException('A port could not be transferred.', 'DataCloneError');
    }
    const rec = { t: 'port', i: ports.length };
    memory.set(t, rec);
    ports.push(t);
    portRecords.push(rec);
  }
  const record = serialize(message, memory);
  // The transfer steps of MessagePort: the end moves with the message.
  const ends = ports.map(p => {
    const s = slots.get(p);
    const end = s.end;
    s.end = null;
    end.owner = null;
    return end;
  });
  return { record, ends, portRecords };
}

// https://html.spec.whatwg.org/multipage/structured-data.html#structureddeserializewithtransfer:
// the data and the new ports, in this realm.
function deserializeWithTransfer(message) {
  const memory = new Map();
  const ports = message.ends.map((end, i) => {
    const port = portForEnd(end);
    memory.set(message.portRecords[i], port);
    return port;
  });
  return { data: deserialize(message.record, memory), ports };
}

// postMessage's (message, transfer) or (message, options) overloads.
function transferList(arg) {
  if (arg !== null && typeof arg === 'object' && typeof arg[Symbol.iterator] === 'function') {
    return toSequence(arg, x => x, 'transfer');
  }
  const o = toDictionary(arg, 'options');
  return o.transfer === undefined ? [] : toSequence(o.transfer, x => x, 'transfer');
}

// Queues a task of this realm that the global's closing flag discards
// (https://html.spec.whatwg.org/multipage/workers.html#dom-workerglobalscope-close).
function queueGlobalTask(step) {
  native.queueTask(() => {
    if (internal.closing) return;
    try {
      step();
    } catch (e) {
      reportException(e);
    }
  });
}

// Fires a MessageEvent named "message" for `message` at `target`.
function fireMessage(target, message, source = null) {
  let data;
  let ports;
  try {
    ({ data, ports } = deserializeWithTransfer(message));
  } catch (e) {
    const error = createObject('MessageEvent', {});
    initMessageEvent(slots.get(error), 'messageerror', {});
    fireEvent(target, error);
    return;
  }
  const event = createObject('MessageEvent', {});
  initMessageEvent(slots.get(event), 'message', { data, ports, source });
  fireEvent(target, event);
}

// A MessagePort of this realm owning `end`.
function portForEnd(end) {
  const port = createObject('MessagePort', { listeners: [], end });
  end.owner = m => queueGlobalTask(() => fireMessage(port, m));
  return port;
}

// https://html.spec.whatwg.org/multipage/web-messaging.html#message-ports
const portOnMessage = eventHandlerAttribute('message');
defineInterface('MessagePort', {
  parent: 'EventTarget',
  attributes: {
    onclose: eventHandlerAttribute('close'),
    // The onmessage setter enables the port message queue ("the first time a MessagePort
    // object's onmessage IDL attribute is set, the port's port message queue must be
    // enabled, as if the start() method had been called").
    onmessage: {
      get: portOnMessage.get,
      set(s, v, self) {
        portOnMessage.set(s, v, self);
        if (s.end) enableEnd(s.end);
      },
    },
    onmessageerror: eventHandlerAttribute('messageerror'),
  },
  operations: {
    // https://html.spec.whatwg.org/multipage/web-messaging.html#dom-messageport-postmessage
    postMessage: {
      length: 1,
      call(s, args, self) {
        requireArguments(args, 1, "Failed to execute 'postMessage' on 'MessagePort'");
        // 1. Let targetPort be the port with which this is entangled, if any; otherwise null.
        const target = s.end && !s.end.closed ? s.end.peer : null;
        // 2. Let options be «[ "transfer" → transfer ]». 3. Run the message port post
        //    message steps: serialize with transfer (DataCloneError before anything else).
        const message = serializeWithTransfer(args[0], transferList(args[1]), self);
        // If targetPort is null, return; otherwise add a task to its port message queue.
        if (target) postToEnd(target, message);
      },
    },
    start: { call(s) { if (s.end) enableEnd(s.end); } },
    // https://html.spec.whatwg.org/multipage/web-messaging.html#dom-messageport-close
    close: {
      call(s) {
        // 1. Set this's [[Detached]] to true. 2. Disentangle (the other side's close event
        //    is not fired: FIXME).
        if (s.end) {
          s.end.closed = true;
          s.end.peer.closed = true;
          s.end.owner = null;
        }
      },
    },
  },
});

// https://html.spec.whatwg.org/multipage/web-messaging.html#message-channels
defineInterface('MessageChannel', {
  construct(s) {
    // 1. Set this's port 1 and port 2 to new MessagePorts in this's relevant realm.
    // 3. Entangle them.
    const [a, b] = newEnds();
    s.port1 = portForEnd(a);
    s.port2 = portForEnd(b);
  },
  attributes: {
    port1: { get: s => s.port1 },
    port2: { get: s => s.port2 },
  },
});

// ---------------------------------------------------------------------------------------
// Workers, as their creators see them.

// The settings of this realm that a worker's URL is parsed against.
function apiBaseURL() {
  return kind === 'window' ? global.location.href : slots.get(global).scriptURL;
}

// https://html.spec.whatwg.org/multipage/workers.html#run-a-worker (for a new global of
// `workerKind`): the realm, then the script in a later task. Returns the new global's
// control object.
function runWorker(url, workerKind, name, outside) {
  const created = native.createWorker(url, null, workerKind);
  const control = created.global[workerGlobalKey];
  control.setup(url, name, outside);
  native.queueTask(() => {
    // "Fetch a classic worker script", then run it.
    const error = control.run();
    if (error === 'network') {
      // "If the algorithm asynchronously completes with null, ... queue a global task ... to
      //  fire an event named error at worker."
      queueGlobalTask(() => fireEvent(outside.worker, new global.Event('error')));
    }
  });
  return control;
}

// An uncaught exception of a worker's script that its global's error event did not cancel is
// reported at the Worker object, as an ErrorEvent of this realm.
function workerErrorAt(worker) {
  return info => queueGlobalTask(() => {
    const event = createObject('ErrorEvent', {});
    const s = slots.get(event);
    initEvent(s, 'error', { cancelable: true });
    Object.assign(s, { message: info.message, filename: info.filename, lineno: 0, colno: 0, error: null });
    fireEvent(worker, event);
  });
}

if (kind === 'window' || kind === 'dedicatedworker' || kind === 'sharedworker') {
  // https://html.spec.whatwg.org/multipage/workers.html#dedicated-workers-and-the-worker-interface
  defineInterface('Worker', {
    parent: 'EventTarget',
    length: 1,
    construct(s, args, self) {
      requireArguments(args, 1, "Failed to construct 'Worker'");
      const o = toDictionary(args[1], 'options');
      const type = o.type === undefined ? 'classic' : toDOMString(o.type);
      if (type !== 'classic') throw new TypeError('FIXME: module workers are not supported');
      const name = o.name === undefined ? '' : toDOMString(o.name);
      // 5. Let worker URL be the result of encoding-parsing a URL given scriptURL, relative
      //    to outside settings. 6. If worker URL is failure, throw a "SyntaxError".
      const url = parseURL(toUSVString(args[0]), apiBaseURL());
      if (!url) throw newDOMException(`Failed to construct 'Worker': the URL '${args[0]}' is invalid.`, 'SyntaxError');
      // 7. Let outside port be a new MessagePort in outside settings's realm (the worker's
      //    implicit port: its queue is enabled from the start).
      const [outsideEnd, insideEnd] = newEnds();
      s.listeners = [];
      s.end = outsideEnd;
      outsideEnd.owner = m => queueGlobalTask(() => fireMessage(self, m));
      outsideEnd.enabled = true;
      // 9. Run a worker given worker, worker URL, outside settings, outside port, options.
      s.control = runWorker(url.href, 'dedicatedworker', name, {
        worker: self, end: insideEnd, error: workerErrorAt(self), host: workerHost(),
      });
    },
    attributes: {
      onmessage: eventHandlerAttribute('message'),
      onmessageerror: eventHandlerAttribute('messageerror'),
      onerror: eventHandlerAttribute('error'),
    },
    operations: {
      // https://html.spec.whatwg.org/multipage/workers.html#dom-worker-terminate
      terminate: { call(s) { s.control.terminate(); } },
      // https://html.spec.whatwg.org/multipage/workers.html#dom-worker-postmessage: "act as
      // if ... invoked postMessage() on the outside port".
      postMessage: {
        length: 1,
        call(s, args) {
          requireArguments(args, 1, "Failed to execute 'postMessage' on 'Worker'");
          const message = serializeWithTransfer(args[0], transferList(args[1]), null);
          if (!s.end.closed) postToEnd(s.end.peer, message);
        },
      },
    },
  });
}

// The shared workers of this page, by constructor URL and name.
// AD-HOC: shared among the page's SharedWorker objects only (one page per event loop here).
const sharedWorkers = new Map();

if (kind === 'window') {
  // https://html.spec.whatwg.org/multipage/workers.html#shared-workers-and-the-sharedworker-interface
  defineInterface('SharedWorker', {
    parent: 'EventTarget',
    length: 1,
    construct(s, args, self) {
      requireArguments(args, 1, "Failed to construct 'SharedWorker'");
      const options = typeof args[1] === 'string' ? { name: args[1] } : toDictionary(args[1], 'options');
      const name = options.name === undefined ? '' : toDOMString(options.name);
      const url = parseURL(toUSVString(args[0]), apiBaseURL());
      if (!url) throw newDOMException(`Failed to construct 'SharedWorker': the URL '${args[0]}' is invalid.`, 'SyntaxError');
      // 9. Let outside port be a new MessagePort in outside settings's realm.
      // 10. Set this's port to outside port.
      const [outsideEnd, insideEnd] = newEnds();
      s.listeners = [];
      s.port = portForEnd(outsideEnd);
      const connection = { worker: self, end: insideEnd, error: workerErrorAt(self), host: workerHost() };
      // 12. If there is a SharedWorkerGlobalScope with the same constructor URL and name,
      //     queue a task to fire "connect" at it with a new port; otherwise run a worker.
      const key = `${url.href} ${name}`;
      const existing = sharedWorkers.get(key);
      if (existing && !existing.closed()) {
        existing.connect(connection);
      } else {
        const control = runWorker(url.href, 'sharedworker', name, connection);
        sharedWorkers.set(key, control);
      }
    },
    attributes: {
      port: { get: s => s.port },
      onerror: eventHandlerAttribute('error'),
    },
  });
}

// Called once each time one of the page's registrations gets an active worker
// (service_worker.js).
const activationWatchers = [];

// What a worker's navigator.serviceWorker reads of the page's registrations.
// AD-HOC: a worker's service worker client is its page's (there is no fetch interception);
// its ServiceWorkerRegistration objects are its own, over the page's registrations.
function workerHost() {
  if (kind !== 'window') return slots.get(global).host;
  return {
    registrations: () => [...registry.values()].map(r => {
      const rs = slots.get(r);
      return { scope: rs.scope, active: rs.active !== null, scriptURL: rs.active ? slots.get(rs.active).scriptURL : null };
    }),
    whenActivated: callback => activationWatchers.push(callback),
  };
}

// ---------------------------------------------------------------------------------------
// The worker global scopes.

if (isWorkerKind) {
  // https://w3c.github.io/ServiceWorker/#serviceworkercontainer-interface, in a worker.
  const registrations = new Map();
  const registrationFor = d => {
    let reg = registrations.get(d.scope);
    if (!reg) {
      const rs = registrationSlots(d.scope);
      reg = createObject('ServiceWorkerRegistration', rs);
      registrations.set(d.scope, reg);
    }
    const rs = slots.get(reg);
    if (d.active && !rs.active) {
      rs.active = createObject('ServiceWorker', { listeners: [], scriptURL: d.scriptURL, state: 'activated', control: null });
    }
    return reg;
  };
  const matching = url => {
    let best = null;
    for (const d of slots.get(global).host.registrations()) {
      if (url.startsWith(d.scope) && (!best || d.scope.length > best.scope.length)) best = d;
    }
    return best;
  };
  defineInterface('ServiceWorkerContainer', {
    parent: 'EventTarget',
    attributes: {
      controller: { get: () => null },
      // https://w3c.github.io/ServiceWorker/#navigator-service-worker-ready: the registration
      // matching the worker's creation URL, once it has an active worker.
      ready: {
        get(s) {
          if (!s.ready) {
            s.ready = new Promise(resolve => {
              const check = () => {
                const d = matching(slots.get(global).scriptURL);
                if (d && d.active) queueGlobalTask(() => resolve(registrationFor(d)));
                else slots.get(global).host.whenActivated(check);
              };
              check();
            });
          }
          return s.ready;
        },
      },
      oncontrollerchange: eventHandlerAttribute('controllerchange'),
      onmessage: eventHandlerAttribute('message'),
      onmessageerror: eventHandlerAttribute('messageerror'),
    },
    operations: {
      register: {
        length: 1,
        promise: true,
        call() {
          throw newDOMException('FIXME: register() is not supported in workers here.', 'NotSupportedError');
        },
      },
      getRegistration: {
        promise: true,
        call(s, [clientURL]) {
          const url = parseURL(clientURL === undefined ? '' : clientURL, slots.get(global).scriptURL);
          if (!url) throw new TypeError('Invalid URL');
          const d = matching(url.href);
          return d ? registrationFor(d) : undefined;
        },
      },
      getRegistrations: {
        promise: true,
        call: () => Object.freeze(slots.get(global).host.registrations().map(registrationFor)),
      },
      startMessages: { call() {} },
    },
  });

  // https://w3c.github.io/ServiceWorker/#navigator-serviceworker (WorkerNavigator partial)
  extendInterface('WorkerNavigator', {
    attributes: { serviceWorker: { get: s => s.serviceWorker } },
  });

  const nameAttribute = { get: s => s.name, global: true };
  const closeOperation = {
    // https://html.spec.whatwg.org/multipage/workers.html#dom-dedicatedworkerglobalscope-close:
    // "set this's closing flag to true" (queued tasks are discarded).
    // FIXME: timers already set still run.
    call() { internal.closing = true; },
  };

  if (kind === 'dedicatedworker') {
    // https://html.spec.whatwg.org/multipage/workers.html#dedicatedworkerglobalscope
    defineInterface('DedicatedWorkerGlobalScope', {
      parent: 'WorkerGlobalScope',
      global: true,
      attributes: {
        name: nameAttribute,
        onmessage: Object.assign(eventHandlerAttribute('message'), { global: true }),
        onmessageerror: Object.assign(eventHandlerAttribute('messageerror'), { global: true }),
      },
      operations: {
        // https://html.spec.whatwg.org/multipage/workers.html#dom-dedicatedworkerglobalscope-postmessage:
        // "act as if ... invoked postMessage() on the port" (the inside port).
        postMessage: {
          length: 1,
          call(s, args) {
            requireArguments(args, 1, "Failed to execute 'postMessage' on 'DedicatedWorkerGlobalScope'");
            const message = serializeWithTransfer(args[0], transferList(args[1]), null);
            if (s.end && !s.end.closed) postToEnd(s.end.peer, message);
          },
        },
        close: closeOperation,
      },
    });
  } else {
    // https://html.spec.whatwg.org/multipage/workers.html#sharedworkerglobalscope
    defineInterface('SharedWorkerGlobalScope', {
      parent: 'WorkerGlobalScope',
      global: true,
      attributes: {
        name: nameAttribute,
        onconnect: Object.assign(eventHandlerAttribute('connect'), { global: true }),
      },
      operations: { close: closeOperation },
    });
  }

  const gs = initSlots(global, kind === 'dedicatedworker' ? 'DedicatedWorkerGlobalScope' : 'SharedWorkerGlobalScope', { listeners: [] });
  Object.setPrototypeOf(global, interfaces[kind === 'dedicatedworker' ? 'DedicatedWorkerGlobalScope' : 'SharedWorkerGlobalScope'].prototype);

  // https://html.spec.whatwg.org/multipage/workers.html#dom-sharedworker: "fire an event
  // named connect at worker global scope, using MessageEvent, with the data attribute
  // initialized to the empty string, the ports attribute initialized to a new frozen array
  // containing inside port, and the source attribute initialized to inside port".
  function connect(connection) {
    queueGlobalTask(() => {
      const port = portForEnd(connection.end);
      const event = createObject('MessageEvent', {});
      initMessageEvent(slots.get(event), 'connect', { data: '', ports: [port], source: port });
      fireEvent(global, event);
    });
  }

  // Uncaught exceptions that the global's error event did not cancel go to the worker
  // object (https://html.spec.whatwg.org/multipage/workers.html#runtime-script-errors-2).
  internal.uncaught = (e, s) => {
    if (gs.connection) gs.connection.error({ message: s.message, filename: s.filename });
  };

  // What the creating realm calls to run this worker.
  defineValue(global, workerGlobalKey, {
    setup(url, name, connection) {
      gs.scriptURL = url;
      gs.name = name;
      gs.connection = connection;
      gs.host = connection.host;
      gs.location = internal.makeLocation(url, 'WorkerLocation');
      gs.navigator = createObject('WorkerNavigator', {
        serviceWorker: createObject('ServiceWorkerContainer', { listeners: [] }),
      });
      if (kind === 'dedicatedworker') {
        // The inside port is the global's implicit port: its messages fire at the global.
        gs.end = connection.end;
        gs.end.owner = m => queueGlobalTask(() => fireMessage(global, m));
      }
    },
    // Runs the script: null, 'network' (it could not be fetched) or 'exception'.
    run() {
      let response;
      try {
        response = native.loadScript(gs.scriptURL);
      } catch (e) {
        return 'network';
      }
      if (response.status < 200 || response.status > 299) return 'network';
      let error = null;
      try {
        (0, global.eval)(response.text);
      } catch (e) {
        reportException(e);
        error = 'exception';
      }
      // "Enable outside port's port message queue" / the implicit port's, after the script.
      if (kind === 'dedicatedworker') enableEnd(gs.end);
      else connect(gs.connection);
      return error;
    },
    connect,
    closed: () => !!internal.closing,
    // https://html.spec.whatwg.org/multipage/workers.html#terminate-a-worker
    terminate() {
      internal.closing = true;
      if (gs.end) {
        gs.end.closed = true;
        gs.end.peer.closed = true;
      }
    },
  }, false, false, false);
}
