import { hashPassword } from '../tenants/index.js';
import { answerUsage, command, parseCommand } from './commands.js';
import { UsageError } from './usage.js';

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
    parsed = parseCommand(command('passwd'), argv);
    if (parsed.positionals.length > 1) throw new UsageError('one password at most');
  } catch (err) {
    const code = answerUsage(command('passwd'), err, process.stdout, process.stderr);
    if (code !== undefined) return code;
    throw err;
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
