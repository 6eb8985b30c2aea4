// Why this file exists: it proves that the unmodified OpenIM JavaScript SDK (@openim/client-sdk,
// pinned in package.json) works through imgate. Two SDK instances log in, become friends, A creates
// a group that B joins, A sends B a text, B receives it (masked when a content filter is on), reads
// the history and the conversation list; then the driver revokes A's session and A must see the
// SDK's kicked/token-invalid event. tests/e2e/tests/suite/openim_sdk.rs drives it through the gateway;
// it runs just as well against the OpenIM emulator directly (apiAddr/wsAddr pointed at it).
//
// Protocol: one JSON line per step on stdout ({"step":"login_a","ok":true,...}); the first failure
// prints {"step":...,"ok":false,"error":...} and exits 1. Before the revoke step it prints
// {"step":"ready_for_revoke"} and waits for one line on stdin (the driver revokes, then writes it).
// Everything else (the SDK's own logs, SDK_TRACE output) goes to stderr.
//
// Environment:
//   SDK_API_ADDR, SDK_WS_ADDR         apiAddr and wsAddr given to the SDK's login (required)
//   SDK_A_USER, SDK_A_TOKEN           user A (the sender, later revoked) and its token (required)
//   SDK_B_USER, SDK_B_TOKEN           user B (the receiver) and its token (required)
//   SDK_PLATFORM_ID                   platformID of both logins (default 5, web)
//   SDK_TEXT                          the text A sends (default "hello B, darn it")
//   SDK_EXPECT_TEXT                   the text B must receive (default: SDK_TEXT, i.e. no filter)
//   SDK_STEP_TIMEOUT_MS               bound of each step (default 10000)
//   SDK_REVOKE_TIMEOUT_MS             bound of A's kicked/invalid event after the revoke (default 5000)
//   SDK_REVOKE                        "0" skips the revoke step (default: on)
//   SDK_TRACE                         "1": every HTTP call and WebSocket frame of the SDK on stderr
//   SDK_LOG_LEVEL                     the SDK's own log level, 0 (trace) .. 5 (silent), default 5
//   SDK_TOLERATE_SYNC_FAILURE         "1": a failed login sync is reported and the flow goes on
//                                     (for diagnosis; the tests never set it)

import { format } from 'node:util';
import { createInterface } from 'node:readline';
import { WebSocket as NodeWebSocket } from 'ws';

// stdout carries the step lines only: the SDK logs through console (and loglevel binds console's
// methods when login sets its level), so console goes to stderr before the SDK is loaded.
for (const m of ['log', 'info', 'debug', 'warn', 'error', 'trace']) {
  console[m] = (...args) => process.stderr.write(format(...args) + '\n');
}

// The SDK starts promises it never awaits (e.g. the refresh after addFriend); a browser logs their
// rejections, Node would exit on the first one. Log them as a browser does, and count them.
const unhandled = [];
process.on('unhandledRejection', (reason) => {
  const text = String(reason?.message ?? JSON.stringify(reason));
  unhandled.push(text);
  process.stderr.write(`sdk flow: unhandled rejection inside the SDK: ${reason?.stack ?? text}\n`);
});

const env = (name, fallback) => {
  const v = process.env[name];
  if (v !== undefined && v !== '') return v;
  if (fallback === undefined) fail('config', `environment variable ${name} is required`);
  return fallback;
};

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(step, error, extra = {}) {
  emit({ step, ok: false, error, ...extra });
  process.stderr.write(`sdk flow: step ${step} failed: ${error}\n`);
  process.exit(1);
}

const cfg = {
  api: env('SDK_API_ADDR'),
  ws: env('SDK_WS_ADDR'),
  a: { user: env('SDK_A_USER'), token: env('SDK_A_TOKEN') },
  b: { user: env('SDK_B_USER'), token: env('SDK_B_TOKEN') },
  platformID: Number(env('SDK_PLATFORM_ID', '5')),
  text: env('SDK_TEXT', 'hello B, darn it'),
  stepMs: Number(env('SDK_STEP_TIMEOUT_MS', '10000')),
  revokeMs: Number(env('SDK_REVOKE_TIMEOUT_MS', '5000')),
  revoke: env('SDK_REVOKE', '1') !== '0',
  trace: env('SDK_TRACE', '0') === '1',
  logLevel: Number(env('SDK_LOG_LEVEL', '5')),
  tolerateSyncFailure: env('SDK_TOLERATE_SYNC_FAILURE', '0') === '1',
};
cfg.expectText = env('SDK_EXPECT_TEXT', cfg.text);

