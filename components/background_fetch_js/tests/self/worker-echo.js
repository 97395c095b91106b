// A dedicated worker (the host's own tests): answers what its global looks like, echoes
// messages, answers on transferred ports, and starts a background fetch through
// navigator.serviceWorker.
onmessage = e => {
  const m = e.data;
  if (m === 'shape') {
    postMessage({
      dedicated: self instanceof DedicatedWorkerGlobalScope,
      worker: self instanceof WorkerGlobalScope,
      eventTarget: self instanceof EventTarget,
      location: location.pathname,
      name: self.name,
      exposed: ['BackgroundFetchManager', 'BackgroundFetchRegistration', 'BackgroundFetchRecord',
        'ServiceWorkerRegistration', 'ServiceWorkerContainer', 'MessageChannel', 'Worker']
        .filter(n => n in self),
      notExposed: ['BackgroundFetchEvent', 'BackgroundFetchUpdateUIEvent', 'ExtendableEvent',
        'ServiceWorkerGlobalScope', 'SharedWorker', 'SharedWorkerGlobalScope', 'Window', 'document']
        .filter(n => !(n in self)),
      navigator: Object.prototype.toString.call(navigator),
      container: navigator.serviceWorker instanceof ServiceWorkerContainer,
    });
  } else if (m && m.port) {
    e.ports[0].postMessage({ viaPort: Object.prototype.toString.call(m.port), same: e.ports[0] === m.port });
  } else if (m && m.fetch) {
    (async () => {
      const registration = await navigator.serviceWorker.getRegistration(m.scope);
      const bgFetch = await registration.backgroundFetch.fetch(m.fetch, 'big.bin');
      postMessage({ id: bgFetch.id, ids: await registration.backgroundFetch.getIds() });
    })().catch(error => postMessage({ error: String(error) }));
  } else if (m === 'ready') {
    navigator.serviceWorker.ready.then(r => postMessage({ scope: r.scope, active: r.active !== null }));
  } else if (m === 'throw') {
    throw new RangeError('thrown in the worker');
  } else if (m === 'close') {
    close();
    postMessage('posted before closing');
  } else {
    postMessage({ echo: m });
  }
};
