import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { RawData, WebSocket, WebSocketServer } from 'ws';

function echoMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
  this.send(data, { binary: isBinary });
}

function ignoreError(): void {
  // A client sending a bad frame is the client's problem; ws closes the socket itself.
}

/**
 * WebSocket echo on the lab's http servers (`ws` in noServer mode). `ws` is loaded
 * lazily so the rest of the lab works where it is not installed.
 */
export class WsEcho {
  readonly #wss: WebSocketServer;

  private constructor(wss: WebSocketServer) {
    this.#wss = wss;
  }

  /** undefined when the `ws` package cannot be loaded. */
  static async create(): Promise<WsEcho | undefined> {
    let mod: typeof import('ws');
    try {
      mod = await import('ws');
    } catch {
      return undefined;
    }
    return new WsEcho(new mod.WebSocketServer({ noServer: true, clientTracking: true }));
  }

  handle(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', ignoreError);
      ws.on('message', echoMessage);
    });
  }

  /** Terminate every open WebSocket. */
  close(): void {
    for (const ws of this.#wss.clients) ws.terminate();
    this.#wss.close();
  }
}
