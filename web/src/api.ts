// REST client for the v1 contract: `{data, message, code}` envelopes, bearer tokens kept in
// localStorage, and one transparent refresh on 401 (never a loop: a request is retried once, and
// concurrent 401s share one refresh).

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
  ) {
    super(message);
  }
}

const ACCESS = 'ppodok.accessToken';
const REFRESH = 'ppodok.refreshToken';
/// Why the last session ended, shown once on the login screen.
const ENDED = 'ppodok.sessionEnded';

export const MSG_SESSION_ENDED = '로그인이 만료되었어요. 다시 로그인해 주세요.';
const MSG_NETWORK = '서버에 연결할 수 없어요. 네트워크를 확인해 주세요.';
const MSG_UNKNOWN = '알 수 없는 오류가 발생했어요.';

type Listener = () => void;
const listeners = new Set<Listener>();

export const auth = {
  access: () => localStorage.getItem(ACCESS),
  refresh: () => localStorage.getItem(REFRESH),
  signedIn: () => Boolean(localStorage.getItem(REFRESH)),
  store(pair: { accessToken: string; refreshToken: string }) {
    localStorage.setItem(ACCESS, pair.accessToken);
    localStorage.setItem(REFRESH, pair.refreshToken);
    localStorage.removeItem(ENDED);
    listeners.forEach((l) => l());
  },
  /// Forget the session; `reason` is shown on the login screen.
  clear(reason?: string) {
    localStorage.removeItem(ACCESS);
    localStorage.removeItem(REFRESH);
    if (reason) localStorage.setItem(ENDED, reason);
    listeners.forEach((l) => l());
  },
  takeEndedReason(): string | null {
    const r = localStorage.getItem(ENDED);
    localStorage.removeItem(ENDED);
    return r;
  },
  subscribe(l: Listener) {
    listeners.add(l);
    return () => listeners.delete(l);
  },
};

/// Seconds until the access token expires (from its own `exp`; negative when expired).
export function accessSecondsLeft(): number {
  const token = auth.access();
  if (!token) return -1;
  try {
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return payload.exp - Date.now() / 1000;
  } catch {
    return -1;
  }
}

let refreshing: Promise<boolean> | null = null;

/// Exchanges the refresh token for a new pair (rotation). False when the session is over: the
/// tokens are cleared and the app lands on the login screen with a message.
export function refreshTokens(): Promise<boolean> {
  if (!refreshing) {
    refreshing = (async () => {
      const token = auth.refresh();
      if (!token) return false;
      let res: Response;
      try {
        res = await fetch('/api/v1/members/tokens', {
          method: 'POST',
          headers: { 'X-BBODOK-REFRESH-TOKEN': token },
        });
      } catch {
        throw new ApiError(0, 'network', MSG_NETWORK);
      }
      if (res.ok) {
        const body = await res.json();
        auth.store(body.data);
        return true;
      }
      auth.clear(MSG_SESSION_ENDED);
      return false;
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/// A fresh-enough access token for a long-lived connection (STOMP CONNECT checks it once).
export async function freshAccessToken(): Promise<string | null> {
  if (accessSecondsLeft() < 15) await refreshTokens();
  return auth.access();
}

async function send(method: string, path: string, body: unknown, token: string | null): Promise<Response> {
  const headers: Record<string, string> = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  try {
    return await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'network', MSG_NETWORK);
  }
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const sent = auth.access();
  let res = await send(method, path, body, sent);
  if (res.status === 401 && auth.refresh()) {
    // A request that left before another one's refresh finished just retries with the new token.
    if (auth.access() === sent && !(await refreshTokens())) throw new ApiError(401, 'fail', MSG_SESSION_ENDED);
    if (!auth.refresh()) throw new ApiError(401, 'fail', MSG_SESSION_ENDED);
    res = await send(method, path, body, auth.access());
    if (res.status === 401) {
      auth.clear(MSG_SESSION_ENDED);
      throw new ApiError(401, 'fail', MSG_SESSION_ENDED);
    }
  }
  let parsed: { data?: T; code?: string; message?: string } | null = null;
  try {
    parsed = await res.json();
  } catch {
    parsed = null;
  }
  if (!res.ok) {
    if (res.status === 401) auth.clear(MSG_SESSION_ENDED);
    const message =
      res.status === 429
        ? '요청이 너무 많아요. 잠시 후 다시 시도해 주세요.'
        : parsed?.message || MSG_UNKNOWN;
    throw new ApiError(res.status, parsed?.code ?? 'fail', message);
  }
  return (parsed?.data ?? null) as T;
}

export const get = <T>(path: string) => api<T>('GET', path);
export const post = <T>(path: string, body?: unknown) => api<T>('POST', path, body);
export const patch = <T>(path: string, body?: unknown) => api<T>('PATCH', path, body);
export const del = <T>(path: string, body?: unknown) => api<T>('DELETE', path, body);

export function errorMessage(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error && e.message) return e.message;
  return MSG_UNKNOWN;
}

// Shapes of the contract (camelCase, times as service-zone local strings).
export interface Member {
  memberId: number;
  name: string;
  profile: string | null;
}
export interface Group {
  groupId: number;
  groupName: string;
  secret: boolean;
  color: string | null;
  path: string | null;
}
export interface Room {
  roomId: number | null;
  groupId: number | null;
  startTime: string;
  endTime: string | null;
  profiles: (string | null)[] | null;
  memberIds: number[] | null;
  serverTime: string;
  phase: 'before' | 'study' | 'break' | 'ended' | null;
  nextPhaseAt: string | null;
}
export interface ServerTime {
  serverTime: string;
  epochMillis: number;
  zone: string;
  cycleMinutes: number;
  studyMinutes: number;
  videoOpensMinutesBefore: number;
}
export interface Rank {
  memberId: number;
  profile: string | null;
  nickname: string;
  duration: string;
}
export interface Todo {
  todoId: number;
  groupId: number;
  content: string;
  done: boolean;
}
