// Acceptance tests of ppodok's web client (web/), in Debian's headless Chromium, against the real
// binaries: target/debug/ppodok-api serving web/dist at / (SQLite, a one-minute slot grid so a
// room opens within the test) and target/debug/ppodok-sfu (its webhooks credit attendance on the
// API). Two members use two browser contexts. Run by `make test-web` (part of `make test`), which
// builds both binaries and the client first.
//
// Screenshots of every screen at desktop and phone width go to tests/web/artifacts/ (gitignored);
// axe-core checks each of those screens for serious or critical violations.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import puppeteer from 'puppeteer-core';
import { CHROMIUM_ARGS, MEDIA_ARGS, chromiumPath } from '../chromium.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const targetDir = process.env.CARGO_TARGET_DIR ?? path.join(root, 'target');
const artifacts = path.join(here, 'artifacts');
const axeSource = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const JWT_SECRET = 'web-e2e-jwt-secret-web-e2e-jwt-secret!!';
const LIVEKIT_SECRET = 'web-e2e-livekit-secret-web-e2e-livekit-0123';
const VIEWPORTS = { desktop: { width: 1280, height: 800 }, phone: { width: 390, height: 844 } };
const T = 30_000;

const children = [];
let tmp;
let base;
let browser;
const ctx = {}; // a, b: { context, page, name }
const axeFindings = []; // { screen, viewport, violations }
const screens = new Set();

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function startBinary(name, env) {
  const bin = path.join(targetDir, 'debug', name);
  assert.ok(fs.existsSync(bin), `${bin} is built (make test-web builds it)`);
  const child = spawn(bin, [], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = fs.createWriteStream(path.join(artifacts, `${name}.log`));
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  children.push(child);
  return child;
}

async function until(what, check, timeout = T, every = 200) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

async function apiCall(method, pathname, token, body) {
  const res = await fetch(base + pathname, {
    method,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json().catch(() => null);
  return { status: res.status, body: json };
}

/// The contract's local time string in the service zone (the tests run the API in UTC).
const localOf = (epoch) => new Date(epoch).toISOString().slice(0, 19);

async function newMember(name) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport(VIEWPORTS.desktop);
  // Headless Chromium has no screen to capture: the client's getDisplayMedia gets a moving canvas.
  await page.evaluateOnNewDocument(() => {
    navigator.mediaDevices.getDisplayMedia = async () => {
      const canvas = document.createElement('canvas');
      canvas.width = 1280;
      canvas.height = 720;
      const g = canvas.getContext('2d');
      let n = 0;
      setInterval(() => {
        n += 1;
        g.fillStyle = `hsl(${(n * 7) % 360} 70% 50%)`;
        g.fillRect(0, 0, 1280, 720);
        g.fillStyle = '#fff';
        g.font = '96px sans-serif';
        g.fillText(`화면 공유 ${n}`, 100, 360);
      }, 50);
      return canvas.captureStream(15);
    };
  });
  page.on('pageerror', (err) => console.error(`[${name}] page error:`, err.message));
  if (process.env.WEB_E2E_LOG) {
    await page.evaluateOnNewDocument(() => localStorage.setItem('ppodok.debug', '1'));
    page.on('console', (msg) => console.error(`[${name}] ${msg.text()}`));
  }
  return { context, page, name, refreshes: 0 };
}

/// Screenshot at both widths plus an axe-core check of the screen, back at desktop width after.
async function capture(member, screen, ready) {
  const { page } = member;
  for (const [viewport, size] of Object.entries(VIEWPORTS)) {
    await page.setViewport(size);
    if (ready) await ready();
    await page.screenshot({ path: path.join(artifacts, `${screen}-${viewport}.png`), fullPage: true });
    await page.evaluate(axeSource);
    const violations = await page.evaluate(async () => {
      const r = await window.axe.run(document, { resultTypes: ['violations'] });
      return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
    });
    axeFindings.push({ screen, viewport, violations });
  }
  await page.setViewport(VIEWPORTS.desktop);
  screens.add(screen);
}

const text = (page, selector) => page.$eval(selector, (el) => el.textContent.trim());

async function clickButton(page, label, within = 'body') {
  const handle = await until(`button "${label}"`, async () => {
    const buttons = await page.$$(`${within} button`);
    for (const b of buttons) {
      const [t, disabled] = await b.evaluate((el) => [el.textContent.trim(), el.disabled]);
      if (t === label && !disabled) return b;
    }
    return null;
  });
  await handle.click();
}

async function login(member) {
  const { page, name } = member;
  await page.goto(`${base}/`);
  await page.waitForSelector('#dev-name', { timeout: T });
  await page.type('#dev-name', name);
  await page.click('form button[type=submit]');
  await page.waitForSelector('#my-groups', { timeout: T });
  await until('my name in the header', async () => (await text(page, '[data-testid=me-name]')) === name);
}

const token = (page) => page.evaluate(() => localStorage.getItem('ppodok.accessToken'));
const slotSelector = (start) => `li[data-slot="${start}"]`;
const slotCount = (page, start) => page.$eval(slotSelector(start), (el) => Number(el.dataset.count)).catch(() => -1);

async function openCalendar(member, groupId) {
  const { page } = member;
  await page.goto(`${base}/groups/${groupId}`);
  await until('the live calendar connected', async () => (await text(page, '[data-testid=live]')) === '실시간 연결됨');
}

before(async () => {
  fs.rmSync(artifacts, { recursive: true, force: true });
  fs.mkdirSync(artifacts, { recursive: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ppodok-web-e2e-'));
  const [apiPort, sfuPort] = [await freePort(), await freePort()];
  base = `http://127.0.0.1:${apiPort}`;
  startBinary('ppodok-sfu', {
    PPODOK_SFU__HOST: '127.0.0.1',
    PPODOK_SFU__PORT: String(sfuPort),
    PPODOK_SFU__RTC__UDP_PORT_MIN: '0',
    PPODOK_SFU__RTC__UDP_PORT_MAX: '0',
    PPODOK_SFU__LIVEKIT__API_SECRET: LIVEKIT_SECRET,
    PPODOK_SFU__WEBHOOK__URLS: `${base}/api/v1/internal/sfu/webhook`,
    PPODOK_SFU__TELEMETRY__FILTER: 'warn',
  });
  startBinary('ppodok-api', {
    PPODOK__SERVER__PORT: String(apiPort),
    PPODOK__SERVER__WORKERS: '2',
    PPODOK__DATABASE__URL: `sqlite://${path.join(tmp, 'api.sqlite')}?mode=rwc`,
    PPODOK__REDIS__URL: '',
    PPODOK__AUTH__JWT_SECRET: JWT_SECRET,
    PPODOK__AUTH__DEV_LOGIN: 'true',
    PPODOK__LIVEKIT__API_SECRET: LIVEKIT_SECRET,
    PPODOK__LIVEKIT__SFU_URL: `ws://127.0.0.1:${sfuPort}`,
    // A room every minute, studied for the whole minute: the room opens within the test.
    PPODOK__ROOMS__CYCLE_MINUTES: '1',
    PPODOK__ROOMS__STUDY_MINUTES: '1',
    PPODOK__TIME__ZONE: 'UTC',
    PPODOK__WEB__DIR: path.join(root, 'web', 'dist'),
    PPODOK__TELEMETRY__FILTER: 'warn',
  });
  await until('the API is up', async () => (await fetch(`${base}/health`)).ok);
  await until('the SFU is up', async () => (await fetch(`http://127.0.0.1:${sfuPort}/health`)).ok);
  const userDataDir = path.join(tmp, 'chromium');
  browser = await puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    userDataDir,
    args: [...CHROMIUM_ARGS, ...MEDIA_ARGS, '--lang=ko-KR'],
  });
  const suffix = crypto.randomBytes(2).toString('hex');
  ctx.a = await newMember(`민지${suffix}`);
  ctx.b = await newMember(`서준${suffix}`);
});

after(async () => {
  await browser?.close().catch(() => {});
  for (const c of children) c.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null)));
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

let groupId;
let groupName;

test('the client is served same-origin at / with SPA fallback and cache headers', async () => {
  const index = await fetch(`${base}/`);
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-type'), /text\/html/);
  assert.equal(index.headers.get('cache-control'), 'no-cache');
  const html = await index.text();
  const asset = html.match(/\/assets\/[^"]+\.js/)[0];
  const js = await fetch(base + asset);
  assert.equal(js.status, 200);
  assert.match(js.headers.get('cache-control'), /immutable/);
  const deep = await fetch(`${base}/groups/12345`);
  assert.equal(deep.status, 200);
  assert.equal(await deep.text(), html);
  const etag = index.headers.get('etag');
  assert.equal((await fetch(`${base}/`, { headers: { 'If-None-Match': etag } })).status, 304);
  // API paths keep the contract's 404 envelope; a missing file is not the page.
  const api = await fetch(`${base}/api/v1/nope`);
  assert.equal(api.status, 404);
  assert.equal((await api.json()).code, 'fail');
  assert.equal((await fetch(`${base}/assets/missing.js`)).status, 404);
});

test('acceptance 1: two members, a group, a live calendar (book, join, cancel, tombstone)', async () => {
  const { a, b } = ctx;
  await a.page.goto(`${base}/`);
  await a.page.waitForSelector('#dev-name', { timeout: T });
  await capture(a, 'login');
  await login(a);
  await login(b);
  await capture(a, 'groups');

  // A creates a public group; B finds it by search and joins.
  groupName = `아침 스터디 ${crypto.randomBytes(2).toString('hex')}`;
  await a.page.type('#group-name', groupName);
  await clickButton(a.page, '만들기');
  groupId = await until('the new group card', () =>
    a.page.$$eval('li.group', (cards, n) => {
      const card = cards.find((c) => c.querySelector('h3 a')?.textContent === n);
      return card ? Number(card.dataset.groupId) : null;
    }, groupName),
  );
  // Colours are per member and per group.
  await a.page.select(`#color-${groupId}`, 'secondary');
  await until('the colour applied', () => a.page.$eval(`li.group[data-group-id="${groupId}"]`, (el) => el.className.includes('color-secondary')));

  await b.page.type('#group-search', groupName);
  await b.page.waitForSelector(`.search-results li[data-group-id="${groupId}"] button`, { timeout: T });
  await b.page.click(`.search-results li[data-group-id="${groupId}"] button`);
  await b.page.waitForSelector(`li.group[data-group-id="${groupId}"]`, { timeout: T });

  await openCalendar(a, groupId);
  await openCalendar(b, groupId);
  await capture(a, 'calendar');
  await b.page.evaluate(() => {
    window.__notReloaded = true;
  });

  // A books a slot a few minutes ahead; B sees it appear without reloading.
  const start = await a.page.$$eval('li[data-slot]', (items) => items[3].dataset.slot);
  await a.page.click(`${slotSelector(start)} button`);
  await until('B sees A\'s booking live', async () => (await slotCount(b.page, start)) === 1);
  assert.equal(await b.page.evaluate(() => window.__notReloaded), true, 'B did not reload');

  // B joins it: both see two people.
  await b.page.click(`${slotSelector(start)} button`);
  await until('A sees two people', async () => (await slotCount(a.page, start)) === 2);
  await until('B sees two people', async () => (await slotCount(b.page, start)) === 2);
  const avatars = await a.page.$$eval(`${slotSelector(start)} .avatar`, (els) => els.map((e) => e.getAttribute('aria-label')));
  assert.deepEqual(avatars.sort(), [a.name, b.name].sort());

  // Both cancel: the last cancel removes the room, and the tombstone clears it everywhere.
  await a.page.click(`${slotSelector(start)} button`);
  await until('B sees one person', async () => (await slotCount(b.page, start)) === 1);
  await b.page.click(`${slotSelector(start)} button`);
  await until('A sees the room gone', async () => (await slotCount(a.page, start)) === 0);
  await until('B sees the room gone', async () => (await slotCount(b.page, start)) === 0);
  assert.equal(await b.page.evaluate(() => window.__notReloaded), true, 'B did not reload');
});

/// Inbound stats of a remote participant's track, read from the page's LiveKit room.
function inbound(page, identitySource) {
  return page.evaluate(async ([source]) => {
    const room = window.__ppodok?.room;
    if (!room) return null;
    const out = [];
    for (const p of room.remoteParticipants.values()) {
      const pub = p.getTrackPublication(source);
      const receiver = pub?.track?.receiver;
      if (!receiver) continue;
      const stats = await receiver.getStats();
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp') {
          out.push({ identity: p.identity, framesDecoded: s.framesDecoded ?? 0, totalAudioEnergy: s.totalAudioEnergy ?? 0, audioLevel: s.audioLevel ?? 0 });
        }
      });
    }
    return out;
  }, [identitySource]);
}