const trace = (...args) => {
  if (cfg.trace) process.stderr.write(`[trace] ${format(...args)}\n`);
};

// The SDK picks its transport by `typeof WebSocket` and reads binary frames as an ArrayBuffer (or
// anything with .arrayBuffer()); Node's `ws` delivers Buffers unless binaryType says otherwise.
let wsCounter = 0;
class SdkWebSocket extends NodeWebSocket {
  constructor(url, protocols, options) {
    super(url, protocols, options);
    this.binaryType = 'arraybuffer';
    const id = ++wsCounter;
    this.traceID = id;
    trace(`ws#${id} dial ${String(url).replace(/token=[^&]*/, 'token=<redacted>')}`);
    this.on('upgrade', (res) => trace(`ws#${id} upgraded ${res.statusCode}`));
    this.on('unexpected-response', (_req, res) => trace(`ws#${id} unexpected response ${res.statusCode}`));
    this.on('message', (data, isBinary) => trace(`ws#${id} <- ${describeFrame(data, isBinary)}`));
    this.on('close', (code, reason) => trace(`ws#${id} closed ${code} ${reason}`));
    this.on('error', (e) => trace(`ws#${id} error ${e.message}`));
    this.on('ping', () => trace(`ws#${id} <- ping (control)`));
  }
  send(data, ...rest) {
    trace(`ws#${this.traceID} -> ${describeFrame(data, typeof data !== 'string')}`);
    return super.send(data, ...rest);
  }
}
globalThis.WebSocket = SdkWebSocket;

function describeFrame(data, isBinary) {
  if (!cfg.trace) return '';
  const text = Buffer.from(typeof data === 'string' ? Buffer.from(data) : data).toString('utf8');
  if (!isBinary) return `text ${text}`;
  try {
    const env = JSON.parse(text);
    const dataLen = typeof env.data === 'string' ? env.data.length : 0;
    return `binary {reqIdentifier:${env.reqIdentifier}, msgIncr:${env.msgIncr}, operationID:${env.operationID}, errCode:${env.errCode ?? '-'}, errMsg:${env.errMsg ?? '-'}, data:${dataLen} b64 chars}`;
  } catch {
    return `binary ${Buffer.byteLength(text)} bytes (not JSON)`;
  }
}

if (cfg.trace) {
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (url, init = {}) => {
    const headers = init.headers || {};
    const ct = headers['Content-Type'] || headers['content-type'] || '';
    const res = await realFetch(url, init);
    let note = '';
    try {
      const body = await res.clone().json();
      note = `errCode ${body.errCode}${body.errCode ? ` ${body.errMsg} ${body.errDlt ?? ''}` : ''}`;
    } catch {
      note = 'not JSON';
    }
    trace(`http ${init.method || 'GET'} ${url} [${ct}] -> ${res.status} ${note}`);
    return res;
  };
}

const { getSDK, CbEvents } = await import('@openim/client-sdk');

// Every event of an SDK instance, recorded from the start, so a step waits on what already fired
// as well as what is still to come.
function recorder(sdk, who) {
  const seen = [];
  const waiters = new Set();
  for (const ev of Object.values(CbEvents)) {
    sdk.on(ev, (payload) => {
      const entry = { ev, payload };
      seen.push(entry);
      trace(`${who} event ${ev} errCode=${payload?.errCode ?? 0} ${payload?.errMsg ?? ''}`);
      for (const w of waiters) w(entry);
    });
  }
  return {
    mark: () => seen.length,
    // Resolves with the first event (at index >= from) named in `events` that satisfies `pred`.
    waitFor(step, events, pred, ms, from = 0) {
      return new Promise((resolve, reject) => {
        const match = (e) => events.includes(e.ev) && pred(e.payload);
        const hit = seen.slice(from).find(match);
        if (hit) return resolve(hit);
        const timer = setTimeout(() => {
          waiters.delete(w);
          const got = seen.slice(from).map((e) => e.ev);
          reject(new StepError(step, `timed out after ${ms} ms waiting for ${who}'s ${events.join('|')}; events seen: ${got.join(', ') || 'none'}`));
        }, ms);
        const w = (e) => {
          if (match(e)) {
            clearTimeout(timer);
            waiters.delete(w);
            resolve(e);
          }
        };
        waiters.add(w);
      });
    },
  };
}

class StepError extends Error {
  constructor(step, message) {
    super(message);
    this.step = step;
  }
}

