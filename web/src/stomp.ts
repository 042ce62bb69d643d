// The live calendar: STOMP over WebSocket at /bbodok-websocket (same origin). CONNECT carries a
// fresh access token; after every (re)connect the caller resyncs the calendar over REST, since
// broadcasts sent while disconnected are lost.
import { Client, type IMessage } from '@stomp/stompjs';
import { freshAccessToken } from './api';
import type { Room } from './api';

export interface CalendarFeed {
  close(): void;
}

export function openCalendarFeed(
  groupId: number,
  handlers: {
    onRoom(room: Room): void;
    onConnected(): void;
    onStatus(connected: boolean): void;
    onError(message: string): void;
  },
): CalendarFeed {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const client = new Client({
    brokerURL: `${scheme}://${location.host}/bbodok-websocket`,
    reconnectDelay: 2000,
    heartbeatIncoming: 10000,
    heartbeatOutgoing: 10000,
    debug: (line) => {
      if (localStorage.getItem('ppodok.debug')) console.debug(`[stomp] ${line}`);
    },
    beforeConnect: async () => {
      const token = await freshAccessToken().catch(() => null);
      client.connectHeaders = token ? { Authorization: `Bearer ${token}` } : {};
    },
  });
  client.onConnect = () => {
    client.subscribe(`/topic/${groupId}`, (msg: IMessage) => {
      try {
        handlers.onRoom(JSON.parse(msg.body));
      } catch {
        /* a malformed broadcast is ignored; the next resync repairs the view */
      }
    });
    client.subscribe('/user/queue/errors', (msg: IMessage) => {
      try {
        handlers.onError(JSON.parse(msg.body).message);
      } catch {
        handlers.onError('알 수 없는 오류가 발생했어요.');
      }
    });
    handlers.onStatus(true);
    handlers.onConnected();
  };
  client.onWebSocketClose = () => handlers.onStatus(false);
  client.onStompError = () => handlers.onStatus(false);
  client.activate();
  return {
    close: () => void client.deactivate(),
  };
}
