// Dedicated and shared workers and channel messaging (the host's own tests).

function nextMessage(target) {
  return new Promise(resolve => target.addEventListener('message', e => resolve(e), { once: true }));
}

promise_test(async () => {
  const channel = new MessageChannel();
  assert_true(channel.port1 instanceof MessagePort);
  channel.port1.postMessage({ a: [1, 2], m: new Map([['k', 'v']]) });
  channel.port2.start();
  const e = await nextMessage(channel.port2);
  assert_true(e instanceof MessageEvent);
  assert_array_equals(e.data.a, [1, 2]);
  assert_equals(e.data.m.get('k'), 'v');
  assert_throws_dom('DataCloneError', () => channel.port1.postMessage(() => 1));
  assert_throws_dom('DataCloneError', () => channel.port1.postMessage(null, [channel.port1]));
}, 'MessageChannel: messages wait for start(), and are cloned');

promise_test(async () => {
  const channel = new MessageChannel();
  let received = null;
  channel.port2.postMessage('early');
  await new Promise(r => step_timeout(r, 0));
  channel.port1.onmessage = e => { received = e.data; };
  await new Promise(r => step_timeout(r, 0));
  assert_equals(received, 'early');
  channel.port1.close();
  received = null;
  channel.port2.postMessage('late');
  await new Promise(r => step_timeout(r, 0));
  assert_equals(received, null);
}, 'MessagePort: setting onmessage starts the port; a closed port gets nothing');

promise_test(async () => {
  const worker = new Worker('worker-echo.js', { name: 'w1' });
  worker.postMessage('shape');
  const shape = (await nextMessage(worker)).data;
  assert_true(shape.dedicated, 'DedicatedWorkerGlobalScope');
  assert_true(shape.worker, 'WorkerGlobalScope');
  assert_true(shape.eventTarget, 'EventTarget');
  assert_equals(shape.location, '/background-fetch/worker-echo.js');
  assert_equals(shape.name, 'w1');
  assert_array_equals(shape.exposed, ['BackgroundFetchManager', 'BackgroundFetchRegistration',
    'BackgroundFetchRecord', 'ServiceWorkerRegistration', 'ServiceWorkerContainer', 'MessageChannel', 'Worker']);
  assert_array_equals(shape.notExposed, ['BackgroundFetchEvent', 'BackgroundFetchUpdateUIEvent',
    'ExtendableEvent', 'ServiceWorkerGlobalScope', 'SharedWorker', 'SharedWorkerGlobalScope', 'Window', 'document']);
  assert_equals(shape.navigator, '[object WorkerNavigator]');
  assert_true(shape.container);
  worker.postMessage({ nested: [new Date(3)] });
  const echo = (await nextMessage(worker)).data;
  assert_equals(echo.echo.nested[0].getTime(), 3);
}, 'Worker: a DedicatedWorkerGlobalScope with the Window-and-Worker interfaces only, and messages both ways');

promise_test(async () => {
  const worker = new Worker('worker-echo.js');
  const channel = new MessageChannel();
  worker.postMessage({ port: channel.port2 }, [channel.port2]);
  const e = await nextMessage(channel.port1.start() || channel.port1);
  assert_equals(e.data.same, true, 'the port in the data is the one in ports');
  assert_equals(e.data.viaPort, '[object MessagePort]');
  assert_throws_dom('DataCloneError', () => worker.postMessage(null, [channel.port2]), 'a port already transferred');
}, 'Worker: a MessagePort transferred to a worker answers there');

promise_test(async () => {
  const worker = new Worker('worker-echo.js');
  const seen = new Promise(resolve => { worker.onerror = e => { e.preventDefault(); resolve(e); }; });
  worker.postMessage('throw');
  const e = await seen;
  assert_true(e instanceof ErrorEvent);
  assert_true(e.message.includes('thrown in the worker'), e.message);
  const missing = new Worker('no-such-worker.js');
  const error = await new Promise(resolve => { missing.onerror = resolve; });
  assert_equals(error.type, 'error');
}, "Worker: a worker's uncaught exception and a script that does not load fire error at the Worker");

promise_test(async () => {
  const worker = new Worker('worker-echo.js');
  const messages = [];
  worker.onmessage = e => messages.push(e.data);
  worker.postMessage('close');
  worker.postMessage('ignored');
  await new Promise(r => step_timeout(r, 10));
  assert_array_equals(messages, ['posted before closing']);
  const other = new Worker('worker-echo.js');
  other.terminate();
  other.onmessage = e => messages.push(e.data);
  other.postMessage('after terminate');
  await new Promise(r => step_timeout(r, 10));
  assert_array_equals(messages, ['posted before closing']);
}, 'Worker: close() and terminate() stop the worker');

promise_test(async () => {
  const a = new SharedWorker('shared-echo.js', 'shared');
  const b = new SharedWorker('shared-echo.js', { name: 'shared' });
  assert_true(a.port instanceof MessagePort);
  a.port.start();
  a.port.postMessage('from a');
  const first = (await nextMessage(a.port)).data;
  assert_equals(first.echo, 'from a');
  assert_true(first.shared);
  assert_true(first.sourceIsPort, 'connect event source is its port');
  assert_equals(first.name, 'shared');
  b.port.onmessage = null;
  b.port.start();
  b.port.postMessage('from b');
  const second = (await nextMessage(b.port)).data;
  assert_equals(second.echo, 'from b');
  assert_equals(second.connections, 2, 'both objects reach one global');
}, 'SharedWorker: one global per URL and name, a connect event with a port per object');

promise_test(async t => {
  await test_driver.set_permission({ name: 'background-fetch' }, 'granted');
  // The worker's navigator.serviceWorker.ready waits for a registration whose scope matches
  // its script's URL to get an active worker.
  const worker = new Worker('worker-echo.js');
  let activated = false;
  const ready = nextMessage(worker).then(e => ({ data: e.data, activated }));
  worker.postMessage('ready');
  await new Promise(r => step_timeout(r, 10));
  const registration = await navigator.serviceWorker.register('empty-sw.js', { scope: './' });
  t.add_cleanup(() => registration.unregister());
  const installing = registration.installing;
  await new Promise(resolve => installing.addEventListener('statechange', () => {
    if (installing.state === 'activated') {
      activated = true;
      resolve();
    }
  }));
  const answer = await ready;
  assert_true(answer.activated, 'ready resolved after the activation');
  assert_equals(answer.data.scope, new URL('./', location.href).href);
  assert_true(answer.data.active);
  // Its registration's backgroundFetch reaches the engine through the worker's connection.
  worker.postMessage({ fetch: 'from-a-worker', scope: './' });
  const fetched = (await nextMessage(worker)).data;
  assert_equals(fetched.error, undefined);
  assert_equals(fetched.id, 'from-a-worker');
  assert_array_equals(fetched.ids, ['from-a-worker']);
  const seen = await registration.backgroundFetch.get('from-a-worker');
  assert_equals(seen.id, 'from-a-worker', "the page sees the worker's background fetch");
}, "A dedicated worker's navigator.serviceWorker: ready, and registrations that start background fetches");
