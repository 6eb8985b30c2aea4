// Unit tests of {{name}}'s policy (src/logic.js), run by `node --test` (npm test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decide, parseSettings } from '../src/logic.js';

const encoder = new TextEncoder();
const body = (v) => encoder.encode(typeof v === 'string' ? v : JSON.stringify(v));

test('rejects a text with a denied word in any case', () => {
  const verdict = decide(body({ text: 'cheap SPAM, click here' }), { deny: ['spam', 'scam'] });
  assert.equal(verdict.tag, 'reject');
  assert.equal(verdict.val.status, 403);
  assert.equal(verdict.val.code, 'denied_word');
});

test('lets everything else through', () => {
  const settings = { deny: ['spam'] };
  assert.deepEqual(decide(body({ text: 'hello bob' }), settings), { tag: 'proceed' });
  assert.deepEqual(decide(body({ title: 'spam' }), settings), { tag: 'proceed' }, 'only `text` is checked');
  assert.deepEqual(decide(body({ text: 42 }), settings), { tag: 'proceed' });
  assert.deepEqual(decide(body('not json'), settings), { tag: 'proceed' });
});

test('checks the configuration', () => {
  assert.deepEqual(parseSettings('{"deny": ["spam"]}'), { deny: ['spam'] });
  for (const bad of ['{"deny": []}', '{"deny": [""]}', '{"deny": ["spam"], "extra": 1}', '{}', 'not json']) {
    assert.throws(() => parseSettings(bad), undefined, bad);
  }
});
