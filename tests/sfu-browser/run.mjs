// Drives the official livekit-client (UMD bundle from node_modules) in Debian's headless Chromium
// against the SFU, and prints what happens as JSON lines on stdout. Spawned by services/sfu/tests.
//
//   node run.mjs <scenario> <ws-url> <token> [hold-seconds]
//
// Environment: SFU_BROWSER_LOG=1 forwards the client's debug log; SFU_BROWSER_HIDE_CANDIDATES=1
// keeps the page's ICE candidates from the server. SFU_BROWSER_ORIGIN=<http origin> loads the
// page from there (a router serving this harness page and livekit-client.umd.js as static files)
// instead of the harness's own server. SFU_BROWSER_LEGACY='{"cookie","roomName","identity","name"}'
// makes the page do what the existing web client does: keep the access token in its
// `accessToken` cookie, ask its own origin's GET /video/api/url for the SFU URL and
// GET /video/getToken?identity=&name=&roomName= for the token (the ws-url and token arguments
// are then ignored), reporting {"event":"legacyToken","status":N,"identity":…,"url":…}.
//
// SFU_BROWSER_CONNECT='{"autoSubscribe":false}' adds options to room.connect();
// SFU_BROWSER_ROOM='{"dynacast":true}' to the Room (default: no adaptive stream, no dynacast).
// SFU_BROWSER_TONE=1 makes the fake microphone play a steady 440 Hz tone (a WAV written for the
// run) instead of Chromium's short beeps.
//
// Scenarios:
//   connect  room.connect(); report SignalConnected / Connected or the ConnectionError, then stay
//            in the room until stdin closes (or hold-seconds pass).
//   publish  connect, then enableCameraAndMicrophone(); report LocalTrackPublished per track,
//            then keep publishing until stdin closes (or hold-seconds pass).
//   mic      as publish, the microphone only.
//
// Lines: {"event":"ready"}, {"event":"signalConnected","remotes":[…]}, {"event":"connected"},
// {"event":"connectError","reason":N,"reasonName":"…","message":"…"},
// {"event":"localTrackPublished","kind":"video","source":"camera","sid":"TR_…"},
// {"event":"trackPublished","identity":"alice",…} (a remote participant's publication),
// {"event":"participantConnected"|"participantDisconnected","identity":…},
// {"event":"reconnecting"} (a full rejoin), {"event":"signalReconnecting"} (a resume: signalling
// only), {"event":"reconnected","sid":…} (the local sid: kept by a resume),
// {"event":"disconnected","reason":N,"reasonName":"…"},
// {"event":"trackSubscribed"|"trackUnsubscribed"|"trackUnpublished"|"trackMuted"|"trackUnmuted",
//  "identity":…,"kind":…,"source":…,"sid":…} (remote tracks),
// {"event":"inbound","identity":…,"source":…,"kind":…,"sinceConnectMs":…,"framesDecoded":…,
//  "frameWidth":…,"totalSamplesReceived":…,"freezeCount":…,"pliCount":…,"senderReports":…,
//  "reportedPacketsSent":…} every 250 ms per subscribed track (from its receiver's inbound-rtp
//  stats, and the remote-outbound-rtp stats of the sender reports it got),
// {"event":"outbound","source":…,"rid":"q"|"h"|"f","active":…,"framesSent":…,"frameWidth":…}
//  every 250 ms per layer of each local video track (its sender's outbound-rtp stats),
// {"event":"stats",…}, {"event":"done"}; {"event":"fatal","message":…} on harness failure.
//
// Commands, one per stdin line (the page reports {"event":"cmdDone","cmd":…} or "cmdError"):
//   mute <camera|microphone>, unmute <…>, unpublish <…>, quality <low|medium|high>
//   (setVideoQuality on every remote camera publication), chat <text> (sendChatMessage),
//   text <text> (sendText on topic lk.chat), data <identity|*> <text> (publishData, reliable),
//   forge <identity> <sid> <text> (publishData to everyone, with the bytes on the wire claiming
//   to come from <identity>/<sid>: reports {"event":"forged","bytes":N} once sent),
//   setMetadata <text>, setName <text>, setAttributes <key> <value> (the local participant's
//   self-updates; cmdDone/cmdError carry "ms", how long the call took),
//   screenshare (publishes a moving 1280x720 canvas as the screen_share source: headless Chromium
//   has no screen to capture), mute/unmute/unpublish screen_share,
//   subscribe <identity> <camera|microphone> <true|false> (setSubscribed on that remote
//   publication), permissions <identity,…|*> (setTrackSubscriptionPermissions: only the named
//   identities may subscribe, or everyone).
// {"event":"inboundKept",…} as "inbound", for a receiver whose publication no longer has a track
//  (unsubscribed): what still reaches the browser after an unsubscribe.
// {"event":"activeSpeakers","identities":[…]} (ActiveSpeakersChanged, loudest first),
// {"event":"connectionQuality","identity":…,"quality":"excellent"|"good"|"poor"|"lost"|…},
// {"event":"permissionChanged","identity":…,"source":…,"status":…} (TrackSubscriptionPermissionChanged).
// Received: {"event":"chatMessage"|"textReceived"|"dataReceived","identity":…,"text":…}.
// Changes: {"event":"metadataChanged"|"nameChanged"|"attributesChanged","identity":…,"local":…,
//  "metadata":…,"name":…,"attributes":{…}}, {"event":"roomMetadataChanged","metadata":…}.
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';
import { CHROMIUM_ARGS, MEDIA_ARGS, chromiumPath } from '../chromium.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const [scenario, wsUrl, token, holdArg] = process.argv.slice(2);
const holdSeconds = Number(holdArg ?? 30);
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const bundle = fs.readFileSync(
  path.join(here, 'node_modules/livekit-client/dist/livekit-client.umd.js'),
);
const page = `<!doctype html><meta charset="utf-8"><title>sfu test</title>
<script src="/livekit-client.umd.js"></script><body></body>`;

