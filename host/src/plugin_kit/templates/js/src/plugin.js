// The glue of {{name}}: imgate's contract (wit/world.wit) on top of the policy in logic.js.
// Exports the three hooks; imports only what wit/world.wit names (`imgate:plugin/config`).
// Each hook call runs in a fresh instance: keep nothing in globals.
import { get as configGet } from 'imgate:plugin/config@0.1.0';
import { decide, parseSettings } from './logic.js';

/// Runs when imgate loads a route's configuration: throwing refuses it (the message is shown).
export function init(config) {
  parseSettings(config);
}

export function onRequest(request) {
  let settings;
  try {
    settings = parseSettings(configGet());
  } catch (e) {
    // `init` accepted this configuration, so this does not happen; if it did, refuse.
    return { tag: 'reject', val: { status: 403, code: 'policy_misconfigured', message: String(e) } };
  }
  return decide(request.body, settings);
}

export function onResponse(request, response) {
  return { tag: 'proceed' };
}
