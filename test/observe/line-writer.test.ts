import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LineWriter } from '../../src/observe/line-writer.js';
import { seededRun } from '../helpers/seeded.js';

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewise-test-log-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function flushed(w: LineWriter): Promise<void> {
  return new Promise((resolve) => w.flush(() => resolve()));
}

for (const direct of [true, false]) {
test(`every line arrives whole and in order, whatever the line lengths and batch size (seeded; ${direct ? 'direct writes' : 'thread-pool writes'})`, async (t) => {
  const dir = tempDir(t);
  await seededRun('line writer order', async (rand) => {
    for (let round = 0; round < 6; round++) {
      const file = path.join(dir, `r${round}.log`);
      const w = new LineWriter({ dest: file, minBytes: 1 + Math.floor(rand() * 40_000), direct });
      const expected: string[] = [];
      const n = 200 + Math.floor(rand() * 800);
      for (let i = 0; i < n; i++) {
        // Mostly access-log sized lines, some longer than a whole batch buffer, some non-ASCII.
        const len = rand() < 0.02 ? 70_000 + Math.floor(rand() * 100_000) : Math.floor(rand() * 900);
        const ch = rand() < 0.1 ? 'é😀' : 'x';
        const line = `${i}:${ch.repeat(Math.ceil(len / ch.length))}\n`;
        expected.push(line);
        w.write(line);
        if (rand() < 0.05) await new Promise((r) => setImmediate(r));
      }
      await flushed(w);
      w.end();
      assert.equal(fs.readFileSync(file, 'utf8'), expected.join(''), `round ${round}`);
    }
  });
});
}

test('a regular file is written directly (the batch is in the file when flush returns); a full device loses and counts lines, and serving goes on', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'direct.log');
  const w = new LineWriter({ dest: file });
  w.write('one\n');
  assert.equal(fs.readFileSync(file, 'utf8'), '', 'batched until a flush');
  w.flush();
  assert.equal(fs.readFileSync(file, 'utf8'), 'one\n');
  w.end();
  if (!fs.existsSync('/dev/full')) return t.skip('no /dev/full on this machine');
  const full = new LineWriter({ dest: '/dev/full', minBytes: 10 });
  for (let i = 0; i < 5; i++) assert.equal(full.write(`line ${i}\n`), true);
  assert.ok(full.dropped >= 4, `lines the device refused are counted (${full.dropped})`);
  full.end();
  // Each refused line counted once; the note about them is tried only once the destination takes a batch again.
  assert.equal(full.dropped, 5);
  const fullSync = new LineWriter({ dest: '/dev/full', sync: true });
  assert.equal(fullSync.write('refused\n'), false);
  assert.equal(fullSync.dropped, 1);
  fullSync.end();
});

test('flushSync writes what waits (the exit path), and sync mode writes at once', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'a.log');
  const w = new LineWriter({ dest: file });
  w.write('one\n');
  w.write('two\n');
  assert.equal(fs.readFileSync(file, 'utf8'), '');
  w.flushSync();
  assert.equal(fs.readFileSync(file, 'utf8'), 'one\ntwo\n');
  w.end();
  const s = new LineWriter({ dest: path.join(dir, 'b.log'), sync: true });
  s.write('now\n');
  assert.equal(fs.readFileSync(path.join(dir, 'b.log'), 'utf8'), 'now\n');
  s.end();
});

for (const direct of [true, false]) {
test(`reopen follows a rotated file: lines before go to the moved file, lines after to a new one (${direct ? 'direct writes' : 'thread-pool writes'})`, async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'access.log');
  const w = new LineWriter({ dest: file, direct });
  w.write('before\n');
  await flushed(w);
  fs.renameSync(file, `${file}.1`);
  w.write('between\n'); // written before the reopen: still the old file
  w.reopen();
  w.write('after\n');
  await flushed(w);
  w.end();
  assert.equal(fs.readFileSync(`${file}.1`, 'utf8'), 'before\nbetween\n');
  assert.equal(fs.readFileSync(file, 'utf8'), 'after\n');
});
}

test('a destination that does not keep up: lines beyond the cap are dropped, counted and reported', async (t) => {
  const dir = tempDir(t);
  const fifo = path.join(dir, 'pipe');
  execFileSync('mkfifo', [fifo]);
  // Read-write so the open does not wait for a reader; nothing reads until the end.
  const fd = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  const w = new LineWriter({ dest: fd, minBytes: 1024, maxPendingBytes: 256 * 1024 });
  const line = `${'y'.repeat(99)}\n`;
  let accepted = 0;
  for (let i = 0; i < 20_000; i++) if (w.write(line)) accepted++;
  assert.ok(w.dropped > 0, 'some lines dropped');
  assert.equal(accepted + w.dropped, 20_000);
  // Now read everything: the backlog drains and a note says how many were dropped.
  const reader = fs.createReadStream(fifo); // a reader of its own (blocking reads on the thread pool)
  let text = '';
  const gotNote = new Promise<void>((resolve) => {
    reader.on('data', (c) => {
      text += c.toString();
      if (text.includes('log lines dropped')) resolve();
    });
  });
  w.flush();
  await gotNote;
  await flushed(w);
  w.end();
  const note = text.split('\n').find((l) => l.includes('log lines dropped'))!;
  assert.equal((JSON.parse(note) as { dropped: number }).dropped, w.dropped);
  // Closing the only writer ends the reader's blocking read (end of file), and it closes.
  const closed = new Promise<void>((r) => reader.once('close', () => r()));
  fs.closeSync(fd);
  reader.resume();
  await closed;
});

test('direct writes reuse one buffer: a long run of batches, lines longer than the buffer among them, arrives whole and in order after each flushSync (seeded)', async (t) => {
  const dir = tempDir(t);
  await seededRun('line writer reuse', (rand) => {
    const file = path.join(dir, `reuse-${Math.floor(rand() * 1e9)}.log`);
    const w = new LineWriter({ dest: file, minBytes: 1 + Math.floor(rand() * 20_000), direct: true });
    let expected = '';
    for (let i = 0; i < 2000; i++) {
      const len = rand() < 0.01 ? 70_000 + Math.floor(rand() * 50_000) : Math.floor(rand() * 700);
      const line = `${i}:${(rand() < 0.1 ? 'é' : 'x').repeat(len)}\n`;
      expected += line;
      w.write(line);
      if (rand() < 0.01) {
        w.flushSync();
        assert.equal(fs.readFileSync(file, 'utf8'), expected, `after line ${i}`);
      }
    }
    w.end();
    assert.equal(fs.readFileSync(file, 'utf8'), expected);
    assert.equal(w.dropped, 0);
  });
});
