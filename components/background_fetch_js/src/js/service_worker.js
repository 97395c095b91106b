// Service Workers (https://w3c.github.io/ServiceWorker/), as far as the upstream files and
// apps need: the page's navigator.serviceWorker (register with install and activate as later
// tasks, getRegistration, ready, message events), ServiceWorkerRegistration and
// ServiceWorker; the worker's global scope, ExtendableEvent, clients and importScripts; and
// the Background Fetch events fired at it.

const workerKey = Symbol.for('background-fetch-js.worker');

// https://w3c.github.io/ServiceWorker/#serviceworker-interface
defineInterface('ServiceWorker', {
  parent: 'EventTarget',
  attributes: {
    scriptURL: { get: s => s.scriptURL },
    state: { get: s => s.state },
    onstatechange: eventHandlerAttribute('statechange'),
    onerror: eventHandlerAttribute('error'),
  },
  operations: {
    // https://w3c.github.io/ServiceWorker/#service-worker-postmessage
    postMessage: {
      length: 1,
      call(s, [message]) {
        if (s.state === 'redundant') return;
        const record = serialize(message);
        s.control.message(record, s.sourceOfPage);
      },
    },
  },
});

// https://w3c.github.io/ServiceWorker/#serviceworkerregistration-interface
defineInterface('ServiceWorkerRegistration', {
  parent: 'EventTarget',
  attributes: {
    installing: { get: s => s.installing },
    waiting: { get: s => s.waiting },
    active: { get: s => s.active },
    navigationPreload: { get: () => null },
    scope: { get: s => s.scope },
    updateViaCache: { get: () => 'imports' },
    onupdatefound: eventHandlerAttribute('updatefound'),
  },
  operations: {
    update: { promise: true, call: (s, a, self) => self },
    unregister: {
      promise: true,
      call(s, a, self) {
        if (s.unregistered) return false;
        s.unregistered = true;
        if (registry.get(s.scope) === self) registry.delete(s.scope);
        native.settings('active', [s.scope, false]);
        native.settings('unregister', s.scope);
        for (const w of [s.installing, s.waiting, s.active]) if (w) slots.get(w).state = 'redundant';
        return true;
      },
    },
  },
});

// https://wicg.github.io/background-fetch/#service-worker-registration-background-fetch
extendInterface('ServiceWorkerRegistration', {
  attributes: {
    backgroundFetch: {
      get(s) {
        if (!s.manager) s.manager = createObject('BackgroundFetchManager', { registration: s });
        return s.manager;
      },
    },
  },
});

function registrationSlots(scope) {
  const s = { listeners: [], scope, installing: null, waiting: null, active: null, manager: null, unregistered: false };
  s.isActive = () => s.active !== null;
  return s;
}

// The page's registrations, by scope.
const registry = new Map();
let readyResolve = null;
let readyPromise = null;

function setState(worker, state) {
  slots.get(worker).state = state;
  fireEvent(worker, new global.Event('statechange'));
}

