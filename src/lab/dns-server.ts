import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import {
  buildDnsResponse,
  buildFormErr,
  DNS_TYPE_A,
  DNS_TYPE_ANY,
  ipv4Bytes,
  normalizeDnsName,
  parseDnsQuery,
  RCODE_NOERROR,
  RCODE_NOTIMP,
  RCODE_NXDOMAIN,
  RCODE_SERVFAIL,
} from './dns-packet.js';

export interface LabDnsServerOptions {
  /** UDP port on 127.0.0.1; 0 (default) = ephemeral. */
  port?: number;
  /** name → A records. Names compare case-insensitively, with or without the trailing dot. */
  records: Record<string, string[]>;
  /** Names answered SERVFAIL. */
  servfail?: string[];
  /** Names never answered (the resolver times out). */
  timeout?: string[];
  /** TTL of the A records, default 60 s. */
  ttl?: number;
}

export interface LabDnsServer {
  readonly port: number;
  /** Packets received (including those left unanswered). */
  readonly queries: number;
  close(): Promise<void>;
}

/** A record that is not an IPv4 address. */
export class LabDnsRecordError extends Error {
  constructor(name: string, address: string) {
    super(`lab DNS: ${JSON.stringify(address)} for ${JSON.stringify(name)} is not an IPv4 address`);
    this.name = 'LabDnsRecordError';
  }
}

function ignoreSendError(): void {
  // A reply to a resolver that already went away; nothing to do.
}

class DnsServer implements LabDnsServer {
  port = 0;
  queries = 0;
  readonly #socket: Socket;
  readonly #records = new Map<string, Uint8Array[]>();
  readonly #servfail: Set<string>;
  readonly #timeout: Set<string>;
  readonly #ttl: number;
  #closing: Promise<void> | undefined;

  constructor(opts: LabDnsServerOptions) {
    for (const name of Object.keys(opts.records)) {
      const addrs = opts.records[name]!;
      const bytes: Uint8Array[] = [];
      for (const a of addrs) {
        if (!isIPv4(a)) throw new LabDnsRecordError(name, a);
        bytes.push(ipv4Bytes(a));
      }
      this.#records.set(normalizeDnsName(name), bytes);
    }
    this.#servfail = new Set((opts.servfail ?? []).map(normalizeDnsName));
    this.#timeout = new Set((opts.timeout ?? []).map(normalizeDnsName));
    this.#ttl = opts.ttl ?? 60;
    this.#socket = createSocket('udp4');
    this.#socket.on('message', (msg: Buffer, from: RemoteInfo) => this.#onMessage(msg, from));
  }

  listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#socket.once('error', reject);
      this.#socket.bind(port, '127.0.0.1', () => {
        this.#socket.off('error', reject);
        this.#socket.on('error', ignoreSendError);
        this.port = this.#socket.address().port;
        resolve();
      });
    });
  }

  close(): Promise<void> {
    this.#closing ??= new Promise((resolve) => {
      try {
        this.#socket.close(() => resolve());
      } catch {
        resolve(); // never bound
      }
    });
    return this.#closing;
  }

  #onMessage(msg: Buffer, from: RemoteInfo): void {
    this.queries++;
    const query = parseDnsQuery(msg);
    if (query === undefined) return;
    if ('malformed' in query) {
      this.#send(buildFormErr(query.id), from);
      return;
    }
    if (this.#timeout.has(query.name)) return;
    let rcode = RCODE_NOERROR;
    let answers: readonly Uint8Array[] = [];
    if (query.opcode !== 0) {
      rcode = RCODE_NOTIMP;
    } else if (this.#servfail.has(query.name)) {
      rcode = RCODE_SERVFAIL;
    } else {
      const records = this.#records.get(query.name);
      if (records === undefined) rcode = RCODE_NXDOMAIN;
      else if (query.type === DNS_TYPE_A || query.type === DNS_TYPE_ANY) answers = records;
      // Any other type (AAAA included) of a known name: NOERROR with no answer (NODATA).
    }
    this.#send(buildDnsResponse(query, rcode, answers, this.#ttl), from);
  }

  #send(packet: Buffer, to: RemoteInfo): void {
    this.#socket.send(packet, to.port, to.address);
  }
}

/**
 * A tiny UDP DNS server on 127.0.0.1 for resolver tests: A records for listed names,
 * NXDOMAIN for unknown names, SERVFAIL or silence for the names listed so, and an empty
 * NOERROR for other types (AAAA) of known names.
 */
export async function startLabDnsServer(opts: LabDnsServerOptions): Promise<LabDnsServer> {
  const server = new DnsServer(opts);
  await server.listen(opts.port ?? 0);
  return server;
}