// Bounds an SDK call and turns its rejection ({errCode, errMsg}) into a step failure.
async function call(step, promise, ms = cfg.stepMs) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new StepError(step, `timed out after ${ms} ms`)), ms);
  });
  try {
    const res = await Promise.race([promise, timeout]);
    if (res && res.errCode) throw new StepError(step, `errCode ${res.errCode}: ${res.errMsg}`);
    return res ? res.data : undefined;
  } catch (e) {
    if (e instanceof StepError) throw e;
    const detail = e && typeof e === 'object' && 'errCode' in e ? `errCode ${e.errCode}: ${e.errMsg}` : String(e?.stack || e);
    throw new StepError(step, detail);
  } finally {
    clearTimeout(timer);
  }
}

const A = getSDK();
const B = getSDK();
const evA = recorder(A, 'A');
const evB = recorder(B, 'B');

async function login(step, sdk, ev, who) {
  await call(step, sdk.login({ userID: who.user, token: who.token, platformID: cfg.platformID, apiAddr: cfg.api, wsAddr: cfg.ws, logLevel: cfg.logLevel }));
  const bad = [CbEvents.OnConnectFailed, CbEvents.OnUserTokenInvalid, CbEvents.OnUserTokenExpired, CbEvents.OnKickedOffline];
  const first = await ev.waitFor(step, [CbEvents.OnConnectSuccess, ...bad], () => true, cfg.stepMs);
  if (first.ev !== CbEvents.OnConnectSuccess) {
    throw new StepError(step, `${first.ev}: errCode ${first.payload.errCode} ${first.payload.errMsg}`);
  }
  const status = await call(step, sdk.getLoginStatus());
  if (status !== 3) throw new StepError(step, `loginStatus ${status}, expected 3 (logged)`);
  const sync = await ev.waitFor(`${step}_sync`, [CbEvents.OnSyncServerFinish, CbEvents.OnSyncServerFailed], () => true, cfg.stepMs);
  if (sync.ev !== CbEvents.OnSyncServerFinish) {
    const error = `OnSyncServerFailed: errCode ${sync.payload.errCode} ${sync.payload.errMsg}`;
    if (!cfg.tolerateSyncFailure) throw new StepError(`${step}_sync`, error);
    emit({ step: `${step}_sync`, ok: false, tolerated: true, error });
    return { loginStatus: status, sync: 'failed' };
  }
  return { loginStatus: status, sync: 'finished' };
}

const singleConversationID = (x, y) => `si_${[x, y].sort().join('_')}`;

