// The host's own checks of platform pieces the upstream files touch only lightly, in
// testharness.js (served from the WPT root's resources/).
setup({allow_uncaught_exception: true});

promise_test(async t => {
  let seen = null;
  const listener = e => { seen = e.reason; };
  addEventListener('unhandledrejection', listener);
  t.add_cleanup(() => removeEventListener('unhandledrejection', listener));
  Promise.reject(new RangeError('boom'));
  await new Promise(r => step_timeout(r, 10));
  assert_true(seen instanceof RangeError);
  assert_equals(seen.message, 'boom');
}, 'unhandledrejection fires at the global after the microtask checkpoint');

test(() => {
  const original = {a: [1, 'two', null], b: new Map([[1, new Set(['x'])]]), d: new Date(5), u: new Uint8Array([1, 2])};
  original.self = original;
  const c = structuredClone(original);
  assert_not_equals(c, original);
  assert_equals(c.self, c);
  assert_array_equals(c.a, [1, 'two', null]);
  assert_true(c.b.get(1).has('x'));
  assert_equals(c.d.getTime(), 5);
  assert_array_equals(c.u, [1, 2]);
  assert_throws_dom('DataCloneError', () => structuredClone(() => 1));
}, 'structuredClone keeps the graph and refuses functions');

test(() => {
  const u = new URL('a?b=1#c', 'https://web-platform.test/d/e');
  assert_equals(u.href, 'https://web-platform.test/d/a?b=1#c');
  assert_equals(u.searchParams.get('b'), '1');
  u.searchParams.append('x', 'y z');
  assert_equals(u.search, '?b=1&x=y+z');
  assert_throws_js(TypeError, () => new URL('nope'));
}, 'URL and URLSearchParams');

promise_test(async () => {
  assert_equals(new TextDecoder().decode(new Uint8Array([0xEF, 0xBB, 0xBF, 0x68, 0xC3, 0xA9])), 'hé');
  assert_array_equals(new TextEncoder().encode('é'), [0xC3, 0xA9]);
  assert_equals(await new Response(new Uint8Array([0xEF, 0xBB, 0xBF, 0x6F, 0x6B])).text(), 'ok');
  const f = new FormData();
  f.append('a', 'b');
  f.append('file', new Blob(['xyz'], {type: 'text/plain'}), 'x.txt');
  const body = await new Request('/', {method: 'POST', body: f}).text();
  assert_true(body.includes('name="file"; filename="x.txt"'));
  assert_true(body.includes('xyz'));
}, 'text decoding removes a BOM; FormData bodies are multipart');

promise_test(async t => {
  const cache = await caches.open('movies');
  await cache.put('/a?x=1', new Response('A', {headers: {'X-Y': 'z'}}));
  const r = await cache.match('/a?x=1');
  assert_equals(await r.text(), 'A');
  assert_equals(r.headers.get('x-y'), 'z');
  assert_equals(await cache.match('/a'), undefined);
  assert_equals(await (await cache.match('/a', {ignoreSearch: true})).text(), 'A');
  assert_equals(await (await caches.match('/a?x=1')).text(), 'A');
  await promise_rejects_js(t, TypeError, cache.put(new Request('/p', {method: 'POST', body: 'x'}), new Response('')));
  assert_array_equals(await caches.keys(), ['movies']);
  assert_true(await cache.delete('/a?x=1'));
  assert_equals((await cache.keys()).length, 0);
  assert_true(await caches.delete('movies'));
  assert_false(await caches.has('movies'));
}, 'the Cache API');

test(() => {
  const e = new QuotaExceededError('full', {quota: 10, requested: 20});
  assert_true(e instanceof DOMException);
  assert_equals(e.code, 22);
  assert_equals(e.quota, 10);
  assert_throws_js(RangeError, () => new QuotaExceededError('', {quota: 20, requested: 10}));
  assert_equals(new DOMException('m', 'AbortError').code, 20);
  assert_true(Object.getOwnPropertyDescriptor(DOMException.prototype, 'name').enumerable);
}, 'DOMException and QuotaExceededError');

promise_test(async t => {
  const r = await fetch('/background-fetch/self-resource.txt');
  assert_equals(r.status, 404);
  const same = await fetch('/resources/testharness.js');
  assert_true(same.ok);
  assert_equals(same.type, 'basic');
  // Cross-origin without Access-Control-Allow-Origin: the CORS check fails.
  await promise_rejects_js(t, TypeError, fetch('https://www1.web-platform.test/resources/testharness.js'));
  // Mixed content is blocked.
  await promise_rejects_js(t, TypeError, fetch('http://web-platform.test/resources/testharness.js'));
}, "the page's fetch() runs the policy checks and the CORS protocol");