test('acceptance 2: the room opens; pre-join, video, audio, chat, screen share focus, phase timer, leave, credited time', async () => {
  const { a, b } = ctx;
  assert.ok(groupId, 'acceptance 1 made the group');
  // The next slot that is at least 25 s away, so both can book and enter before it starts.
  const start = await a.page.$$eval('li[data-slot]', (items, minStart) => items.map((i) => i.dataset.slot).find((s) => s >= minStart), localOf(Date.now() + 25_000));
  assert.ok(start, 'an upcoming slot');
  await a.page.click(`${slotSelector(start)} button`);
  await until('B sees the booking', async () => (await slotCount(b.page, start)) === 1);
  await b.page.click(`${slotSelector(start)} button`);
  await until('A sees two people', async () => (await slotCount(a.page, start)) === 2);

  // Both enter from "my next room" and pass the pre-join check.
  for (const m of [a, b]) {
    await until('the room is mine next', () => m.page.$eval('.next-room', (el) => el.dataset.roomId && !el.querySelector('button').disabled));
    await clickButton(m.page, '공부방 들어가기', '.next-room');
    await m.page.waitForSelector('.prejoin video', { timeout: T });
  }
  await until('the pre-join preview plays', () => a.page.$eval('.prejoin video', (v) => v.readyState >= 2 && v.videoWidth > 0));
  await capture(a, 'study-prejoin', () => until('preview', () => a.page.$eval('.prejoin video', (v) => v.videoWidth > 0)));
  for (const m of [a, b]) await clickButton(m.page, '입장하기');
  for (const m of [a, b]) {
    await until(`${m.name} sees two people`, () => m.page.$eval('.stage', (el) => el.dataset.participants === '2'));
  }

  // See and hear each other: decoded frames and audio energy from the other member.
  for (const [m, other] of [[a, b], [b, a]]) {
    await until(`${m.name} decodes ${other.name}'s camera`, async () => {
      const s = await inbound(m.page, 'camera');
      return s?.some((x) => x.framesDecoded > 10);
    });
    await until(`${m.name} hears ${other.name}`, async () => {
      const s = await inbound(m.page, 'microphone');
      return s?.some((x) => x.totalAudioEnergy > 0);
    });
    await until(`${m.name} shows both cameras`, () => m.page.$$eval('.grid video[data-source="camera"]', (v) => v.length === 2));
  }

  // Chat both ways on data packets.
  await a.page.type('#chat-input', '안녕하세요, 오늘도 화이팅!');
  await clickButton(a.page, '보내기');
  await until('B receives A\'s chat', () => b.page.$$eval('[data-testid=chat-line] .text', (els) => els.some((e) => e.textContent === '안녕하세요, 오늘도 화이팅!')));
  await b.page.type('#chat-input', '네, 같이 해요');
  await clickButton(b.page, '보내기');
  await until('A receives B\'s chat', () => a.page.$$eval('[data-testid=chat-line] .text', (els) => els.some((e) => e.textContent === '네, 같이 해요')));

  // A shares a screen: B's layout focuses it and decodes it.
  await clickButton(a.page, '화면 공유');
  await until('B focuses the shared screen', () => b.page.$eval('.stage', (el) => el.dataset.layout === 'focus' && !!el.querySelector('.tile.focus[data-source="screen_share"] video')));
  await until('B decodes the shared screen', async () => (await inbound(b.page, 'screen_share'))?.some((x) => x.framesDecoded > 5));

  // The phase timer shows the server's phase: "study" once the slot starts.
  for (const m of [a, b]) {
    await until(`${m.name}'s timer shows the study phase`, () => m.page.$eval('[data-testid=phase]', (el) => el.dataset.phase === 'study'), 90_000, 250);
  }
  const { body: mine } = await apiCall('GET', `/api/v1/rooms/all?from=${start.slice(0, 10)}T00:00:00&to=${start.slice(0, 10)}T23:59:00`, await token(a.page));
  const serverRoom = mine.data.find((r) => r.startTime === start);
  assert.equal(serverRoom.phase, 'study', 'the server says study too');
  await capture(b, 'study-room');
  await capture(a, 'study-room-sharing');

  // Study together for a while (the slot's study minute is running), then both leave.
  const studyUntil = Date.parse(`${start}Z`) + 15_000;
  await until('15 s of the study phase', () => Date.now() >= studyUntil, 60_000, 250);
  for (const m of [a, b]) {
    await clickButton(m.page, '나가기', '.controls');
    await m.page.waitForSelector('[data-testid=live]', { timeout: T });
  }

  // My page and rankings show the credited time for both.
  for (const m of [a, b]) {
    await m.page.goto(`${base}/me`);
    await until(`${m.name}'s my page shows today's time`, async () => {
      await m.page.reload();
      await m.page.waitForSelector('[data-testid=today]', { timeout: T });
      return (await text(m.page, '[data-testid=today]')) !== '0분';
    }, T, 1000);
  }
  await capture(a, 'my-page');
  await a.page.goto(`${base}/rankings`);
  await a.page.waitForSelector('#ranking-group', { timeout: T });
  await a.page.select('#ranking-group', String(groupId));
  await clickButton(a.page, '오늘');
  const entries = await until('both members ranked with time', async () => {
    const list = await a.page.$$eval('.ranking li[data-member-id]', (els) => els.map((e) => ({ name: e.querySelector('.name').textContent, duration: e.dataset.duration })));
    return list.length === 2 && list.every((e) => e.duration !== 'PT0S') ? list : null;
  });
  assert.deepEqual(entries.map((e) => e.name).sort(), [a.name, b.name].sort());
  const myRank = await text(a.page, '[data-testid=my-rank]');
  assert.match(myRank, /[12]위/);
  await capture(a, 'rankings');
});

