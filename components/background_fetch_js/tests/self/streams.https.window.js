// A record's response body read as a ReadableStream while it downloads (the host's own test).

async function activeRegistration(t) {
  await test_driver.set_permission({name: 'background-fetch'}, 'granted');
  const registration = await navigator.serviceWorker.register('empty-sw.js', {scope: 'scope/streams'});
  t.add_cleanup(() => registration.unregister());
  const worker = registration.installing;
  await new Promise(resolve => worker.addEventListener('statechange', () => {
    if (worker.state === 'activated') resolve();
  }));
  return registration;
}

promise_test(async t => {
  const registration = await activeRegistration(t);
  const bgFetch = await registration.backgroundFetch.fetch('big', 'big.bin');
  const record = await bgFetch.match('big.bin');
  const response = await record.responseReady;
  assert_equals(response.status, 200);
  const reader = response.body.getReader();
  assert_true(response.body.locked);
  let total = 0;
  let chunks = 0;
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    assert_true(value instanceof Uint8Array);
    total += value.length;
    chunks++;
  }
  assert_equals(total, 1 << 20);
  assert_greater_than(chunks, 1);
  assert_true(response.bodyUsed);
  await promise_rejects_js(t, TypeError, response.text());
}, 'a record response body streams chunk by chunk');

promise_test(async () => {
  const stream = new ReadableStream({
    start(c) { c.enqueue(new TextEncoder().encode('ab')); c.enqueue(new TextEncoder().encode('c')); c.close(); },
  });
  assert_equals(await new Response(stream).text(), 'abc');
  const parts = [];
  for await (const chunk of new Response('xyz').body) parts.push(...chunk);
  assert_array_equals(parts, [120, 121, 122]);
}, 'ReadableStream bodies and async iteration');
