import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ProtocolError } from '../../src/handler/errors.js';
import {
  MAX_TNET_DEPTH,
  encodeTnetstring,
  parseTnetstring,
  type TnetInput,
  type TnetValue,
} from '../../src/handler/tnetstring.js';

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');
const parse = (s: string): TnetValue => {
  const buf = bytes(s);
  const { value, next } = parseTnetstring(buf);
  assert.equal(next, buf.length, 'parser consumed the whole input');
  return value;
};

function rejects(input: string | Buffer, pattern?: RegExp): void {
  const buf = typeof input === 'string' ? bytes(input) : input;
  assert.throws(
    () => parseTnetstring(buf),
    (err: unknown) => {
      assert.ok(err instanceof ProtocolError, `got ${String(err)}`);
      assert.equal(err.code, 'M2F_BAD_TNETSTRING');
      if (pattern) assert.match(err.message, pattern);
      return true;
    },
  );
}

/** Nests `inner` in `levels` one-element lists. */
function nestLists(levels: number, inner: string): string {
  let s = inner;
  for (let i = 0; i < levels; i++) s = `${s.length}:${s}]`;
  return s;
}

describe('parseTnetstring on valid input', () => {
  it('when given each type then it returns the decoded value', () => {
    assert.equal(parse('5:hello,'), 'hello');
    assert.equal(parse('2:42#'), 42);
    assert.equal(parse('3:-17#'), -17);
    assert.equal(parse('4:true!'), true);
    assert.equal(parse('5:false!'), false);
    assert.equal(parse('0:~'), null);
    assert.equal(parse('4:2.50^'), 2.5);
    assert.deepEqual(parse('8:1:a,1:b,]'), ['a', 'b']);
    assert.deepEqual({ ...(parse('8:1:k,1:v,}') as object) }, { k: 'v' });
  });

  it('when empty string, list and dict are sent then they parse', () => {
    assert.equal(parse('0:,'), '');
    assert.deepEqual(parse('0:]'), []);
    assert.deepEqual({ ...(parse('0:}') as object) }, {});
  });

  it('when SIZE has leading zeros then it is accepted', () => {
    assert.equal(parse('005:hello,'), 'hello');
  });

  it('when bytes are not UTF-8 then the string keeps one char per byte', () => {
    const value = parse('6:\xff\xfe\x00\tA\x80,');
    assert.equal(value, '\xff\xfe\x00\tA\x80');
  });

  it('when start and end are given then only that window is parsed', () => {
    const buf = bytes('xx5:hello,3:abc,yy');
    const first = parseTnetstring(buf, 2, buf.length - 2);
    assert.deepEqual(first, { value: 'hello', next: 10 });
    const second = parseTnetstring(buf, first.next, buf.length - 2);
    assert.deepEqual(second, { value: 'abc', next: 16 });
  });

  it('when a dict repeats a key then the last value wins', () => {
    const dict = parse('16:1:k,1:a,1:k,1:b,}') as Record<string, TnetValue>;
    assert.equal(dict['k'], 'b');
    assert.deepEqual(Object.keys(dict), ['k']);
  });

  it('when a dict has key __proto__ then it is an own key, null prototype', () => {
    const dict = parse('16:9:__proto__,1:x,}') as Record<string, TnetValue>;
    assert.equal(Object.getPrototypeOf(dict), null);
    assert.equal(Object.getOwnPropertyDescriptor(dict, '__proto__')?.value, 'x');
  });

  it('when nesting is exactly the depth limit then it parses', () => {
    const value = parse(nestLists(MAX_TNET_DEPTH, ''));
    let depth = 0;
    let cur: TnetValue = value;
    while (Array.isArray(cur)) {
      depth++;
      cur = cur[0] ?? null;
    }
    assert.equal(depth, MAX_TNET_DEPTH);
  });

  it('when a 9-digit SIZE is backed by enough bytes then it parses', () => {
    const big = Buffer.alloc(1_000_011, 0x61);
    big.write('001000000:', 0, 'latin1');
    big[1_000_010] = 0x2c;
    const { value, next } = parseTnetstring(big);
    assert.equal((value as string).length, 1_000_000);
    assert.equal(next, big.length);
  });
});