/// Resolves once no API request of the page has been in flight for 500 ms (other traffic, such as
/// a closing media connection, does not count).
async function apiSettled(page) {
  const inflight = new Set();
  let quietSince = Date.now();
  const isApi = (req) => new URL(req.url()).pathname.startsWith('/api/');
  const start = (req) => isApi(req) && inflight.add(req);
  const end = (req) => {
    if (inflight.delete(req) && inflight.size === 0) quietSince = Date.now();
  };
  page.on('request', start);
  page.on('requestfinished', end);
  page.on('requestfailed', end);
  try {
    await until('the API requests to settle', () => inflight.size === 0 && Date.now() - quietSince >= 500, T, 100);
  } finally {
    page.off('request', start);
    page.off('requestfinished', end);
    page.off('requestfailed', end);
  }
}

/// The page's access token, replaced by one with the same claims that expired half an hour ago.
async function expireAccessToken(page) {
  const current = await token(page);
  const [, payload] = current.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  const nowSecs = Math.floor(Date.now() / 1000);
  claims.iat = nowSecs - 3600;
  claims.exp = nowSecs - 1800;
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  const sig = crypto.createHmac('sha256', JWT_SECRET).update(head).digest('base64url');
  const expired = `${head}.${sig}`;
  await page.evaluate((t) => localStorage.setItem('ppodok.accessToken', t), expired);
  return expired;
}