if (kind === 'window') {
  // https://w3c.github.io/ServiceWorker/#serviceworkercontainer-interface
  defineInterface('ServiceWorkerContainer', {
    parent: 'EventTarget',
    attributes: {
      controller: { get: () => null },
      ready: {
        get() {
          // https://w3c.github.io/ServiceWorker/#navigator-service-worker-ready: the
          // registration whose scope matches the page, once it has an active worker.
          if (!readyPromise) {
            readyPromise = new Promise(r => { readyResolve = r; });
            for (const reg of registry.values()) {
              const rs = slots.get(reg);
              if (rs.active && global.location.href.startsWith(rs.scope)) readyResolve(reg);
            }
          }
          return readyPromise;
        },
      },
      oncontrollerchange: eventHandlerAttribute('controllerchange'),
      onmessage: eventHandlerAttribute('message'),
      onmessageerror: eventHandlerAttribute('messageerror'),
    },
    operations: {
      // https://w3c.github.io/ServiceWorker/#navigator-service-worker-register
      register: {
        length: 1,
        promise: true,
        call(s, args) {
          requireArguments(args, 1, "Failed to execute 'register' on 'ServiceWorkerContainer'");
          const o = toDictionary(args[1], 'options');
          const script = parseURL(args[0], global.location.href);
          if (!script) throw new TypeError('Invalid script URL');
          const scope = parseURL(o.scope === undefined ? './' : o.scope, o.scope === undefined ? script.href : global.location.href);
          if (!scope) throw new TypeError('Invalid scope URL');
          return registerWorker(script.href, scope.href);
        },
      },
      getRegistration: {
        promise: true,
        call(s, [clientURL]) {
          const url = parseURL(clientURL === undefined ? '' : clientURL, global.location.href);
          if (!url) throw new TypeError('Invalid URL');
          // Match service worker registration: the longest matching scope.
          let best;
          for (const [scope, reg] of registry) {
            if (url.href.startsWith(scope) && (!best || scope.length > slots.get(best).scope.length)) best = reg;
          }
          return best;
        },
      },
      getRegistrations: { promise: true, call: () => Object.freeze([...registry.values()]) },
      startMessages: { call() {} },
    },
  });

  const container = createObject('ServiceWorkerContainer', { listeners: [] });

  // A message a worker posted to the page (Client.postMessage): a task on the page.
  const pageHooks = {
    deliver(record, worker) {
      native.queueTask(() => {
        const event = createObject('MessageEvent', {});
        initMessageEvent(slots.get(event), 'message', {
          data: deserialize(record), origin: global.location.origin, source: worker,
        });
        fireEvent(container, event);
      });
    },
  };

  function registerWorker(scriptURL, scope) {
    const created = native.createWorker(scriptURL, scope);
    const control = created.global[workerKey];
    const rs = registrationSlots(scope);
    const registration = createObject('ServiceWorkerRegistration', rs);
    registry.set(scope, registration);
    const worker = createObject('ServiceWorker', { listeners: [], scriptURL, state: 'parsed', control, sourceOfPage: null });
    control.setup(scope, global.location.href, pageHooks, worker);
    return new Promise((resolve, reject) => {
      native.queueTask(() => {
        // Run Service Worker, then Install: the promise resolves with installing set.
        const error = control.run();
        if (error) {
          registry.delete(scope);
          reject(new TypeError(`Failed to register a ServiceWorker: ${error}`));
          return;
        }
        rs.installing = worker;
        setState(worker, 'installing');
        resolve(registration);
        native.queueTask(() => {
          control.lifecycle('install').then(() => native.queueTask(() => {
            rs.installing = null;
            rs.waiting = worker;
            setState(worker, 'installed');
            native.queueTask(() => {
              rs.waiting = null;
              rs.active = worker;
              setState(worker, 'activating');
              control.lifecycle('activate').then(() => native.queueTask(() => {
                native.settings('active', [scope, true]);
                setState(worker, 'activated');
                if (readyResolve && global.location.href.startsWith(scope)) readyResolve(registration);
                for (const watch of activationWatchers.splice(0)) watch();
              }));
            });
          }));
        });
      });
    });
  }

  internal.serviceWorkerContainer = container;
}

