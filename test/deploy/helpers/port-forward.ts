// Run inside a pod's network namespace (nsenter --net): forwards each Unix socket DIR/PORT.sock to 127.0.0.1:PORT there,
// so a test outside the namespace reaches the pod like `kubectl port-forward`. Usage: port-forward.ts DIR PORT...
import { connect, createServer } from 'node:net';
import path from 'node:path';

const [dir, ...ports] = process.argv.slice(2);
if (!dir || ports.length === 0) throw new Error('usage: port-forward.ts DIR PORT...');

let listening = 0;
for (const port of ports) {
  const server = createServer((client) => {
    const upstream = connect(Number(port), '127.0.0.1');
    client.pipe(upstream).pipe(client);
    // A refused or reset connection inside the pod reaches the client as a closed socket, as a real port would.
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  server.listen(path.join(dir, `${port}.sock`), () => {
    if (++listening === ports.length) process.stdout.write('ready\n');
  });
}
