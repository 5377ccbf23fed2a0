import { Socket } from 'node:net';
import { shapeSocket } from '../net/index.js';

export interface TcpTarget {
  host: string;
  port: number;
  family?: 4 | 6 | undefined;
  localAddress?: string | undefined;
}

/**
 * A TCP connection with Nagle off and half-close allowed: what `net.connect({ ..., noDelay:
 * true, allowHalfOpen: true })` makes, without handing Node's Socket constructor an options
 * object.
 *
 * Why: the constructor copies its options (`{ ...options }`) and reads some thirty fields of
 * the copy at megamorphic sites, and V8 has never seen the copy's map there, so every one of
 * those reads is a runtime IC miss, on every socket. Measured with callgrind (instructions per
 * CONNECT tunnel, user space, after 3,000 tunnels of warm-up; docs/benchmarks.md): the bare
 * CONNECT floor 282k with `net.connect(options)` for its upstream, 224k with this; in Gatewise
 * the same change took its IC-miss runtime from 150k to 91k instructions per tunnel. A `Socket`
 * made without options reads none of them; half-close and Nagle are then set on it before it
 * connects, as the constructor would set them from the options (`allowHalfOpen` is read when
 * the peer ends, `setNoDelay` before the handle exists is applied when the connection is made).
 */
export function openTcp(t: TcpTarget): Socket {
  const sock = new Socket();
  shapeSocket(sock);
  sock.allowHalfOpen = true;
  sock.setNoDelay(true);
  return sock.connect({ host: t.host, port: t.port, family: t.family, localAddress: t.localAddress });
}
