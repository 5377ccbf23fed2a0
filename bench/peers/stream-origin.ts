// The origin of the one-stream benchmark (bench/stream.ts): HTTP/1.1 on node:net, keep-alive.
//   GET /big?bytes=N   a body of N bytes (default 1 GiB) written from one 4 MiB buffer, with backpressure
//   PUT|POST /upload   reads a Content-Length body to its end, then answers 200 with the byte count
// Anything else: 404. Loopback only. Usage: node dist/bench/peers/stream-origin.js PORT
import net from 'node:net';

const port = Number(process.argv[2]);
const CHUNK = Buffer.alloc(4 * 1024 * 1024, 'x');
const DEFAULT_BYTES = 2 ** 30;

function answer(sock: net.Socket, status: string, body: string): void {
  sock.write(`HTTP/1.1 ${status}\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncontent-type: text/plain\r\n\r\n${body}`);
}

function download(sock: net.Socket, total: number, done: () => void): void {
  sock.write(`HTTP/1.1 200 OK\r\ncontent-length: ${total}\r\ncontent-type: application/octet-stream\r\n\r\n`);
  let left = total;
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length);
      left -= n;
      if (!sock.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
        sock.once('drain', pump);
        return;
      }
    }
    done();
  };
  pump();
}

net
  .createServer({ noDelay: true }, (sock) => {
    sock.on('error', () => sock.destroy());
    let head = '';
    /** Body bytes still to read of the current upload (0: reading a head). */
    let bodyLeft = 0;
    let uploaded = 0;
    let busy = false;
    const onData = (d: Buffer): void => {
      let off = 0;
      while (off < d.length) {
        if (bodyLeft > 0) {
          const n = Math.min(bodyLeft, d.length - off);
          bodyLeft -= n;
          uploaded += n;
          off += n;
          if (bodyLeft === 0) answer(sock, '200 OK', `${uploaded}\n`);
          continue;
        }
        if (busy) return; // a request while a download is being written: not supported
        head += d.subarray(off).toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        off = d.length - (head.length - end - 4);
        const lines = head.slice(0, end).split('\r\n');
        head = '';
        const [method = '', target = ''] = lines[0]!.split(' ');
        const lengthLine = lines.find((l) => /^content-length:/i.test(l));
        const length = lengthLine ? Number(lengthLine.slice(lengthLine.indexOf(':') + 1).trim()) : 0;
        const url = new URL(target, 'http://origin');
        if (method === 'GET' && url.pathname === '/big') {
          busy = true;
          download(sock, Number(url.searchParams.get('bytes') ?? DEFAULT_BYTES), () => (busy = false));
        } else if ((method === 'PUT' || method === 'POST') && url.pathname === '/upload') {
          uploaded = 0;
          bodyLeft = length;
          if (length === 0) answer(sock, '200 OK', '0\n');
        } else {
          answer(sock, '404 Not Found', 'not found\n');
        }
      }
    };
    sock.on('data', onData);
  })
  .listen(port, '127.0.0.1');
