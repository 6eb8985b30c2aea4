// content-filter in JavaScript (componentize-js): the twin of plugins/content-filter (Rust), same
// configuration, same verdicts; built by build.mjs and tested through the gateway by the same tests.
import { get as configGet } from 'imgate:plugin/config@0.1.0';

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function loadSettings(text) {
  let v;
  try { v = JSON.parse(text); } catch (e) { throw `the configuration is not JSON: ${e}`; }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw 'the configuration must be a JSON object';
  for (const k of Object.keys(v)) {
    if (!['words', 'action', 'fields'].includes(k)) throw `unknown field \`${k}\`, expected one of \`words\`, \`action\`, \`fields\``;
  }
  const { words, action } = v;
  const fields = v.fields === undefined ? ['/text'] : v.fields;
  if (!Array.isArray(words) || words.some((w) => typeof w !== 'string')) throw '`words` must be a list of strings';
  if (words.length === 0) throw '`words` must list at least one word';
  const bad = words.find((w) => { const n = [...w].length; return n < 1 || n > 64; });
  if (bad !== undefined) throw `each word must be 1-64 characters, not ${JSON.stringify(bad)}`;
  if (action !== 'block' && action !== 'mask') throw '`action` must be "block" or "mask"';
  if (!Array.isArray(fields) || fields.length === 0 || fields.some((f) => typeof f !== 'string' || !f.startsWith('/'))) {
    throw '`fields` must list JSON pointers, each starting with `/`';
  }
  return { words, action, fields };
}

const sameLetter = (a, b) => a === b || a.toLowerCase() === b.toLowerCase();

function matches(text, words) {
  const t = [...text];
  const ws = words.map((w) => [...w]);
  const hit = new Array(t.length).fill(false);
  let any = false;
  for (let start = 0; start < t.length; start++) {
    for (const w of ws) {
      const end = start + w.length;
      if (end <= t.length && w.every((c, i) => sameLetter(t[start + i], c))) {
        for (let i = start; i < end; i++) hit[i] = true;
        any = true;
      }
    }
  }
  return any ? hit : null;
}

function mask(text, words) {
  const hit = matches(text, words);
  if (!hit) return null;
  return [...text].map((c, i) => (hit[i] ? '*' : c)).join('');
}

// RFC 6901: the parent object/array and the last token of `pointer`, or null.
function resolve(doc, pointer) {
  const tokens = pointer.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
  let parent = null, key = null, cur = doc;
  for (const t of tokens) {
    if (cur === null || typeof cur !== 'object') return null;
    if (Array.isArray(cur)) {
      if (!/^(0|[1-9][0-9]*)$/.test(t) || Number(t) >= cur.length) return null;
    } else if (!Object.prototype.hasOwnProperty.call(cur, t)) return null;
    parent = cur; key = Array.isArray(cur) ? Number(t) : t; cur = cur[key];
  }
  return parent === null ? null : { parent, key };
}

// Keys sorted, as the Rust twin's serde_json writes them.
function sorted(v) {
  if (Array.isArray(v)) return v.map(sorted);
  if (v !== null && typeof v === 'object') {
    const out = {};
    for (const k of Object.keys(v).sort()) out[k] = sorted(v[k]);
    return out;
  }
  return v;
}

export function init(config) {
  loadSettings(config);
}

export function onRequest(request) {
  let body;
  try { body = JSON.parse(decoder.decode(request.body)); } catch { return { tag: 'proceed' }; }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return { tag: 'proceed' };
  let settings;
  try { settings = loadSettings(configGet()); } catch (e) {
    return { tag: 'reject', val: { status: 403, code: 'content_check_failed', message: String(e) } };
  }
  let maskedAny = false;
  for (const field of settings.fields) {
    const at = resolve(body, field);
    if (!at || typeof at.parent[at.key] !== 'string') continue;
    const text = at.parent[at.key];
    if (settings.action === 'block') {
      if (matches(text, settings.words)) {
        return { tag: 'reject', val: { status: 422, code: 'content_blocked', message: 'the text contains a blocked word' } };
      }
    } else {
      const m = mask(text, settings.words);
      if (m !== null) { at.parent[at.key] = m; maskedAny = true; }
    }
  }
  if (!maskedAny) return { tag: 'proceed' };
  return { tag: 'modify', val: { body: encoder.encode(JSON.stringify(sorted(body))), setHeaders: [] } };
}

export function onResponse(request, response) {
  return { tag: 'proceed' };
}
