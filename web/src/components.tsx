import { useCallback, useEffect, useRef, useState } from 'react';
import { errorMessage, get, type Room } from './api';
import { clockLabel, fromLocal, now, clock, dateTimeLabel } from './time';
import { navigate } from './router';

/// Re-renders every `ms` (countdowns).
export function useTick(ms = 1000): number {
  const [, set] = useState(0);
  useEffect(() => {
    const id = setInterval(() => set((n) => n + 1), ms);
    return () => clearInterval(id);
  }, [ms]);
  return now();
}

/// Loads data with an error message and a reload function.
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const loadRef = useRef(load);
  loadRef.current = load;
  const reload = useCallback(async () => {
    try {
      setData(await loadRef.current());
      setError(null);
    } catch (e) {
      setError(errorMessage(e));
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  useEffect(() => {
    void reload();
  }, [reload]);
  return { data, setData, error, setError, reload };
}

export function Alert({ message, kind = 'error' }: { message: string | null; kind?: 'error' | 'info' }) {
  if (!message) return null;
  return (
    <p className={`alert alert-${kind}`} role={kind === 'error' ? 'alert' : 'status'}>
      {message}
    </p>
  );
}

// Dark enough for white initials (contrast ≥ 4.5:1).
const PALETTE = ['#1d4ed8', '#be185d', '#047857', '#b45309', '#6d28d9', '#0e7490', '#b91c1c', '#374151'];

export function Avatar({ name, profile, id, size = 32 }: { name: string; profile?: string | null; id: number; size?: number }) {
  if (profile) {
    return <img className="avatar" src={profile} alt={name} title={name} width={size} height={size} />;
  }
  return (
    <span
      className="avatar"
      role="img"
      aria-label={name}
      title={name}
      style={{ background: PALETTE[Math.abs(id) % PALETTE.length], width: size, height: size }}
    >
      {name.slice(0, 1)}
    </span>
  );
}

/// My next booked room with a countdown and the way in (open from N minutes before its start).
export function NextRoom({ refreshKey }: { refreshKey?: unknown }) {
  const { data: room, reload, error } = useLoad(() => get<Room | null>('/api/v1/rooms/nearest'), [refreshKey]);
  const t = useTick();
  useEffect(() => {
    if (!room?.endTime) return;
    const ms = fromLocal(room.endTime) - now();
    if (ms <= 0) return;
    const id = setTimeout(() => void reload(), ms + 500);
    return () => clearTimeout(id);
  }, [room, reload]);
  if (error) return <Alert message={error} />;
  if (!room || room.roomId == null) {
    return (
      <section className="card next-room" aria-labelledby="next-room-title">
        <h2 id="next-room-title">다음 공부방</h2>
        <p>예약한 공부방이 없어요. 그룹 캘린더에서 시간을 골라 예약해 보세요.</p>
      </section>
    );
  }
  const start = fromLocal(room.startTime);
  const opens = start - clock.videoOpensMinutesBefore * 60_000;
  const end = room.endTime ? fromLocal(room.endTime) : start;
  const open = t >= opens && t < end;
  return (
    <section className="card next-room" aria-labelledby="next-room-title" data-room-id={room.roomId}>
      <h2 id="next-room-title">다음 공부방</h2>
      <p>
        {dateTimeLabel(room.startTime)} 시작
      </p>
      <p className="countdown" aria-live="off">
        {t < start ? <>시작까지 <strong>{clockLabel(start - t)}</strong></> : <>진행 중 · 끝까지 <strong>{clockLabel(end - t)}</strong></>}
      </p>
      <button type="button" className="primary" disabled={!open} onClick={() => navigate(`/study/${room.roomId}`)}>
        공부방 들어가기
      </button>
      {!open && <p className="hint">시작 {clock.videoOpensMinutesBefore}분 전부터 들어갈 수 있어요.</p>}
    </section>
  );
}
