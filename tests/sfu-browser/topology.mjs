// Members of video rooms in one headless Chromium (a page each), for the SFU topology test
// (services/sfu/tests/sfu/topology.rs). Every page is loaded from the router's origin and does
// what an app does: POST /api/v1/rooms/<room>/video-token (through the router) and connect
// livekit-client to the URL in the answer (the node the room is placed on), publishing a small
// camera track. When its connection is lost (the node died), it asks the API for a new token
// until the answer names another node, and connects there; a refused token ends it.
//
//   node topology.mjs <router-origin>
//
// stdin, one JSON object a line: {"cmd":"join","member":"m1","accessToken":"…","roomId":7}
// stdout, JSON lines tagged with "member" and the page's "gen" (connections so far):
//   {"event":"joined","url":…}, {"event":"lost"}, {"event":"disconnected","reasonName":…},
//   {"event":"connectError","message":…}, {"event":"tokenRefused","status":N},
//   {"event":"decoding","from":<identity>,"framesDecoded":N} every 500 ms per remote video track,
//   {"event":"fatal","message":…}. All lines carry "at": unix milliseconds.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';
import { CHROMIUM_ARGS, MEDIA_ARGS, chromiumPath } from '../chromium.mjs';

const [origin] = process.argv.slice(2);
const emit = (obj) => process.stdout.write(JSON.stringify({ ...obj, at: Date.now() }) + '\n');

// Runs inside the page.
async function member(name, accessToken, roomId) {
  const LK = window.LivekitClient;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  let room = null;
  let url = null;
  let gen = 0;
  let stopped = false;
  const emit = (obj) => window.emit({ ...obj, member: name, gen });

  async function token() {
    const res = await fetch(`/api/v1/rooms/${roomId}/video-token`, {
      method: 'POST',
      headers: { authorization: `Bearer ${accessToken}` },
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) return { status: res.status };
    return { status: res.status, token: body.data.token, url: body.data.url };
  }

  // Connects to whatever node the API names; after a loss, waits for the API to name another.
  async function join(afterLoss) {
    const dead = afterLoss ? url : null;
    while (!stopped) {
      const t = await token().catch(() => ({ status: 0 }));
      if ([401, 403, 404].includes(t.status)) {
        emit({ event: 'tokenRefused', status: t.status });
        stopped = true;
        return;
      }
      if (t.status !== 200 || t.url === dead) {
        await sleep(250);
        continue;
      }
      const r = new LK.Room({ adaptiveStream: false, dynacast: false });
      watch(r);
      try {
        await r.connect(t.url, t.token);
      } catch (e) {
        emit({ event: 'connectError', message: String(e && e.message) });
        await sleep(250);
        continue;
      }
      room = r;
      url = t.url;
      gen += 1;
      emit({ event: 'joined', url });
      // A fresh camera track per connection: disconnecting a room stops its local tracks.
      const track = await LK.createLocalVideoTrack({
        resolution: { width: 320, height: 180, frameRate: 15 },
      });
      await r.localParticipant.publishTrack(track, { simulcast: false });
      return;
    }
  }

  function lost(r, what) {
    if (r !== room) return;
    room = null;
    emit({ event: 'lost', what });
    r.disconnect().catch(() => {});
    join(true);
  }

  function watch(r) {
    r.on(LK.RoomEvent.TrackSubscribed, (t) => {
      const el = t.attach();
      el.muted = true;
      document.body.appendChild(el);
    });
    r.on(LK.RoomEvent.TrackUnsubscribed, (t) => t.detach().forEach((el) => el.remove()));
    r.on(LK.RoomEvent.SignalReconnecting, () => lost(r, 'signalReconnecting'));
    r.on(LK.RoomEvent.Reconnecting, () => lost(r, 'reconnecting'));
    r.on(LK.RoomEvent.Disconnected, (reason) => {
      if (r !== room) return;
      emit({ event: 'disconnected', reasonName: LK.DisconnectReason[reason] });
      lost(r, 'disconnected');
    });
  }

  setInterval(async () => {
    const r = room;
    if (!r) return;
    for (const p of r.remoteParticipants.values()) {
      for (const pub of p.videoTrackPublications.values()) {
        const t = pub.track;
        if (!t || !t.receiver) continue;
        const report = await t.receiver.getStats().catch(() => null);
        if (!report) continue;
        report.forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'video') {
            emit({ event: 'decoding', from: p.identity, framesDecoded: s.framesDecoded ?? 0 });
          }
        });
      }
    }
  }, 500);

  await join(false);
}

async function main() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfu-topology-'));
  const browser = await puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    // Over a pipe, Chromium exits when this process dies.
    pipe: true,
    userDataDir,
    args: [
      ...CHROMIUM_ARGS,
      ...MEDIA_ARGS,
      // Every page is a member in the foreground: no timer throttling of "background" tabs.
      '--disable-background-timer-throttling',
      '--disable-renderer-backgrounding',
      '--disable-backgrounding-occluded-windows',
    ],
  });
  const finish = async (code) => {
    await browser.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
    process.exit(code);
  };
  let pending = '';
  process.stdin.on('data', (chunk) => {
    pending += chunk;
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (!line) continue;
      const cmd = JSON.parse(line);
      if (cmd.cmd !== 'join') continue;
      (async () => {
        const tab = await browser.newPage();
        tab.on('pageerror', (err) => emit({ event: 'pageError', member: cmd.member, message: String(err) }));
        await tab.exposeFunction('emit', (obj) => emit(obj));
        await tab.goto(`${origin}/`);
        await tab.evaluate(member, cmd.member, cmd.accessToken, cmd.roomId);
      })().catch((e) => emit({ event: 'fatal', member: cmd.member, message: String(e && e.stack ? e.stack : e) }));
    }
  });
  process.stdin.on('end', () => finish(0));
  process.stdin.resume();
  emit({ event: 'ready' });
}

main().catch((e) => {
  emit({ event: 'fatal', message: String(e && e.stack ? e.stack : e) });
  process.exit(1);
});
