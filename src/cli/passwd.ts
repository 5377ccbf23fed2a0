import { parseArgs } from 'node:util';
import { hashPassword } from '../tenants/index.js';

const HELP = `usage: gatewise passwd [PASSWORD]

Prints a scrypt hash (scrypt$N$r$p$salt$hash) for a forward proxy user's "password" field.
Without PASSWORD the password is read from standard input (first line); prefer that: an
argument is visible to other users in the process list.
`;

async function readFirstLine(stream: NodeJS.ReadableStream, limit = 4096): Promise<string> {
  let data = '';
  for await (const chunk of stream) {
    data += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8');
    const nl = data.search(/\r?\n/);
    if (nl >= 0) return data.slice(0, nl);
    if (data.length > limit) break;
  }
  return data.replace(/\r?\n$/, '');
}

export async function passwdCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    process.stderr.write(`gatewise passwd: ${(err as Error).message}\n${HELP}`);
    return 2;
  }
  if (parsed.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (parsed.positionals.length > 1) {
    process.stderr.write(`gatewise passwd: one password at most\n${HELP}`);
    return 2;
  }
  let password = parsed.positionals[0];
  if (password === undefined) {
    if (process.stdin.isTTY) process.stderr.write('Password: ');
    password = await readFirstLine(process.stdin);
  }
  if (!password) {
    process.stderr.write('gatewise passwd: empty password\n');
    return 2;
  }
  process.stdout.write((await hashPassword(password)) + '\n');
  return 0;
}
