// The same scripted STOMP session as client.mjs, run by @stomp/stompjs inside headless Chromium
// (Debian's chromium-headless-shell via puppeteer-core; npm never downloads a browser), so the
// browser enforces the WebSocket handshake, subprotocol included.
//
// Usage: node browser.mjs '<json config>'   (config and events: see session.mjs)
// Without `protocols` the page lets stompjs offer v10.stomp, v11.stomp, v12.stomp, as the
// existing web client does. The page is served from a local HTTP server of its own.
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';
import { CHROMIUM_ARGS, chromiumPath } from '../chromium.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const config = JSON.parse(process.argv[2]);
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');

const files = {
  '/stomp.umd.min.js': [fs.readFileSync(path.join(here, 'node_modules/@stomp/stompjs/bundles/stomp.umd.min.js')), 'text/javascript'],
  '/session.mjs': [fs.readFileSync(path.join(here, 'session.mjs')), 'text/javascript'],
  '/': [
    `<!doctype html><meta charset="utf-8"><title>stomp test</title>
<script src="/stomp.umd.min.js"></script>
<script type="module">
import { startSession } from '/session.mjs';
window.startSession = startSession;
window.sessionLoaded = true;
</script>`,
    'text/html',
  ],
};

function serve() {
  const server = http.createServer((req, res) => {
    const [body, type] = files[req.url] ?? [null, null];
    res.writeHead(body ? 200 : 404, { 'content-type': type ?? 'text/plain' });
    res.end(body ?? 'not found');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

let browser;
let server;
let finished = false;
async function finish(code) {
  if (finished) return;
  finished = true;
  await browser?.close().catch(() => {});
  server?.close();
  process.exit(code);
}

async function main() {
  server = await serve();
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ppodok-stomp-chromium-'));
  process.on('exit', () => fs.rmSync(profile, { recursive: true, force: true }));
  browser = await puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    // Over a pipe, Chromium exits when this process dies (the tests kill it on drop).
    pipe: true,
    userDataDir: profile,
    args: CHROMIUM_ARGS,
  });
  const page = await browser.newPage();
  page.on('pageerror', (e) => process.stderr.write(`page error: ${e.message}\n`));
  if (process.env.STOMP_BROWSER_LOG) page.on('console', (m) => process.stderr.write(`page: ${m.text()}\n`));
  await page.exposeFunction('emitEvent', emit);
  await page.exposeFunction('sessionOver', () => finish(0));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.waitForFunction(() => window.sessionLoaded === true);
  await page.evaluate((config) => {
    const makeSocket = config.protocols === undefined ? null : (url, protocols) => new WebSocket(url, protocols);
    window.session = window.startSession(window.StompJs, makeSocket, config, window.emitEvent, window.sessionOver);
  }, config);

  return page;
}

// Commands wait for the page; stdin closing (the test dropped this client, perhaps before the
// page was up) ends the run promptly, whatever the page does.
const started = main();
const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const command = JSON.parse(line);
  started.then((page) => page.evaluate((command) => window.session.command(command), command)).catch(() => {});
});
lines.on('close', () => {
  setTimeout(() => finish(0), 5000).unref();
  started.then((page) => page.evaluate(() => window.session.stop())).catch(() => {}).finally(() => finish(0));
});
started.catch((e) => {
  emit({ type: 'fatal', message: String(e?.stack ?? e) });
  finish(1);
});