async function main() {
  const steps = [];
  const step = async (name, fn) => {
    const extra = (await fn()) || {};
    emit({ step: name, ok: true, ...extra });
    steps.push(name);
  };

  await step('login_a', () => login('login_a', A, evA, cfg.a));
  await step('login_b', () => login('login_b', B, evB, cfg.b));

  await step('friend_request', async () => {
    await call('friend_request', A.addFriend({ toUserID: cfg.b.user, reqMsg: 'hi, it is A' }));
  });
  await step('friend_accept', async () => {
    await call('friend_accept', B.acceptFriendApplication({ toUserID: cfg.a.user, handleMsg: 'welcome' }));
  });
  await step('friends', async () => {
    const list = await call('friends', A.getFriendListPage({ offset: 0, count: 100 }));
    const ids = (list || []).map((f) => f.userID);
    if (!ids.includes(cfg.b.user)) throw new StepError('friends', `A's friend list ${JSON.stringify(ids)} lacks ${cfg.b.user}`);
    return { friends: ids };
  });

  let groupID;
  await step('group_create', async () => {
    const info = await call('group_create', A.createGroup({ memberUserIDs: [], groupInfo: { groupName: 'sdk flow', needVerification: 2 } }));
    groupID = info?.groupID;
    if (!groupID) throw new StepError('group_create', `no groupID in ${JSON.stringify(info)}`);
    return { groupID };
  });
  await step('group_join', async () => {
    await call('group_join', B.joinGroup({ groupID, reqMsg: '', joinSource: 3 }));
    const members = await call('group_join', A.getGroupMemberList({ groupID, filter: 0, offset: 0, count: 100 }));
    const ids = (members || []).map((m) => m.userID);
    if (!ids.includes(cfg.b.user)) throw new StepError('group_join', `members ${JSON.stringify(ids)} lack ${cfg.b.user}`);
    return { members: ids };
  });

  let sent;
  const recvMark = evB.mark();
  await step('send_text', async () => {
    const msg = await call('send_text', A.createTextMessage(cfg.text));
    sent = await call('send_text', A.sendMessage({ recvID: cfg.b.user, groupID: '', message: msg }));
    if (!sent?.serverMsgID) throw new StepError('send_text', `no serverMsgID in ${JSON.stringify(sent)}`);
    return { clientMsgID: sent.clientMsgID, serverMsgID: sent.serverMsgID };
  });
  await step('recv_text', async () => {
    const isOurs = (m) => m.clientMsgID === sent.clientMsgID;
    const hit = await evB.waitFor('recv_text', [CbEvents.OnRecvNewMessages, CbEvents.OnRecvNewMessage], (p) => [].concat(p?.data ?? []).some(isOurs), cfg.stepMs, recvMark);
    const m = [].concat(hit.payload.data).find(isOurs);
    const text = m.textElem?.content;
    if (text !== cfg.expectText) {
      throw new StepError('recv_text', `B received ${JSON.stringify(text)}, expected ${JSON.stringify(cfg.expectText)}`);
    }
    if (m.sendID !== cfg.a.user) throw new StepError('recv_text', `sendID ${m.sendID}, expected ${cfg.a.user}`);
    return { event: hit.ev, text, masked: text !== cfg.text };
  });

  const conversationID = singleConversationID(cfg.a.user, cfg.b.user);
  await step('history', async () => {
    const res = await call('history', B.getAdvancedHistoryMessageList({ conversationID, count: 20, startClientMsgID: '', viewType: 0 }));
    const list = res?.messageList ?? [];
    if (list.length === 0) throw new StepError('history', `empty history of ${conversationID}: ${JSON.stringify(res)}`);
    const ours = list.find((m) => m.clientMsgID === sent.clientMsgID);
    if (!ours) throw new StepError('history', `the sent message is not in ${conversationID}'s history`);
    if (ours.textElem?.content !== cfg.expectText) {
      throw new StepError('history', `history holds ${JSON.stringify(ours.textElem?.content)}, expected ${JSON.stringify(cfg.expectText)}`);
    }
    return { conversationID, messages: list.length };
  });
  await step('conversations', async () => {
    const list = (await call('conversations', B.getConversationListSplit({ offset: 0, count: 20 }))) ?? [];
    const ids = list.map((c) => c.conversationID);
    if (!ids.includes(conversationID)) throw new StepError('conversations', `B's conversation list ${JSON.stringify(ids)} lacks ${conversationID}`);
    return { conversations: ids };
  });

  if (cfg.revoke) {
    emit({ step: 'ready_for_revoke', user: cfg.a.user });
    const mark = evA.mark();
    const markB = evB.mark();
    const line = await readLine(cfg.stepMs * 3);
    if (line === null) throw new StepError('revoked_a', 'stdin closed before the driver said the revoke was done');
    const kicked = [CbEvents.OnKickedOffline, CbEvents.OnUserTokenInvalid, CbEvents.OnUserTokenExpired];
    await step('revoked_a', async () => {
      const hit = await evA.waitFor('revoked_a', kicked, () => true, cfg.revokeMs, mark);
      return { event: hit.ev, errCode: hit.payload.errCode };
    });
    await step('b_still_logged', async () => {
      const status = await call('b_still_logged', B.getLoginStatus());
      if (status !== 3) throw new StepError('b_still_logged', `B's loginStatus ${status}, expected 3`);
      const lost = await evB.waitFor('b_still_logged', kicked, () => true, 0, markB).then((e) => e.ev, () => null);
      if (lost) throw new StepError('b_still_logged', `B got ${lost} when A was revoked`);
      return { loginStatus: status };
    });
  }
  emit({ step: 'done', ok: true, steps, sdkUnhandledRejections: unhandled });
}

let stdinLines;
function readLine(ms) {
  if (!stdinLines) {
    const rl = createInterface({ input: process.stdin });
    const queue = [];
    let pending = null;
    let closed = false;
    rl.on('line', (l) => (pending ? (pending(l), (pending = null)) : queue.push(l)));
    rl.on('close', () => {
      closed = true;
      if (pending) pending(null), (pending = null);
    });
    stdinLines = () => (queue.length ? Promise.resolve(queue.shift()) : closed ? Promise.resolve(null) : new Promise((r) => (pending = r)));
  }
  return Promise.race([
    stdinLines(),
    new Promise((_, reject) => setTimeout(() => reject(new StepError('revoked_a', `no line on stdin within ${ms} ms`)), ms).unref()),
  ]);
}

try {
  await main();
  process.exit(0);
} catch (e) {
  if (e instanceof StepError) fail(e.step, e.message);
  fail('internal', String(e?.stack || e));
}