test('acceptance 3: an expired access token is refreshed once; a revoked session lands on login', async () => {
  const { a } = ctx;
  let refreshes = 0;
  const count = (req) => {
    if (req.url().endsWith('/api/v1/members/tokens')) refreshes += 1;
  };
  a.page.on('request', count);
  try {
    const expired = await expireAccessToken(a.page);
    assert.equal((await apiCall('GET', '/api/v1/members', expired)).status, 401, 'the forged token is really expired');
    await a.page.goto(`${base}/me`);
    await a.page.waitForSelector('[data-testid=today]', { timeout: T });
    await apiSettled(a.page);
    assert.equal(refreshes, 1, 'exactly one refresh');
    const fresh = await token(a.page);
    assert.notEqual(fresh, expired);
    assert.equal((await apiCall('GET', '/api/v1/members', fresh)).status, 200, 'the stored token works');
    assert.equal(await a.page.$('.alert-error'), null, 'no error shown');

    // Revoke the session (as a logout elsewhere would): the next request lands on login.
    refreshes = 0;
    assert.equal((await apiCall('POST', '/api/v1/members/logout', fresh)).status, 200);
    await a.page.goto(`${base}/rankings`);
    await a.page.waitForSelector('#dev-name', { timeout: T });
    await until('the login message', async () => (await a.page.$eval('.alert-info', (el) => el.textContent)).includes('다시 로그인'));
    await apiSettled(a.page);
    assert.equal(refreshes, 1, 'one refresh attempt, no loop');
    assert.equal(await a.page.evaluate(() => localStorage.getItem('ppodok.refreshToken')), null);
    await capture(a, 'login-session-ended');
  } finally {
    a.page.off('request', count);
  }
});

