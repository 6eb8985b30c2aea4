// The policy of {{name}} as plain functions: no imgate import here, so `node --test` runs them as
// they are (test/logic.test.mjs). src/plugin.js connects them to imgate's contract.

const decoder = new TextDecoder();

/// Parses and checks the route's configuration (a JSON text): `{"deny": ["word", ...]}`, unknown
/// keys refused. Throws a message saying what is wrong.
export function parseSettings(text) {
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw `the configuration is not JSON: ${e.message}`;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw 'the configuration must be a JSON object';
  for (const k of Object.keys(v)) {
    if (k !== 'deny') throw `unknown field \`${k}\`, expected \`deny\``;
  }
  const { deny } = v;
  if (!Array.isArray(deny) || deny.some((w) => typeof w !== 'string')) throw '`deny` must be a list of strings';
  if (deny.length === 0) throw '`deny` must list at least one word';
  const bad = deny.find((w) => { const n = [...w].length; return n < 1 || n > 64; });
  if (bad !== undefined) throw `each word must be 1-64 characters, not ${JSON.stringify(bad)}`;
  return { deny };
}

/// The first denied word `text` contains, compared case-insensitively; null when none.
export function deniedWord(text, deny) {
  const lower = text.toLowerCase();
  return deny.find((w) => lower.includes(w.toLowerCase())) ?? null;
}

/// The verdict on a request body (bytes): reject when its `text` holds a denied word. A body that
/// is not a JSON object, or has no string `text`, goes on (the route refuses malformed bodies).
/// Verdicts are the contract's `request-verdict` as componentize-js represents it.
export function decide(body, settings) {
  let v;
  try {
    v = JSON.parse(decoder.decode(body));
  } catch {
    return { tag: 'proceed' };
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v) || typeof v.text !== 'string') return { tag: 'proceed' };
  if (deniedWord(v.text, settings.deny) === null) return { tag: 'proceed' };
  return {
    tag: 'reject',
    val: { status: 403, code: 'denied_word', message: 'the text contains a word this conversation does not allow' },
  };
}