if (kind === 'serviceworker') {
  // https://w3c.github.io/ServiceWorker/#extendableevent-interface
  function initExtendable(s, type, init) {
    const i = initEvent(s, type, init);
    s.pending = 0;
    s.rejected = false;
    s.onSettled = null;
    return i;
  }

  function isActive(s) {
    return s.dispatching || s.pending > 0;
  }

  defineInterface('ExtendableEvent', {
    parent: 'Event',
    length: 1,
    construct(s, args) {
      requireArguments(args, 1, "Failed to construct 'ExtendableEvent'");
      initExtendable(s, args[0], args[1]);
    },
    operations: {
      // https://w3c.github.io/ServiceWorker/#dom-extendableevent-waituntil
      waitUntil: {
        length: 1,
        call(s, args) {
          requireArguments(args, 1, "Failed to execute 'waitUntil' on 'ExtendableEvent'");
          // 1. If the isTrusted attribute is false, throw an "InvalidStateError".
          if (!s.isTrusted) throw newDOMException('The event is not trusted.', 'InvalidStateError');
          // 2. If event is not active, throw an "InvalidStateError".
          if (!isActive(s)) throw newDOMException('The event handler is already finished.', 'InvalidStateError');
          // 3. Add f to event's extend lifetime promises; 4. increment pending promises count.
          s.pending++;
          const settle = rejected => {
            // Upon fulfillment or rejection, queue a microtask to decrement the count.
            queueMicrotask(() => {
              if (rejected) s.rejected = true;
              s.pending--;
              if (s.pending === 0 && !s.dispatching && s.onSettled) s.onSettled();
            });
          };
          Promise.resolve(args[0]).then(() => settle(false), () => settle(true));
        },
      },
    },
  });

  // Dispatches a trusted extendable event at the global; resolves with 'completed' or
  // 'rejected' once it is no longer active.
  function dispatchExtendable(event) {
    const s = slots.get(event);
    fireEvent(global, event);
    return new Promise(resolve => {
      s.onSettled = () => resolve(s.rejected ? 'rejected' : 'completed');
      if (s.pending === 0) s.onSettled();
    });
  }

  defineInterface('ExtendableMessageEvent', {
    parent: 'ExtendableEvent',
    length: 1,
    construct(s, args) {
      requireArguments(args, 1, "Failed to construct 'ExtendableMessageEvent'");
      initExtendable(s, args[0], args[1]);
      initMessageEvent(s, args[0], args[1]);
    },
    attributes: messageEventAttributes,
  });

  // The constructor steps both events share: an ExtendableEvent whose init dictionary
  // (BackgroundFetchEventInit) requires a BackgroundFetchRegistration.
  function initBackgroundFetchEvent(s, args, name) {
    requireArguments(args, 2, `Failed to construct '${name}'`);
    const i = initExtendable(s, args[0], args[1]);
    if (i.registration === undefined) throw new TypeError("required member registration is undefined");
    slotsOf(i.registration, 'BackgroundFetchRegistration');
    s.registration = i.registration;
  }

  // https://wicg.github.io/background-fetch/#background-fetch-event
  defineInterface('BackgroundFetchEvent', {
    parent: 'ExtendableEvent',
    length: 2,
    construct(s, args) {
      initBackgroundFetchEvent(s, args, 'BackgroundFetchEvent');
    },
    attributes: { registration: { get: s => s.registration } },
  });

  // https://wicg.github.io/background-fetch/#background-fetch-update-ui-event
  defineInterface('BackgroundFetchUpdateUIEvent', {
    parent: 'BackgroundFetchEvent',
    length: 2,
    construct(s, args) {
      initBackgroundFetchEvent(s, args, 'BackgroundFetchUpdateUIEvent');
    },
    operations: {
      // https://wicg.github.io/background-fetch/#background-fetch-update-ui-event-update-ui
      updateUI: {
        promise: true,
        call(s, [options]) {
          // 1. If this's isTrusted is false, reject with an InvalidStateError (the engine
          //    checks the active flag and the update-UI flag through the event's token).
          if (!s.isTrusted || s.token === undefined) {
            throw newDOMException('The event is not trusted.', 'InvalidStateError');
          }
          const o = toDictionary(options, 'options');
          const ui = {};
          if (o.title !== undefined) ui.title = toDOMString(o.title);
          if (o.icons !== undefined) ui.icons = toSequence(o.icons, imageResource, 'icons');
          return engineOp('updateUI', { event: s.token, options: ui });
        },
      },
    },
  });

  // https://w3c.github.io/ServiceWorker/#client-interface
  defineInterface('Client', {
    attributes: {
      url: { get: s => s.url },
      frameType: { get: () => 'top-level' },
      id: { get: s => s.id },
      type: { get: () => 'window' },
    },
    operations: {
      postMessage: {
        length: 1,
        call(s, [message]) {
          s.hooks.deliver(serialize(message), s.worker);
        },
      },
    },
  });
  defineInterface('WindowClient', {
    parent: 'Client',
    attributes: {
      visibilityState: { get: () => 'visible' },
      focused: { get: () => true },
      ancestorOrigins: { get: () => Object.freeze([]) },
    },
    operations: {
      focus: { promise: true, call: (s, a, self) => self },
      navigate: { promise: true, call: () => { throw new TypeError('FIXME: WindowClient.navigate() is not supported'); } },
    },
  });

  // https://w3c.github.io/ServiceWorker/#clients-interface
  defineInterface('Clients', {
    operations: {
      get: { promise: true, length: 1, call: (s, [id]) => (s.page && slots.get(s.page).id === id ? s.page : undefined) },
      matchAll: {
        promise: true,
        call(s, [options]) {
          const o = toDictionary(options, 'options');
          // AD-HOC: the page is never controlled (no fetch interception), so it is listed only
          // with includeUncontrolled, as in browsers.
          return Object.freeze(o.includeUncontrolled && s.page ? [s.page] : []);
        },
      },
      // https://w3c.github.io/ServiceWorker/#clients-openwindow: there is no window to open
      // in this host; it resolves with null, as a browser does when the new window is not
      // same-origin or cannot be shown.
      openWindow: {
        promise: true,
        length: 1,
        call(s, [url]) {
          const u = parseURL(url, global.location.href);
          if (!u) throw new TypeError('Invalid URL');
          native.print('info', `clients.openWindow(${u.href})`);
          return null;
        },
      },
      claim: { promise: true, call: () => undefined },
    },
  });

  defineInterface('ServiceWorkerGlobalScope', {
    parent: 'WorkerGlobalScope',
    global: true,
    attributes: {
      clients: { get: s => s.clients, global: true },
      registration: { get: s => s.registration, global: true },
      serviceWorker: { get: s => s.serviceWorker, global: true },
      oninstall: Object.assign(eventHandlerAttribute('install'), { global: true }),
      onactivate: Object.assign(eventHandlerAttribute('activate'), { global: true }),
      onfetch: Object.assign(eventHandlerAttribute('fetch'), { global: true }),
      onmessage: Object.assign(eventHandlerAttribute('message'), { global: true }),
      onmessageerror: Object.assign(eventHandlerAttribute('messageerror'), { global: true }),
    },
    operations: {
      skipWaiting: { promise: true, call: () => undefined },
    },
  });

  // https://wicg.github.io/background-fetch/#service-worker-global-scope-events
  extendInterface('ServiceWorkerGlobalScope', {
    attributes: {
      onbackgroundfetchsuccess: Object.assign(eventHandlerAttribute('backgroundfetchsuccess'), { global: true }),
      onbackgroundfetchfail: Object.assign(eventHandlerAttribute('backgroundfetchfail'), { global: true }),
      onbackgroundfetchabort: Object.assign(eventHandlerAttribute('backgroundfetchabort'), { global: true }),
      onbackgroundfetchclick: Object.assign(eventHandlerAttribute('backgroundfetchclick'), { global: true }),
    },
  });

  const gs = initSlots(global, 'ServiceWorkerGlobalScope', { listeners: [] });
  Object.setPrototypeOf(global, interfaces.ServiceWorkerGlobalScope.prototype);

  // What the page's side calls to run this worker.
  defineValue(global, workerKey, {
    setup(scope, pageURL, hooks, pageWorker) {
      gs.scope = scope;
      gs.scriptURL = native.sync('baseUrl', envId, null);
      gs.location = internal.makeLocation(gs.scriptURL, 'WorkerLocation');
      const rs = registrationSlots(scope);
      gs.registration = createObject('ServiceWorkerRegistration', rs);
      gs.serviceWorker = createObject('ServiceWorker', { listeners: [], scriptURL: gs.scriptURL, state: 'parsed', control: null });
      rs.active = gs.serviceWorker;
      gs.clients = createObject('Clients', {});
      gs.page = createObject('WindowClient', { url: pageURL, id: 'page-' + envId, hooks, worker: pageWorker });
      slots.get(gs.clients).page = gs.page;
    },
    // Runs the script; returns an error message or null.
    run() {
      try {
        const response = native.loadScript(gs.scriptURL, gs.scope);
        if (response.status < 200 || response.status > 299) return `${gs.scriptURL} answered ${response.status}`;
        (0, global.eval)(response.text);
        return null;
      } catch (e) {
        reportException(e);
        return String(e);
      }
    },
    lifecycle(type) {
      const event = createObject('ExtendableEvent', {});
      initExtendable(slots.get(event), type, {});
      return dispatchExtendable(event);
    },
    // A message from the page (ServiceWorker.postMessage): a task here.
    message(record) {
      native.queueTask(() => {
        const event = createObject('ExtendableMessageEvent', {});
        const s = slots.get(event);
        initExtendable(s, 'message', {});
        initMessageEvent(s, 'message', { data: deserialize(record), origin: new global.URL(gs.page ? slots.get(gs.page).url : gs.scriptURL).origin, source: gs.page });
        dispatchExtendable(event);
      });
    },
  }, false, false, false);

  // A functional event from the engine: https://wicg.github.io/background-fetch/#fire-a-functional-event
  internal.functionalEvent = msg => {
    const registration = registrationObject(msg.registration);
    const type = msg.eventType;
    const name = type === 'backgroundfetchsuccess' || type === 'backgroundfetchfail'
      ? 'BackgroundFetchUpdateUIEvent' : 'BackgroundFetchEvent';
    const event = createObject(name, {});
    const s = slots.get(event);
    initExtendable(s, type, {});
    s.registration = registration;
    s.token = msg.event;
    dispatchExtendable(event).then(outcome => native.sync('eventDone', envId, { event: msg.event, outcome }));
  };
}
