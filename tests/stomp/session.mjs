// One scripted STOMP session on @stomp/stompjs, shared by the Node client (client.mjs) and the
// page the browser client (browser.mjs) loads, so both run exactly the same script.
//
// config: { url, token?, connectHeaders?, subscribe: [destination…], protocols? }
//   protocols: absent → the client's own default (the browser page lets stompjs offer
//   v10.stomp, v11.stomp, v12.stomp, as the existing web client does; Node's `ws` offers none),
//   or a list of Sec-WebSocket-Protocol values to offer ([] = none).
// emit(event) reports: {"type":"connected"} {"type":"ready"} {"type":"message",destination,body}
//   {"type":"error",message,body} {"type":"closed",protocol?} {"type":"receipt",id}
// Returns { command(cmd), stop() }: cmd is {"send":{destination,body,receipt?}} |
//   {"unsubscribe":"<destination>"} | {"disconnect":true}.
export function startSession({ Client, Versions }, makeSocket, config, emit, onClosed) {
  const connectHeaders = { ...(config.connectHeaders ?? {}) };
  if (config.token) connectHeaders.Authorization = `Bearer ${config.token}`;

  const subscriptions = new Map();
  const options = {
    connectHeaders,
    reconnectDelay: 0,
    heartbeatIncoming: 10000,
    heartbeatOutgoing: 10000,
    onConnect: () => {
      emit({ type: 'connected', protocol: client.webSocket?.protocol ?? null });
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
      client.deactivate().finally(onClosed);
    },
  };
  if (config.protocols === undefined && makeSocket === null) {
    // stompjs opens the socket itself and offers its versions as subprotocols.
    options.brokerURL = config.url;
    options.stompVersions = Versions.default;
  } else {
    options.webSocketFactory = () => makeSocket(config.url, config.protocols ?? []);
  }
  const client = new Client(options);
  client.activate();

  return {
    command(command) {
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
        client.deactivate().then(onClosed);
      }
    },
    stop() {
      return client.deactivate();
    },
  };
}
