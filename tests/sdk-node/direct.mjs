// Why this file exists: it runs flow.mjs against an OpenIM server (the emulator, `openim-emu`)
// DIRECTLY, without imgate, to tell what the SDK needs from OpenIM itself apart from what it needs
// from the gateway. It registers two fresh users with the admin token, mints their OpenIM user
// tokens, runs the flow with apiAddr/wsAddr pointed at the server, and answers the flow's revoke
// step with OpenIM's own /auth/force_logout. A developer's tool; the tests drive flow.mjs through
// the gateway (tests/e2e/tests/suite/openim_sdk.rs).
//
//   node tests/sdk-node/direct.mjs [--api http://127.0.0.1:10002] [--ws ws://127.0.0.1:10001]
//        [--secret openIM123] [--admin imAdmin] [--platform 5] [--trace] [--tolerate-sync-failure]
// Exit status: flow.mjs's.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const api = opt('api', 'http://127.0.0.1:10002');
const ws = opt('ws', 'ws://127.0.0.1:10001');
const secret = opt('secret', 'openIM123');
const adminID = opt('admin', 'imAdmin');
const platformID = Number(opt('platform', '5'));

let op = 0;
async function openim(path, token, body) {
  const headers = { 'Content-Type': 'application/json', operationID: `direct-${++op}` };
  if (token) headers.token = token;
  const res = await fetch(api + path, { method: 'POST', headers, body: JSON.stringify(body) });
  const json = await res.json();
  if (json.errCode !== 0) throw new Error(`${path}: ${JSON.stringify(json)}`);
  return json.data;
}

const admin = (await openim('/auth/get_admin_token', null, { secret, userID: adminID })).token;
const suffix = Date.now().toString(36);
const a = `sdka${suffix}`;
const b = `sdkb${suffix}`;
await openim('/user/user_register', admin, { users: [{ userID: a, nickname: 'A' }, { userID: b, nickname: 'B' }] });
const tokenOf = async (userID) => (await openim('/auth/get_user_token', admin, { userID, platformID })).token;

const flow = spawn(process.execPath, [join(dirname(fileURLToPath(import.meta.url)), 'flow.mjs')], {
  env: {
    ...process.env,
    SDK_API_ADDR: api,
    SDK_WS_ADDR: ws,
    SDK_A_USER: a,
    SDK_A_TOKEN: await tokenOf(a),
    SDK_B_USER: b,
    SDK_B_TOKEN: await tokenOf(b),
    SDK_PLATFORM_ID: String(platformID),
    SDK_TRACE: args.includes('--trace') ? '1' : process.env.SDK_TRACE ?? '0',
    SDK_TOLERATE_SYNC_FAILURE: args.includes('--tolerate-sync-failure') ? '1' : process.env.SDK_TOLERATE_SYNC_FAILURE ?? '0',
  },
  stdio: ['pipe', 'pipe', 'inherit'],
});
createInterface({ input: flow.stdout }).on('line', async (line) => {
  process.stdout.write(line + '\n');
  let step;
  try {
    step = JSON.parse(line).step;
  } catch {
    return;
  }
  if (step === 'ready_for_revoke') {
    try {
      await openim('/auth/force_logout', admin, { userID: a, platformID });
      flow.stdin.write('revoked\n');
    } catch (e) {
      process.stderr.write(`force_logout failed: ${e.message}\n`);
      flow.stdin.end();
    }
  }
});
flow.on('exit', (code) => process.exit(code ?? 1));
