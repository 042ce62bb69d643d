// A scripted STOMP client on the official @stomp/stompjs in Node, for the API's integration tests.
//
// Usage: node client.mjs '<json config>'   (config and events: see session.mjs)
// Prints one JSON line per event on stdout; reads JSON commands from stdin, one per line.

import { Client, Versions } from '@stomp/stompjs';
import WebSocket from 'ws';
import readline from 'node:readline';
import { startSession } from './session.mjs';

const config = JSON.parse(process.argv[2]);
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');
const makeSocket = (url, protocols) => new WebSocket(url, protocols);

const session = startSession({ Client, Versions }, makeSocket, config, emit, () => process.exit(0));

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => session.command(JSON.parse(line)));
lines.on('close', () => session.stop().then(() => process.exit(0)));
