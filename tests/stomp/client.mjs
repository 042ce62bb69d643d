// A scripted STOMP client on the official @stomp/stompjs, for the API's integration tests.
//
// Usage: node client.mjs '<json config>'
//   config: { url, token?, connectHeaders?, subscribe: [destination…] }
// Prints one JSON line per event on stdout:
//   {"type":"connected"} {"type":"ready"} {"type":"message",destination,body}
//   {"type":"error",message,body} {"type":"closed"} {"type":"receipt",id}
// Reads JSON commands from stdin, one per line:
//   {"send":{"destination","body","receipt"?}} | {"unsubscribe":"<destination>"} | {"disconnect":true}

import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import readline from 'node:readline';

const config = JSON.parse(process.argv[2]);
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');

const connectHeaders = { ...(config.connectHeaders ?? {}) };
if (config.token) connectHeaders.Authorization = `Bearer ${config.token}`;

const subscriptions = new Map();
const client = new Client({
  webSocketFactory: () => new WebSocket(config.url),
  connectHeaders,
  reconnectDelay: 0,
  heartbeatIncoming: 10000,
  heartbeatOutgoing: 10000,
  onConnect: () => {
    emit({ type: 'connected' });
    const destinations = config.subscribe ?? [];
    if (destinations.length === 0) {
      emit({ type: 'ready' });
      return;
    }
    let pending = destinations.length;
    destinations.forEach((destination, i) => {
      const receipt = `sub-${i}`;
      client.watchForReceipt(receipt, () => {
        pending -= 1;
        if (pending === 0) emit({ type: 'ready' });
      });
      const sub = client.subscribe(
        destination,
        (message) => emit({ type: 'message', destination: message.headers.destination, body: message.body }),
        { receipt },
      );
      subscriptions.set(destination, sub);
    });
  },
  onStompError: (frame) => emit({ type: 'error', message: frame.headers.message, body: frame.body }),
  onWebSocketClose: () => {
    emit({ type: 'closed' });
    client.deactivate().finally(() => process.exit(0));
  },
});

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const command = JSON.parse(line);
  if (command.send) {
    const headers = {};
    if (command.send.receipt) {
      headers.receipt = command.send.receipt;
      client.watchForReceipt(command.send.receipt, () => emit({ type: 'receipt', id: command.send.receipt }));
    }
    client.publish({ destination: command.send.destination, body: command.send.body, headers });
  } else if (command.unsubscribe) {
    subscriptions.get(command.unsubscribe)?.unsubscribe();
  } else if (command.disconnect) {
    client.deactivate().then(() => process.exit(0));
  }
});
lines.on('close', () => client.deactivate().then(() => process.exit(0)));

client.activate();
