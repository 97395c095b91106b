// MDN's backgroundfetchsuccess handler, as printed: note that it passes an async *function*
// to waitUntil(), not a promise. WebIDL converts it to a promise already fulfilled with the
// function, which is never called: the records are not copied and the UI is not updated.
addEventListener("backgroundfetchsuccess", (event) => {
  const bgFetch = event.registration;

  event.waitUntil(async () => {
    // Create/open a cache.
    const cache = await caches.open("movies");
    // Get all the records.
    const records = await bgFetch.matchAll();
    // Copy each request/response across.
    const promises = records.map(async (record) => {
      const response = await record.responseReady;
      await cache.put(record.request, response);
    });

    // Wait for the copying to complete.
    await Promise.all(promises);

    // Update the progress notification.
    event.updateUI({ title: "Movie download complete!" });
  });
});
