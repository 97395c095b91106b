// A shared worker (the host's own tests): counts its connections and answers on each port.
let connections = 0;
onconnect = e => {
  connections++;
  const port = e.ports[0];
  const sourceIsPort = e.source === port;
  port.onmessage = m => port.postMessage({
    echo: m.data, connections, sourceIsPort, shared: self instanceof SharedWorkerGlobalScope,
    name: self.name,
  });
};
