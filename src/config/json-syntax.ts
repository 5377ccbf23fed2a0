/**
 * Strict JSON (RFC 8259) syntax, checked before a `.json` file's text goes to the YAML
 * parser, which gives the values and their lines but would accept what JSON does not (trailing
 * commas, comments, unquoted keys, single quotes). The first error is said by its offset in
 * the text and in words of ours (JSON.parse's messages name no line and, for most errors, no
 * position). One pass, no recursion (a deeply nested file cannot exhaust the stack); a leading
 * byte order mark is allowed, as editors write one.
 */

export interface JsonSyntaxError {
  /** Where the first error is, in UTF-16 code units from the start of the text. */
  readonly offset: number;
  readonly message: string;
}

const enum Expect {
  /** A value: at the top, after a key's colon. */
  Value,
  /** A value or `]`: just after `[`. */
  FirstItem,
  /** A value after an array's comma. */
  NextItem,
  /** A key or `}`: just after `{`. */
  FirstKey,
  /** A key after an object's comma. */
  NextKey,
  /** A comma or the container's close (or the end, at the top). */
  After,
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const HEX4 = /[0-9A-Fa-f]{4}/y;
const WORD = /[A-Za-z_$][A-Za-z0-9_$-]*/y;

function lineCol(text: string, offset: number): string {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return `line ${line}, column ${offset - start + 1}`;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** The end of the double-quoted string that starts at `i`, or its error. */
function stringEnd(text: string, i: number): number | JsonSyntaxError {
  for (let j = i + 1; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c === 0x22) return j + 1;
    if (c < 0x20) return { offset: j, message: 'a control character (a line break or a tab) inside a string; write it as \\n or \\t' };
    if (c === 0x5c) {
      const e = text[j + 1];
      if (e === 'u') {
        HEX4.lastIndex = j + 2;
        if (!HEX4.test(text)) return { offset: j, message: 'a \\u escape needs four hexadecimal digits' };
        j += 5;
      } else if (e !== undefined && '"\\/bfnrt'.includes(e)) j++;
      else return { offset: j, message: `an escape JSON does not have (\\${e ?? ''}); a backslash is written \\\\` };
    }
  }
  return { offset: text.length, message: `the file ends inside the string that begins at ${lineCol(text, i)}` };
}

/** What is wrong with `text` as JSON, or undefined when it is JSON. */
export function jsonSyntaxError(text: string): JsonSyntaxError | undefined {
  const opened: number[] = [];
  let expect = Expect.Value;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  for (;;) {
    while (i < text.length && isSpace(text.charCodeAt(i))) i++;
    if (i >= text.length) {
      if (opened.length === 0) return expect === Expect.After ? undefined : { offset: 0, message: 'the file is empty' };
      const at = opened[opened.length - 1]!;
      return { offset: i, message: `the file ends before the "${text[at]}" at ${lineCol(text, at)} is closed` };
    }
    const c = text[i]!;
    if (c === '/' && (text[i + 1] === '/' || text[i + 1] === '*')) {
      return { offset: i, message: 'a comment; JSON has none (a YAML file may have # comments)' };
    }
    const top = opened.length > 0 ? text[opened[opened.length - 1]!] : undefined;
    if (expect === Expect.After) {
      if (top === undefined) return { offset: i, message: 'more text after the end of the JSON value' };
      if (c === ',') {
        expect = top === '{' ? Expect.NextKey : Expect.NextItem;
        i++;
      } else if ((c === '}' && top === '{') || (c === ']' && top === '[')) {
        opened.pop();
        i++;
      } else {
        return { offset: i, message: `expected "," or "${top === '{' ? '}' : ']'}" after a value, found ${JSON.stringify(c)}` };
      }
      continue;
    }
    if (expect === Expect.FirstKey || expect === Expect.NextKey) {
      if (c === '}') {
        if (expect === Expect.NextKey) return { offset: i, message: 'a trailing comma before "}"' };
        opened.pop();
        expect = Expect.After;
        i++;
        continue;
      }
      if (c !== '"') {
        WORD.lastIndex = i;
        const unquoted = c === "'" || WORD.test(text);
        return { offset: i, message: unquoted ? 'a key must be in double quotes' : `expected a key in double quotes, found ${JSON.stringify(c)}` };
      }
      const end = stringEnd(text, i);
      if (typeof end !== 'number') return end;
      i = end;
      while (i < text.length && isSpace(text.charCodeAt(i))) i++;
      if (text[i] !== ':') return { offset: i, message: 'expected ":" after the key' };
      i++;
      expect = Expect.Value;
      continue;
    }
    // A value.
    if (c === ']' && expect !== Expect.Value) {
      if (expect === Expect.NextItem) return { offset: i, message: 'a trailing comma before "]"' };
      opened.pop();
      expect = Expect.After;
      i++;
      continue;
    }
    if (c === '{' || c === '[') {
      opened.push(i);
      expect = c === '{' ? Expect.FirstKey : Expect.FirstItem;
      i++;
      continue;
    }
    expect = Expect.After;
    if (c === '"') {
      const end = stringEnd(text, i);
      if (typeof end !== 'number') return end;
      i = end;
      continue;
    }
    NUMBER.lastIndex = i;
    if (NUMBER.test(text)) {
      i = NUMBER.lastIndex;
      continue;
    }
    const literal = ['true', 'false', 'null'].find((w) => text.startsWith(w, i));
    if (literal !== undefined) {
      i += literal.length;
      continue;
    }
    WORD.lastIndex = i;
    const unquoted = c === "'" || WORD.test(text);
    return { offset: i, message: unquoted ? 'a string must be in double quotes' : `expected a value (a string in double quotes, a number, true, false, null, an object or an array), found ${JSON.stringify(c)}` };
  }
}
