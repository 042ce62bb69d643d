import { useEffect, useState } from 'react';
import { get, type Group } from '../api';
import { Alert, Avatar, useLoad } from '../components';
import { durationLabel, parseDuration } from '../time';

interface Entry {
  rank: number;
  memberId: number;
  nickname: string;
  profile: string | null;
  duration: string;
}
interface Rankings {
  period: string;
  from: string | null;
  to: string | null;
  entries: Entry[];
  me: { rank: number; duration: string };
}

const PERIODS = [
  { value: 'day', label: '오늘' },
  { value: 'week', label: '이번 주' },
  { value: 'month', label: '이번 달' },
  { value: 'all', label: '전체' },
];

export function Rankings() {
  const groups = useLoad(() => get<Group[]>('/api/v1/groups'), []);
  const [groupId, setGroupId] = useState<number | null>(null);
  const [period, setPeriod] = useState('week');
  useEffect(() => {
    if (groupId == null && groups.data?.length) setGroupId(groups.data[groups.data.length - 1].groupId);
  }, [groups.data, groupId]);
  const ranking = useLoad(
    () => (groupId == null ? Promise.resolve(null) : get<Rankings>(`/api/v1/rankings?groupId=${groupId}&period=${period}`)),
    [groupId, period],
  );
  const r = ranking.data;
  return (
    <>
      <h1>랭킹</h1>
      <Alert message={groups.error ?? ranking.error} />
      <div className="row">
        <label htmlFor="ranking-group">그룹</label>
        <select id="ranking-group" value={groupId ?? ''} onChange={(e) => setGroupId(Number(e.target.value))}>
          {groups.data?.map((g) => (
            <option key={g.groupId} value={g.groupId}>
              {g.groupName}
            </option>
          ))}
        </select>
      </div>
      <div className="tabs" role="group" aria-label="기간">
        {PERIODS.map((p) => (
          <button key={p.value} type="button" aria-pressed={p.value === period} onClick={() => setPeriod(p.value)}>
            {p.label}
          </button>
        ))}
      </div>
      {r && (
        <>
          <p className="card my-rank" data-testid="my-rank">
            내 순위 <strong>{r.me.rank}위</strong> · {durationLabel(parseDuration(r.me.duration))}
          </p>
          <ol className="ranking">
            {r.entries.map((e) => (
              <li key={e.memberId} data-member-id={e.memberId} data-duration={e.duration}>
                <span className="rank">{e.rank}</span>
                <Avatar id={e.memberId} name={e.nickname} profile={e.profile} />
                <span className="name">{e.nickname}</span>
                <span className="duration">{durationLabel(parseDuration(e.duration))}</span>
              </li>
            ))}
            {r.entries.length === 0 && <li>아직 기록이 없어요.</li>}
          </ol>
        </>
      )}
    </>
  );
}
