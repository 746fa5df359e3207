import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeferredQueue } from '../../src/handler/deferred-queue.ts';

test('messages leave in arrival order and a key is held while any of its messages wait', () => {
  const q = new DeferredQueue<{ key: string; n: number }>();
  q.push({ key: 'a', n: 1 });
  q.push({ key: 'b', n: 2 });
  q.push({ key: 'a', n: 3 });
  assert.equal(q.peek()!.n, 1);
  assert.equal(q.shift()!.n, 1);
  assert.equal(q.has('a'), true);
  assert.equal(q.shift()!.n, 2);
  assert.equal(q.has('b'), false);
  assert.equal(q.shift()!.n, 3);
  assert.equal(q.has('a'), false);
  assert.equal(q.shift(), undefined);
});

test('dropping a key removes only that connection\'s messages', () => {
  const q = new DeferredQueue<{ key: string; n: number }>();
  for (const [key, n] of [['a', 1], ['b', 2], ['a', 3]] as const) q.push({ key, n });
  q.drop('a');
  assert.equal(q.length, 1);
  assert.equal(q.has('a'), false);
  assert.equal(q.shift()!.n, 2);
});
