// Drives the SFU's server API with the official livekit-server-sdk (RoomServiceClient), one call
// per stdin line, one JSON answer per stdout line. Spawned by services/sfu/tests.
//
//   LIVEKIT_URL=http://… LIVEKIT_API_KEY=… LIVEKIT_API_SECRET=… node server-api.mjs
//
// In:  {"call":"listRooms","args":[…]}  — any RoomServiceClient method; an argument written
//      {"$text":"…"} is passed as its UTF-8 bytes (sendData's payload).
//      {"as":{…grant},"call":…,"args":[…]} — the same call by a client whose token (minted by the
//      SDK's AccessToken) carries only that grant.
// Out: {"ok":<result as protobuf JSON>} or {"error":{"status":N,"code":"…","message":"…"}}.
import readline from 'node:readline';
import { AccessToken, RoomServiceClient } from 'livekit-server-sdk';

const url = process.env.LIVEKIT_URL;
const key = process.env.LIVEKIT_API_KEY;
const secret = process.env.LIVEKIT_API_SECRET;
const rooms = new RoomServiceClient(url, key, secret, { failover: false });

const toJson = (v) => {
  if (v === undefined || v === null) return null;
  if (Array.isArray(v)) return v.map(toJson);
  if (typeof v.toJson === 'function') return v.toJson();
  return v;
};
const arg = (a) =>
  a && typeof a === 'object' && '$text' in a ? new TextEncoder().encode(a.$text) : a;

async function run(line) {
  const req = JSON.parse(line);
  let client = rooms;
  if (req.as) {
    const at = new AccessToken(key, secret, { ttl: '10m' });
    at.addGrant(req.as);
    client = new RoomServiceClient(url, undefined, undefined, { token: await at.toJwt(), failover: false });
  }
  return toJson(await client[req.call](...(req.args ?? []).map(arg)));
}

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const lines = readline.createInterface({ input: process.stdin });
// One call at a time, in order: each answer belongs to the line before it.
let chain = Promise.resolve();
lines.on('line', (line) => {
  if (!line.trim()) return;
  chain = chain.then(() =>
    run(line).then(
      (ok) => out({ ok: ok ?? null }),
      (e) => out({ error: { status: e.status, code: e.code, message: String(e.message) } }),
    ),
  );
});
