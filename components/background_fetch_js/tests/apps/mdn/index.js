// The page of MDN's Background Fetch example (the "Background Fetch API" article), as printed:
// it waits for the service worker registration and starts a background fetch of an episode
// and its artwork, then logs progress.
navigator.serviceWorker.ready.then(async (swReg) => {
  const bgFetch = await swReg.backgroundFetch.fetch(
    "my-fetch",
    ["/ep-5.mp3", "ep-5-artwork.jpg"],
    {
      title: "Episode 5: Interesting things.",
      icons: [
        {
          sizes: "300x300",
          src: "/ep-5-icon.png",
          type: "image/png",
        },
      ],
      downloadTotal: 60 * 1024 * 1024,
    },
  );
  bgFetch.addEventListener("progress", () => {
    // If we didn't provide a total, we can't provide a %.
    if (!bgFetch.downloadTotal) return;

    const percent = Math.round(
      (bgFetch.downloaded / bgFetch.downloadTotal) * 100,
    );
    console.log(`Download progress: ${percent}%`);
  });
});
