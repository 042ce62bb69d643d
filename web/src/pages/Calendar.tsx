import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { del, errorMessage, get, post, type Group, type Member, type Rank, type Room } from '../api';
import { Alert, Avatar, NextRoom, useLoad, useTick } from '../components';
import { Link } from '../router';
import { openCalendarFeed } from '../stomp';
import { addDays, clock, dayLabel, fromLocal, slotEnd, slotsOf, timeLabel, today } from '../time';

const DAYS = 14;
const PAGE = 48;

export function Calendar({ groupId, me }: { groupId: number; me: Member | null }) {
  const groups = useLoad(() => get<Group[]>('/api/v1/groups'), []);
  const group = groups.data?.find((g) => g.groupId === groupId);
  const [rooms, setRooms] = useState<Map<string, Room>>(new Map());
  const [names, setNames] = useState<Map<number, Rank>>(new Map());
  const [live, setLive] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [nearestKey, setNearestKey] = useState(0);
  const [day, setDay] = useState(today());
  const [page, setPage] = useState(0);
  const t = useTick(5000);
  // When each slot was last updated, by the server's clock: a REST answer can arrive after a
  // newer broadcast about the same slot, and must not undo it.
  const seen = useRef(new Map<string, string>());

  const loadNames = useCallback(async () => {
    const ranks = await get<Rank[]>(`/api/v1/ranks?groupId=${groupId}`);
    setNames(new Map(ranks.map((r) => [r.memberId, r])));
  }, [groupId]);

  const resync = useCallback(async () => {
    try {
      const from = `${today()}T00:00:00`;
      const to = `${addDays(today(), DAYS)}T00:00:00`;
      const list = await get<Room[]>(`/api/v1/rooms?groupId=${groupId}&from=${from}&to=${to}`);
      setRooms(new Map(list.map((r) => [r.startTime, r])));
      seen.current = new Map(list.map((r) => [r.startTime, r.serverTime]));
      await loadNames();
      setNearestKey((k) => k + 1);
    } catch (e) {
      setError(errorMessage(e));
    }
  }, [groupId, loadNames]);

  const apply = useCallback(
    (room: Room) => {
      const last = seen.current.get(room.startTime);
      if (last && room.serverTime && room.serverTime < last) return;
      if (room.serverTime) seen.current.set(room.startTime, room.serverTime);
      setRooms((prev) => {
        const next = new Map(prev);
        if (room.roomId == null) next.delete(room.startTime);
        else next.set(room.startTime, room);
        return next;
      });
      setNames((known) => {
        if (room.memberIds?.some((id) => !known.has(id))) void loadNames().catch(() => undefined);
        return known;
      });
      setNearestKey((k) => k + 1);
    },
    [loadNames],
  );

  useEffect(() => {
    const feed = openCalendarFeed(groupId, {
      onRoom: apply,
      onConnected: () => void resync(),
      onStatus: setLive,
      onError: setError,
    });
    return () => feed.close();
  }, [groupId, apply, resync]);

  const days = useMemo(() => Array.from({ length: DAYS }, (_, i) => addDays(today(), i)), [t]);
  const slots = useMemo(() => slotsOf(day).filter((s) => fromLocal(slotEnd(s)) > t), [day, t, clock.cycleMinutes]);
  const shown = slots.slice(page * PAGE, (page + 1) * PAGE);

  const act = async (start: string, room: Room | undefined, mine: boolean) => {
    setError(null);
    try {
      if (room && mine) {
        const left = await del<Room | null>(`/api/v1/rooms/${room.roomId}/reservation`);
        apply(left ?? { ...room, roomId: null, groupId: null, memberIds: null, profiles: null, serverTime: '' });
      } else {
        apply(await post<Room>('/api/v1/rooms/reservations', { groupId, startTime: start }));
      }
    } catch (e) {
      setError(errorMessage(e));
    }
  };

  return (
    <>
      <div className="title-row">
        <h1>{group ? group.groupName : '그룹'} 캘린더</h1>
        <p role="status" className={`live ${live ? 'on' : 'off'}`} data-testid="live">
          {live ? '실시간 연결됨' : '다시 연결하는 중…'}
        </p>
      </div>
      <p>
        <Link to="/rankings">랭킹 보기</Link>
      </p>
      <NextRoom refreshKey={nearestKey} />
      <Alert message={error ?? groups.error} />
      <nav aria-label="날짜" className="days">
        {days.map((d) => (
          <button
            key={d}
            type="button"
            aria-pressed={d === day}
            onClick={() => {
              setDay(d);
              setPage(0);
            }}
          >
            {dayLabel(d)}
          </button>
        ))}
      </nav>
      <h2>{dayLabel(day)}</h2>
      <ul className="slots" aria-label={`${dayLabel(day)} 시간표`}>
        {shown.map((start) => {
          const room = rooms.get(start);
          const ids = room?.memberIds ?? [];
          const mine = me != null && ids.includes(me.memberId);
          const started = fromLocal(start) <= t;
          const label = timeLabel(start);
          return (
            <li key={start} data-slot={start} data-count={ids.length} className={mine ? 'slot mine' : room ? 'slot booked' : 'slot'}>
              <span className="slot-time">{label}</span>
              <span className="slot-people">
                {ids.length > 0 ? (
                  <>
                    <span className="avatars">
                      {ids.slice(0, 5).map((id) => {
                        const n = names.get(id);
                        return <Avatar key={id} id={id} name={n?.nickname ?? `회원 ${id}`} profile={n?.profile} size={24} />;
                      })}
                    </span>
                    <span className="count">{ids.length}명</span>
                  </>
                ) : (
                  <span className="empty">예약 없음</span>
                )}
              </span>
              <button
                type="button"
                className={mine ? 'danger' : room ? '' : 'primary'}
                disabled={started}
                aria-label={`${label} ${mine ? '예약 취소' : room ? '참여' : '예약'}`}
                onClick={() => act(start, room, mine)}
              >
                {mine ? '취소' : room ? '참여' : '예약'}
              </button>
            </li>
          );
        })}
        {shown.length === 0 && <li className="empty">남은 시간대가 없어요.</li>}
      </ul>
      <div className="row">
        {page > 0 && (
          <button type="button" onClick={() => setPage(page - 1)}>
            이전 시간대
          </button>
        )}
        {(page + 1) * PAGE < slots.length && (
          <button type="button" onClick={() => setPage(page + 1)}>
            다음 시간대
          </button>
        )}
      </div>
    </>
  );
}
