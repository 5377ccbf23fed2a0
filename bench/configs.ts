// Configuration files for our own instances of the third-party servers.
// Every instance listens on 127.0.0.1 at a port we chose, runs in the
// foreground, and keeps pid, log and temp files in its own directory.
import fs from 'node:fs';
import path from 'node:path';

export const BODY_1K = 1024;
export const BODY_1M = 1024 * 1024;
export const POST_BODY = 64 * 1024;

/** nginx temp paths default to /var/lib/nginx; keep them in our directory. */
function nginxTempPaths(dir: string): string {
  return ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((k) => `  ${k}_temp_path ${path.join(dir, `tmp-${k}`)};`)
    .join('\n');
}

/**
 * Origin: one nginx worker serving fixed bodies from files.
 * POST /post: the `mirror` module with mirror_request_body reads the whole
 * request body before the content phase (so keep-alive holds and no proxy
 * sees an early response); the static module then answers 405 for POST,
 * which error_page turns into a 200 with a small body.
 */
export function nginxOrigin(dir: string, port: number): string {
  const www = path.join(dir, 'www');
  fs.mkdirSync(www, { recursive: true });
  fs.writeFileSync(path.join(www, '1k'), Buffer.alloc(BODY_1K, 'a'));
  fs.writeFileSync(path.join(www, '1m'), Buffer.alloc(BODY_1M, 'b'));
  fs.writeFileSync(path.join(www, 'post'), 'unused\n');
  fs.writeFileSync(path.join(www, 'ok'), 'ok\n');
  return `worker_processes 1;
daemon off;
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'error.log')} error;
worker_rlimit_nofile 65536;
events { worker_connections 8192; }
http {
  access_log off;
${nginxTempPaths(dir)}
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    root ${www};
    location = /1k { }
    location = /1m { }
    location = /post {
      client_body_buffer_size 128k;
      client_max_body_size 1m;
      mirror /_drain;
      mirror_request_body on;
      error_page 405 =200 /ok;
    }
    location = /_drain { internal; return 204; }
    location = /ok { }
    location / { return 404; }
  }
}
`;
}

/**
 * nginx as reverse proxy: upstream keep-alive, no access log, no disk buffering.
 * One worker unless the scaling group asks for more; the workers share one
 * listening socket (no `reuseport`), as Gatewise's cluster workers do.
 */
export function nginxProxy(dir: string, port: number, origin: number, workers = 1): string {
  return `worker_processes ${workers};
daemon off;
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'error.log')} error;
worker_rlimit_nofile 65536;
events { worker_connections 8192; }
http {
  access_log off;
${nginxTempPaths(dir)}
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  upstream origin {
    server 127.0.0.1:${origin};
    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    client_body_buffer_size 128k;
    client_max_body_size 2m;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;
    }
  }
}
`;
}

/** HAProxy: one thread, keep-alive on both sides, connections to the origin always reused. */
export function haproxy(port: number, origin: number): string {
  return `global
  nbthread 1

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  option http-keep-alive
  http-reuse always

frontend fe
  bind 127.0.0.1:${port}
  default_backend be

backend be
  server origin 127.0.0.1:${origin}
`;
}

/**
 * Squid: forward proxy, no disk cache, caching disabled, no access log,
 * CONNECT allowed to any port (the origin is not on 443), DNS only to
 * loopback (requests use IP literals, so it never resolves anything).
 */
export function squid(dir: string, port: number): string {
  return `http_port 127.0.0.1:${port}
pid_filename ${path.join(dir, 'squid.pid')}
cache_log ${path.join(dir, 'cache.log')}
access_log none
cache_store_log none
logfile_rotate 0
coredump_dir ${dir}
netdb_filename none
cache deny all
cache_mem 8 MB
pinger_enable off
visible_hostname gatewise-bench
dns_nameservers 127.0.0.1
shutdown_lifetime 0 seconds
max_filedescriptors 65536
client_persistent_connections on
server_persistent_connections on
forwarded_for delete
via off
http_access allow all
`;
}

/** Tinyproxy: forward proxy; no ConnectPort line means CONNECT to any port is allowed. */
export function tinyproxy(dir: string, port: number): string {
  return `User nobody
Group nogroup
Port ${port}
Listen 127.0.0.1
Timeout 600
MaxClients 1000
PidFile "${path.join(dir, 'tinyproxy.pid')}"
LogFile "${path.join(dir, 'tinyproxy.log')}"
LogLevel Critical
DisableViaHeader Yes
Allow 127.0.0.1
`;
}

/** Dante: SOCKS5 without authentication, CONNECT only, loopback in and out. */
export function danted(dir: string, port: number): string {
  return `logoutput: ${path.join(dir, 'danted.log')}
errorlog: ${path.join(dir, 'danted.err')}
internal: 127.0.0.1 port = ${port}
external: 127.0.0.1
socksmethod: none
clientmethod: none
user.unprivileged: nobody
client pass {
  from: 127.0.0.0/8 to: 0.0.0.0/0
}
socks pass {
  from: 127.0.0.0/8 to: 127.0.0.0/8
  command: connect
}
`;
}

/** Gatewise in front of the origin, no access log, metrics on when an admin port is given (the metrics duels, bench/icount). */
export function metricsReverseConfig(port: number, origin: number, admin: number | undefined): string {
  return [
    `listeners: [{ address: 127.0.0.1, port: ${port} }]`,
    `clusters: { origin: { endpoints: ["http://127.0.0.1:${origin}"] } }`,
    'routes: [{ cluster: origin }]',
    'log: { access: false }',
    ...(admin === undefined ? [] : [`admin: { port: ${admin} }`]),
    '',
  ].join('\n');
}

/**
 * The reverse gateway as `gatewise proxy --listen … --to …` builds it (src/cli/main.ts
 * proxyConfig: one cluster `default`, one route), as a file for `run -c`, with the cluster's
 * upstream client named: the native-client duels (issue 17) differ from gatewise /
 * gatewise-quiet in `client` only.
 */
export function reverseClientConfig(port: number, origin: number, client: 'undici' | 'native', accessLog: boolean): string {
  return [
    `listeners: [{ address: 127.0.0.1, port: ${port} }]`,
    `clusters: { default: { endpoints: ["http://127.0.0.1:${origin}"], client: ${client} } }`,
    'routes: [{ name: default, cluster: default }]',
    `log: { access: ${accessLog} }`,
    '',
  ].join('\n');
}

/**
 * The reverse gateway as `gatewise proxy --listen … --to …` builds it, as a file for `run -c`,
 * with the listener's server front named (issue 17): the net-front duels differ in `front` only
 * (gatewise-nodefront against gatewise-netfront: both started the same way).
 */
export function reverseFrontConfig(port: number, origin: number, front: 'node' | 'net', accessLog: boolean): string {
  return [
    `listeners: [{ address: 127.0.0.1, port: ${port}, front: ${front} }]`,
    `clusters: { default: { endpoints: ["http://127.0.0.1:${origin}"] } }`,
    'routes: [{ name: default, cluster: default }]',
    `log: { access: ${accessLog} }`,
    '',
  ].join('\n');
}
