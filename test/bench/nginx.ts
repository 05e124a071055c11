// Scenario G: nginx as a reverse proxy to the same upstream, the native anchor. Optional: skipped when nginx is absent.
import { accessSync, constants, mkdirSync, writeFileSync, readFileSync, chmodSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

/** The nginx binary: $BENCH_NGINX when set (only it), else /usr/sbin/nginx or nginx on PATH; undefined when there is none. */
export function findNginx(): string | undefined {
  const override = process.env.BENCH_NGINX;
  const candidates = override ? [override] : ['/usr/sbin/nginx', ...(process.env.PATH ?? '').split(':').filter(Boolean).map((d) => path.join(d, 'nginx'))];
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export function nginxVersion(binary: string): string | undefined {
  // nginx -v prints "nginx version: nginx/1.22.1" on stderr.
  const run = spawnSync(binary, ['-v'], { encoding: 'utf8' });
  const text = `${run.stdout ?? ''}${run.stderr ?? ''}`.trim();
  return /nginx\/\S+/.exec(text)?.[0] ?? (text || undefined);
}

/**
 * One worker process (agentgate is one process too, so the ratio compares like with like), upstream keep-alive,
 * HTTP/1.1 to the upstream, and no access log (like the bare proxy B: the anchors do nothing but proxy).
 */
export function writeNginxConfig(baseDir: string, listenPort: number, upstreamPort: number): { prefix: string; conf: string; errorLog: string } {
  const prefix = path.join(baseDir, 'nginx');
  mkdirSync(prefix, { recursive: true });
  // Started as root, nginx's worker runs as an unprivileged user: it must be able to reach its temp folders.
  chmodSync(baseDir, 0o755);
  chmodSync(prefix, 0o755);
  const conf = path.join(prefix, 'nginx.conf');
  const errorLog = path.join(prefix, 'error.log');
  writeFileSync(
    conf,
    `worker_processes 1;
daemon off;
pid ${prefix}/nginx.pid;
error_log ${errorLog} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/client_body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  keepalive_requests 1000000;
  upstream bench_upstream {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${listenPort};
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
  );
  return { prefix, conf, errorLog };
}

export function readErrorLog(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
