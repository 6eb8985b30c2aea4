// Runs once, when MongoDB's data volume is first initialised: creates OpenIM's own user (readWrite on its database only), the password read from the compose secret.
const password = require('fs').readFileSync('/run/secrets/openim_mongo_password', 'utf8').trim();
db.getSiblingDB('openim_v3').createUser({
  user: 'openIM',
  pwd: password,
  roles: [{ role: 'readWrite', db: 'openim_v3' }],
});