function serve() {
  const server = http.createServer((req, res) => {
    if (req.url === '/livekit-client.umd.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(bundle);
    } else {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(page);
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// Runs inside the page.
async function inPage(scenario, wsUrl, token, debug, hideCandidates, connectOptions, roomOptions) {
  const LK = window.LivekitClient;
  if (hideCandidates) {
    // The server learns this page's address only from the checks it receives, so every packet
    // takes the path the server's own candidates name (a test relay, say).
    const onCandidate = Object.getOwnPropertyDescriptor(RTCPeerConnection.prototype, 'onicecandidate');
    Object.defineProperty(RTCPeerConnection.prototype, 'onicecandidate', {
      configurable: true,
      get() {
        return onCandidate.get.call(this);
      },
      set(handler) {
        onCandidate.set.call(this, handler && ((ev) => (ev.candidate ? undefined : handler.call(this, ev))));
      },
    });
  }
  if (debug) LK.setLogLevel('debug');
  // Every line carries t: ms since the page started connecting.
  const connectStart = performance.now();
  const emitRaw = window.emit;
  window.emit = (obj) => emitRaw({ ...obj, t: Math.round(performance.now() - connectStart) });
  // A client cannot be made to lie through the SDK, so lie on the wire: the next data packet
  // sent on `_reliable` gets the outer participant_identity (field 4) and participant_sid
  // (field 17) appended, which a protobuf decoder takes over the earlier values.
  const sendOnChannel = RTCDataChannel.prototype.send;
  let forgeNext = null;
  RTCDataChannel.prototype.send = function (data) {
    if (forgeNext && this.label === '_reliable' && typeof data !== 'string') {
      const [identity, sid] = forgeNext;
      forgeNext = null;
      const original = new Uint8Array(data instanceof ArrayBuffer ? data : data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
      const field = (tag, text) => {
        const bytes = new TextEncoder().encode(text);
        return [...tag, bytes.length, ...bytes];
      };
      const forged = new Uint8Array([...original, ...field([0x22], identity), ...field([0x8a, 0x01], sid)]);
      window.emit({ event: 'forged', bytes: forged.length });
      return sendOnChannel.call(this, forged);
    }
    return sendOnChannel.call(this, data);
  };
  window.__forge = (identity, sid) => {
    forgeNext = [identity, sid];
  };
  const room = new LK.Room({ adaptiveStream: false, dynacast: false, ...roomOptions });
  window.__room = room;
  room.on(LK.RoomEvent.SignalConnected, () =>
    window.emit({
      event: 'signalConnected',
      remotes: [...room.remoteParticipants.values()].map((p) => p.identity),
    }),
  );
  room.on(LK.RoomEvent.Connected, () => window.emit({ event: 'connected' }));
  room.on(LK.RoomEvent.Disconnected, (reason) =>
    window.emit({ event: 'disconnected', reason, reasonName: LK.DisconnectReason[reason] }),
  );
  room.on(LK.RoomEvent.Reconnecting, () => window.emit({ event: 'reconnecting' }));
  room.on(LK.RoomEvent.SignalReconnecting, () => window.emit({ event: 'signalReconnecting' }));
  room.on(LK.RoomEvent.Reconnected, () =>
    window.emit({ event: 'reconnected', sid: room.localParticipant.sid }),
  );
  room.on(LK.RoomEvent.ParticipantConnected, (p) =>
    window.emit({ event: 'participantConnected', identity: p.identity }),
  );
  room.on(LK.RoomEvent.ParticipantDisconnected, (p) =>
    window.emit({ event: 'participantDisconnected', identity: p.identity }),
  );
  room.on(LK.RoomEvent.TrackPublished, (pub, participant) =>
    window.emit({
      event: 'trackPublished',
      identity: participant.identity,
      kind: pub.kind,
      source: pub.source,
      sid: pub.trackSid,
    }),
  );
  const remote = (event) => (track, pub, participant) =>
    window.emit({
      event,
      identity: participant.identity,
      kind: pub.kind,
      source: pub.source,
      sid: pub.trackSid,
    });
  // Receivers by publication, kept after an unsubscribe so that what still arrives is visible.
  const kept = new Map();
  room.on(LK.RoomEvent.ActiveSpeakersChanged, (speakers) =>
    window.emit({ event: 'activeSpeakers', identities: speakers.map((p) => p.identity) }),
  );
  room.on(LK.RoomEvent.ConnectionQualityChanged, (quality, participant) =>
    window.emit({ event: 'connectionQuality', identity: participant.identity, quality }),
  );
  room.on(LK.RoomEvent.TrackSubscriptionPermissionChanged, (pub, status, participant) =>
    window.emit({ event: 'permissionChanged', identity: participant.identity, source: pub.source, status }),
  );
  room.on(LK.RoomEvent.TrackSubscribed, (track, pub, participant) => {
    remote('trackSubscribed')(track, pub, participant);
    if (track.receiver) kept.set(pub, { receiver: track.receiver, identity: participant.identity });
    const el = track.attach();
    el.muted = track.kind === 'audio' ? false : true;
    document.body.appendChild(el);
  });
  room.on(LK.RoomEvent.TrackUnsubscribed, (track, pub, participant) => {
    remote('trackUnsubscribed')(track, pub, participant);
    track.detach().forEach((el) => el.remove());
  });
  room.on(LK.RoomEvent.TrackUnpublished, (pub, participant) =>
    remote('trackUnpublished')(undefined, pub, participant),
  );
  room.on(LK.RoomEvent.TrackMuted, (pub, participant) => {
    if (participant !== room.localParticipant) remote('trackMuted')(undefined, pub, participant);
  });
  room.on(LK.RoomEvent.TrackUnmuted, (pub, participant) => {
    if (participant !== room.localParticipant) remote('trackUnmuted')(undefined, pub, participant);
  });
  const changed = (event) => (participant) =>
    window.emit({
      event,
      identity: participant.identity,
      local: participant === room.localParticipant,
      metadata: participant.metadata,
      name: participant.name,
      attributes: participant.attributes,
    });
  room.on(LK.RoomEvent.ParticipantMetadataChanged, (_prev, p) => changed('metadataChanged')(p));
  room.on(LK.RoomEvent.ParticipantNameChanged, (_name, p) => changed('nameChanged')(p));
  room.on(LK.RoomEvent.ParticipantAttributesChanged, (_attrs, p) => changed('attributesChanged')(p));
  room.on(LK.RoomEvent.RoomMetadataChanged, (metadata) =>
    window.emit({ event: 'roomMetadataChanged', metadata }),
  );
  room.on(LK.RoomEvent.ChatMessage, (msg, participant) =>
    window.emit({ event: 'chatMessage', identity: participant && participant.identity, text: msg.message }),
  );
  room.on(LK.RoomEvent.DataReceived, (payload, participant, kind, topic) =>
    window.emit({
      event: 'dataReceived',
      identity: participant && participant.identity,
      text: new TextDecoder().decode(payload),
      topic,
    }),
  );
  room.registerTextStreamHandler('lk.chat', async (reader, info) => {
    const text = await reader.readAll();
    window.emit({ event: 'textReceived', identity: info.identity, text });
  });
  window.__cmd = async (line) => {
    const [cmd, arg] = line.trim().split(/\s+/);
    const rest = line.trim().split(/\s+/).slice(1).join(' ');
    if (cmd === 'setMetadata') return void (await room.localParticipant.setMetadata(rest));
    if (cmd === 'setName') return void (await room.localParticipant.setName(rest));
    if (cmd === 'setAttributes') {
      const [, key, value] = line.trim().split(/\s+/);
      return void (await room.localParticipant.setAttributes({ [key]: value ?? '' }));
    }
    if (cmd === 'subscribe') {
      const [, identity, src, on] = line.trim().split(/\s+/);
      const p = [...room.remoteParticipants.values()].find((x) => x.identity === identity);
      const want = { microphone: LK.Track.Source.Microphone }[src] ?? LK.Track.Source.Camera;
      const pub = p && [...p.trackPublications.values()].find((x) => x.source === want);
      if (!pub) throw new Error(`no ${src} publication of ${identity}`);
      return void pub.setSubscribed(on === 'true');
    }
    if (cmd === 'permissions') {
      if (arg === '*') return void room.localParticipant.setTrackSubscriptionPermissions(true);
      const allowed = arg.split(',').map((identity) => ({ participantIdentity: identity, allowAll: true }));
      return void room.localParticipant.setTrackSubscriptionPermissions(false, allowed);
    }
    if (cmd === 'chat') return void (await room.localParticipant.sendChatMessage(rest));
    if (cmd === 'text') return void (await room.localParticipant.sendText(rest, { topic: 'lk.chat' }));
    if (cmd === 'data') {
      const text = line.trim().split(/\s+/).slice(2).join(' ');
      const opts = { reliable: true };
      if (arg !== '*') opts.destinationIdentities = [arg];
      return void (await room.localParticipant.publishData(new TextEncoder().encode(text), opts));
    }
    if (cmd === 'forge') {
      const [, identity, sid, ...words] = line.trim().split(/\s+/);
      window.__forge(identity, sid);
      return void (await room.localParticipant.publishData(new TextEncoder().encode(words.join(' ')), { reliable: true }));
    }
    if (cmd === 'screenshare') {
      const canvas = document.createElement('canvas');
      canvas.width = 1280;
      canvas.height = 720;
      const ctx = canvas.getContext('2d');
      let frame = 0;
      setInterval(() => {
        frame += 1;
        ctx.fillStyle = `hsl(${(frame * 7) % 360}, 60%, 50%)`;
        ctx.fillRect(0, 0, canvas.width, canvas.height);
        ctx.fillStyle = '#fff';
        ctx.font = '96px sans-serif';
        ctx.fillText(`slide ${frame}`, 100 + (frame % 200), 360);
      }, 66);
      const [track] = canvas.captureStream(15).getVideoTracks();
      return void (await room.localParticipant.publishTrack(track, {
        source: LK.Track.Source.ScreenShare,
        name: 'screen',
        simulcast: false,
      }));
    }
    const source = {
      microphone: LK.Track.Source.Microphone,
      screen_share: LK.Track.Source.ScreenShare,
    }[arg] ?? LK.Track.Source.Camera;
    const lp = room.localParticipant;
    if (cmd === 'mute') await lp.getTrackPublication(source).mute();
    else if (cmd === 'unmute') await lp.getTrackPublication(source).unmute();
    else if (cmd === 'unpublish') await lp.unpublishTrack(lp.getTrackPublication(source).track);
    else if (cmd === 'quality') {
      const q = { low: LK.VideoQuality.LOW, medium: LK.VideoQuality.MEDIUM, high: LK.VideoQuality.HIGH }[arg];
      for (const p of room.remoteParticipants.values())
        for (const pub of p.trackPublications.values())
          if (pub.source === LK.Track.Source.Camera) pub.setVideoQuality(q);
    } else throw new Error(`unknown command ${line}`);
  };
  setInterval(async () => {
    for (const pub of room.localParticipant.trackPublications.values()) {
      const sender = pub.track && pub.track.sender;
      if (!sender || pub.kind !== 'video') continue;
      let report;
      try {
        report = await sender.getStats();
      } catch {
        continue;
      }
      report.forEach((s) => {
        if (s.type !== 'outbound-rtp') return;
        window.emit({
          event: 'outbound',
          source: pub.source,
          rid: s.rid ?? '',
          active: s.active,
          framesSent: s.framesSent ?? 0,
          frameWidth: s.frameWidth ?? 0,
        });
      });
    }
    for (const p of room.remoteParticipants.values()) {
      for (const pub of p.trackPublications.values()) {
        const track = pub.track;
        if (!track || !track.receiver) continue;
        let report;
        try {
          report = await track.receiver.getStats();
        } catch {
          continue;
        }
        report.forEach((s) => {
          if (s.type !== 'inbound-rtp') return;
          // What the sender's RTCP sender reports told this receiver (none yet: absent).
          const remote = s.remoteId ? report.get(s.remoteId) : undefined;
          window.emit({
            event: 'inbound',
            identity: p.identity,
            source: pub.source,
            kind: pub.kind,
            sinceConnectMs: Math.round(performance.now() - connectStart),
            packetsReceived: s.packetsReceived ?? 0,
            framesDecoded: s.framesDecoded ?? 0,
            frameWidth: s.frameWidth ?? 0,
            totalSamplesReceived: s.totalSamplesReceived ?? 0,
            freezeCount: s.freezeCount ?? 0,
            pliCount: s.pliCount ?? 0,
            nackCount: s.nackCount ?? 0,
            packetsLost: s.packetsLost ?? 0,
            senderReports: remote?.reportsSent ?? 0,
            reportedPacketsSent: remote?.packetsSent ?? 0,
          });
        });
      }
    }
    for (const [pub, { receiver, identity }] of kept) {
      if (pub.track) continue;
      let report;
      try {
        report = await receiver.getStats();
      } catch {
        continue;
      }
      report.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        window.emit({
          event: 'inboundKept',
          identity,
          source: pub.source,
          kind: pub.kind,
          packetsReceived: s.packetsReceived ?? 0,
          framesDecoded: s.framesDecoded ?? 0,
        });
      });
    }
  }, 250);
  room.on(LK.RoomEvent.LocalTrackPublished, (pub) =>
    window.emit({
      event: 'localTrackPublished',
      kind: pub.kind,
      source: pub.source,
      sid: pub.trackSid,
    }),
  );
  try {
    await room.connect(wsUrl, token, { peerConnectionTimeout: 15000, ...connectOptions });
    window.emit({
      event: 'connectResolved',
      state: room.state,
      sid: room.localParticipant.sid,
      // Participants known at connect: one announced between the JoinResponse and the connected
      // state joins the room silently (livekit-client emits ParticipantConnected only once connected).
      remotes: [...room.remoteParticipants.values()].map((p) => p.identity),
      // Publications known at connect (from the JoinResponse): no TrackPublished fires for them.
      remoteTracks: [...room.remoteParticipants.values()].flatMap((p) =>
        [...p.trackPublications.values()].map((pub) => ({
          identity: p.identity,
          kind: pub.kind,
          source: pub.source,
          sid: pub.trackSid,
        })),
      ),
    });
  } catch (e) {
    const reason = e && e.reason;
    window.emit({
      event: 'connectError',
      reason,
      reasonName: reason !== undefined ? LK.ConnectionErrorReason[reason] : undefined,
      message: String(e && e.message),
      // For a LeaveRequest: the server's DisconnectReason.
      context: e && e.context,
      contextName: e && typeof e.context === 'number' ? LK.DisconnectReason[e.context] : undefined,
    });
    return;
  }
  if (scenario === 'publish' || scenario === 'mic') {
    try {
      if (scenario === 'mic') await room.localParticipant.setMicrophoneEnabled(true);
      else await room.localParticipant.enableCameraAndMicrophone();
    } catch (e) {
      window.emit({ event: 'publishError', message: String(e && e.message) });
    }
  }
}

// Runs inside the page: the existing client's token flow, same-origin with its cookie.
async function legacyToken({ cookie, roomName, identity, name }) {
  document.cookie = `accessToken=${cookie}; path=/`;
  const { url } = await (await fetch('/video/api/url')).json();
  const query = new URLSearchParams({ identity, name, roomName });
  const res = await fetch(`/video/getToken?${query}`);
  const body = await res.json().catch(() => ({}));
  return { status: res.status, identity: body.identity, accessToken: body.accessToken, url };
}

// A 440 Hz tone at half scale, 48 kHz mono 16-bit, 2 s (Chromium loops the file).
function toneArgs(dir) {
  if (!process.env.SFU_BROWSER_TONE) return [];
  const rate = 48000;
  const samples = rate * 2;
  const wav = Buffer.alloc(44 + samples * 2);
  wav.write('RIFF', 0);
  wav.writeUInt32LE(36 + samples * 2, 4);
  wav.write('WAVEfmt ', 8);
  wav.writeUInt32LE(16, 16);
  wav.writeUInt16LE(1, 20);
  wav.writeUInt16LE(1, 22);
  wav.writeUInt32LE(rate, 24);
  wav.writeUInt32LE(rate * 2, 28);
  wav.writeUInt16LE(2, 32);
  wav.writeUInt16LE(16, 34);
  wav.write('data', 36);
  wav.writeUInt32LE(samples * 2, 40);
  for (let i = 0; i < samples; i++) {
    wav.writeInt16LE(Math.round(16000 * Math.sin((2 * Math.PI * 440 * i) / rate)), 44 + i * 2);
  }
  const file = path.join(dir, 'tone.wav');
  fs.writeFileSync(file, wav);
  return [`--use-file-for-fake-audio-capture=${file}`];
}

async function main() {
  const server = await serve();
  const { port } = server.address();
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfu-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    // Over a pipe, Chromium exits when this process dies (a test that fails kills it on drop).
    pipe: true,
    userDataDir,
    args: [...CHROMIUM_ARGS, ...MEDIA_ARGS, ...toneArgs(userDataDir)],
  });
  let finished = false;
  const finish = async (code) => {
    if (finished) return;
    finished = true;
    emit({ event: 'done' });
    await browser.close().catch(() => {});
    server.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
    process.exit(code);
  };
  let tab;
  let pending = '';
  process.stdin.on('data', (chunk) => {
    pending += chunk;
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (!tab || !line.trim()) continue;
      const started = Date.now();
      tab
        .evaluate((l) => window.__cmd(l), line)
        .then(() => emit({ event: 'cmdDone', cmd: line, ms: Date.now() - started }))
        .catch((e) =>
          emit({ event: 'cmdError', cmd: line, ms: Date.now() - started, message: String(e && e.message) }),
        );
    }
  });
  process.stdin.on('end', () => finish(0));
  process.stdin.resume();
  setTimeout(() => finish(0), holdSeconds * 1000).unref();
  try {
    tab = await browser.newPage();
    tab.on('console', (msg) => {
      if (process.env.SFU_BROWSER_LOG) emit({ event: 'console', text: msg.text() });
    });
    tab.on('pageerror', (err) => emit({ event: 'pageError', message: String(err) }));
    await tab.exposeFunction('emit', (obj) => emit(obj));
    await tab.goto(`${process.env.SFU_BROWSER_ORIGIN ?? `http://127.0.0.1:${port}`}/`);
    emit({ event: 'ready' });
    let [url, accessToken] = [wsUrl, token];
    if (process.env.SFU_BROWSER_LEGACY) {
      const got = await tab.evaluate(legacyToken, JSON.parse(process.env.SFU_BROWSER_LEGACY));
      emit({ event: 'legacyToken', status: got.status, identity: got.identity, url: got.url });
      if (got.status !== 200) return;
      [url, accessToken] = [got.url, got.accessToken];
    }
    await tab.evaluate(
      inPage,
      scenario,
      url,
      accessToken,
      Boolean(process.env.SFU_BROWSER_LOG),
      Boolean(process.env.SFU_BROWSER_HIDE_CANDIDATES),
      JSON.parse(process.env.SFU_BROWSER_CONNECT ?? '{}'),
      JSON.parse(process.env.SFU_BROWSER_ROOM ?? '{}'),
    );
  } catch (e) {
    emit({ event: 'fatal', message: String(e && e.stack ? e.stack : e) });
    await finish(1);
  }
}

main().catch((e) => {
  emit({ event: 'fatal', message: String(e && e.stack ? e.stack : e) });
  process.exit(1);
});
