/** An upstream proxy named by URL: `http://user:pass@host:port`, `socks5://user:pass@host:port`. */
export interface ProxyEndpoint {
  protocol: 'http' | 'socks5';
  host: string;
  port: number;
  username?: string;
  password?: string;
  /** The URL without credentials, for logs and headers. */
  label: string;
}

/** Parse a proxy URL; throws TypeError with a plain message when it is not one. */
export function parseProxyUrl(s: string): ProxyEndpoint {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new TypeError(`not a proxy URL: ${JSON.stringify(s.replace(/\/\/[^@/]*@/, '//…@'))}`);
  }
  const scheme = u.protocol.replace(/:$/, '');
  const protocol = scheme === 'http' ? 'http' : scheme === 'socks5' || scheme === 'socks5h' || scheme === 'socks' ? 'socks5' : undefined;
  if (!protocol) throw new TypeError(`proxy URL scheme must be http or socks5, got ${scheme}`);
  if (!u.hostname) throw new TypeError('proxy URL has no host');
  if ((u.pathname && u.pathname !== '/') || u.search) throw new TypeError('proxy URL must not have a path or query');
  const port = u.port ? Number(u.port) : protocol === 'http' ? 8080 : 1080;
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  const ep: ProxyEndpoint = { protocol, host, port, label: `${protocol}://${u.hostname}:${port}` };
  if (u.username) ep.username = decodeURIComponent(u.username);
  if (u.password) ep.password = decodeURIComponent(u.password);
  return ep;
}

export function isProxyUrl(s: string): boolean {
  try {
    parseProxyUrl(s);
    return true;
  } catch {
    return false;
  }
}
