// A service worker with no listeners (the host's own tests).