test('acceptance 4: every screen at desktop and phone width, no serious accessibility violations', async () => {
  const { a, b } = ctx;
  await login(a);
  await a.page.goto(`${base}/timer`);
  await a.page.waitForSelector('#timer-title', { timeout: T });
  await clickButton(a.page, '시작');
  await until('the focus timer runs', async () => (await text(a.page, '#timer-title')) === '집중하는 중');
  await capture(a, 'focus-timer');
  await clickButton(a.page, '끝내기');
  await until('the timer stopped', async () => (await text(a.page, '#timer-title')) === '타이머 준비');
  await b.page.goto(`${base}/invite/does-not-exist`);
  await b.page.waitForSelector('.alert-error', { timeout: T });
  await capture(b, 'invite-invalid');

  fs.writeFileSync(path.join(artifacts, 'axe.json'), JSON.stringify(axeFindings, null, 2));
  const serious = axeFindings.flatMap((f) => f.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => ({ screen: `${f.screen}@${f.viewport}`, ...v })));
  assert.deepEqual(serious, [], 'no serious or critical axe violations');
  for (const s of ['login', 'groups', 'calendar', 'study-prejoin', 'study-room', 'my-page', 'rankings', 'focus-timer']) {
    assert.ok(screens.has(s), `screen ${s} was captured`);
    for (const v of Object.keys(VIEWPORTS)) assert.ok(fs.existsSync(path.join(artifacts, `${s}-${v}.png`)), `${s}-${v}.png`);
  }
});