describe('parseTnetstring on malformed input (spec 9.1)', () => {
  it('when SIZE has a sign then it is rejected', () => {
    rejects('+5:hello,', /SIZE/);
    rejects('-5:hello,', /SIZE/);
  });
  it('when SIZE has a blank then it is rejected', () => {
    rejects(' 5:hello,', /SIZE/);
    rejects('5 :hello,', /SIZE/);
  });
  it('when SIZE is hex then it is rejected', () => rejects('0x5:hello,'));
  it('when SIZE is empty then it is rejected', () => rejects(':hello,', /empty SIZE/));
  it('when SIZE has 10 digits then it is rejected', () => {
    rejects('0000000005:hello,', /9 digits/);
  });
  it('when the colon is missing then it is rejected', () => rejects('5', /":"/));
  it('when the input is empty then it is rejected', () => rejects(''));
  it('when SIZE exceeds the bytes left then it is rejected', () => {
    rejects('6:hello,', /exceeds/);
  });
  it('when the type tag is missing then it is rejected', () => {
    rejects('5:hello', /exceeds/);
  });
  it('when the type tag is unknown then it is rejected', () => {
    rejects('5:hello?', /unknown type tag/);
    rejects('5:hello.', /unknown type tag/);
  });
  it('when a boolean is not exactly true or false then it is rejected', () => {
    rejects('4:True!');
    rejects('1:1!');
    rejects('5:true !');
    rejects('0:!');
  });
  it('when null has a non-zero SIZE then it is rejected', () => rejects('1:x~', /null/));
  it('when an integer has junk then it is rejected', () => {
    rejects('2:4a#');
    rejects('0:#');
    rejects('1:-#');
    rejects('2:+4#');
    rejects('3:4.0#');
    rejects('3: 42#');
  });
  it('when an integer is beyond 2^53 then it is rejected', () => {
    rejects('16:9007199254740992#', /safe integer/);
    assert.equal(parse('16:9007199254740991#'), Number.MAX_SAFE_INTEGER);
  });
  it('when a float is malformed then it is rejected', () => {
    rejects('3:1.x^');
    rejects('3:NaN^');
    rejects('8:Infinity^');
  });
  it('when nesting passes the depth limit then it is rejected', () => {
    rejects(nestLists(MAX_TNET_DEPTH + 1, ''), /too deep/);
  });
  it('when a dict key is not a string then it is rejected', () => {
    rejects('8:1:1#1:v,}', /key is not a string/);
    rejects('7:0:]1:v,}', /key is not a string/);
  });
  it('when a dict has an odd number of items then it is rejected', () => {
    rejects('4:1:k,}', /no value/);
  });
  it('when a child overruns its container then it is rejected', () => {
    rejects('5:4:abc]', /exceeds/);
  });
  it('when a container payload has junk after the last child then it is rejected', () => {
    rejects('5:1:a,x]');
  });
  it('when SIZE claims 999999999 bytes then it fails fast without allocating', () => {
    const before = process.memoryUsage().arrayBuffers;
    const t0 = process.hrtime.bigint();
    rejects('999999999:abc,', /exceeds/);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.ok(ms < 50, `took ${ms} ms`);
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(grown < 1_000_000, `arrayBuffers grew by ${grown}`);
  });
});

describe('encodeTnetstring', () => {
  it('when given the ctl keep-alive value then it matches the captured bytes', () => {
    const out = encodeTnetstring(['ctl', { 'keep-alive': true }]);
    assert.equal(out.toString('latin1'), '31:3:ctl,21:10:keep-alive,4:true!}]');
  });

  it('when given credits then the value is a # integer', () => {
    const out = encodeTnetstring(['ctl', { credits: 3000 }]);
    assert.equal(out.toString('latin1'), '27:3:ctl,17:7:credits,4:3000#}]');
  });

  it('when given scalars then each uses its tag and no leading zero', () => {
    const enc = (v: TnetInput): string => encodeTnetstring(v).toString('latin1');
    assert.equal(enc(0), '1:0#');
    assert.equal(enc(-0), '1:0#');
    assert.equal(enc(-12), '3:-12#');
    assert.equal(enc(false), '5:false!');
    assert.equal(enc(null), '0:~');
    assert.equal(enc(''), '0:,');
    assert.equal(enc([]), '0:]');
    assert.equal(enc({}), '0:}');
  });

  it('when given a JS string then it writes UTF-8; a Buffer is written raw', () => {
    assert.deepEqual(encodeTnetstring('é'), Buffer.from('2:\xc3\xa9,', 'latin1'));
    assert.deepEqual(
      encodeTnetstring(Buffer.from([0xe9])),
      Buffer.from('1:\xe9,', 'latin1'),
    );
  });

  it('when given values tnetstrings cannot carry then it throws ProtocolError', () => {
    const bad: unknown[] = [
      1.5, NaN, Infinity, 2 ** 53, undefined, () => 1, Symbol('s'), 10n,
      new Date(0), { a: undefined }, [1.25],
    ];
    for (const v of bad) {
      assert.throws(
        () => encodeTnetstring(v as TnetInput),
        (err: unknown) =>
          err instanceof ProtocolError && err.code === 'M2F_BAD_TNET_VALUE',
        `value ${String(v)}`,
      );
    }
  });

  it('when nesting passes the depth limit or is cyclic then it throws', () => {
    let deep: TnetInput = [];
    for (let i = 0; i < MAX_TNET_DEPTH; i++) deep = [deep];
    assert.throws(() => encodeTnetstring(deep), ProtocolError);
    const cyclic: TnetInput[] = [];
    cyclic.push(cyclic);
    assert.throws(() => encodeTnetstring(cyclic), ProtocolError);
  });
});

/** What the parser returns for an encoder input: strings as UTF-8 bytes. */
function asParsed(v: TnetInput): TnetValue {
  if (typeof v === 'string') return Buffer.from(v).toString('latin1');
  if (Buffer.isBuffer(v)) return v.toString('latin1');
  if (Array.isArray(v)) return v.map(asParsed);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, TnetValue> = Object.create(null);
    const dict = v as Record<string, TnetInput>;
    for (const k of Object.keys(dict)) out[asParsed(k) as string] = asParsed(dict[k]!);
    return out;
  }
  return v as TnetValue;
}

const tnetInput = fc.letrec<{ value: TnetInput }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.string({ unit: 'binary' }),
    fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
    fc.maxSafeInteger(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 5 }),
    fc.dictionary(fc.string({ unit: 'binary' }), tie('value'), { maxKeys: 5 }),
  ),
})).value;

describe('tnetstring properties', () => {
  it('when any encodable value is encoded then parsing gives it back', () => {
    fc.assert(
      fc.property(tnetInput, (v) => {
        const buf = encodeTnetstring(v);
        const { value, next } = parseTnetstring(buf);
        assert.equal(next, buf.length);
        assert.deepEqual(value, asParsed(v));
      }),
      { numRuns: 500 },
    );
  });

  it('when an encoded value is cut short then parsing throws ProtocolError', () => {
    fc.assert(
      fc.property(tnetInput, fc.nat(), (v, n) => {
        const buf = encodeTnetstring(v);
        const cut = buf.subarray(0, n % buf.length);
        assert.throws(() => parseTnetstring(cut), ProtocolError);
      }),
      { numRuns: 300 },
    );
  });

  it('when arbitrary bytes are parsed then it returns or throws ProtocolError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (a) => {
        try {
          parseTnetstring(Buffer.from(a));
        } catch (err) {
          assert.ok(err instanceof ProtocolError, String(err));
        }
      }),
      { numRuns: 1000 },
    );
  });
});
