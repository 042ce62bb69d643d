import { useState } from 'react';
import { errorMessage, get, post, type Group } from '../api';
import { Alert, useLoad, useTick } from '../components';
import { clockLabel, fromLocal, parseDuration } from '../time';

interface TimerState {
  state: 'running' | 'paused' | 'stopped';
  groupId: number | null;
  startedAt: string;
  elapsed: string;
  serverTime: string;
}

export function FocusTimer() {
  const timer = useLoad(() => get<TimerState | null>('/api/v1/timers/current'), []);
  const groups = useLoad(() => get<Group[]>('/api/v1/groups'), []);
  const [groupId, setGroupId] = useState<string>('');
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const t = useTick(500);
  const cur = timer.data;
  const elapsed = cur
    ? parseDuration(cur.elapsed) + (cur.state === 'running' ? Math.max(0, t - fromLocal(cur.serverTime)) : 0)
    : 0;
  const run = async (f: () => Promise<TimerState | null>, done?: string) => {
    setError(null);
    setNotice(null);
    try {
      const next = await f();
      timer.setData(next && next.state !== 'stopped' ? next : null);
      if (done) setNotice(done);
    } catch (e) {
      setError(errorMessage(e));
    }
  };
  return (
    <>
      <h1>집중 타이머</h1>
      <Alert message={error ?? timer.error} />
      <Alert message={notice} kind="info" />
      <section className="card timer" aria-labelledby="timer-title">
        <h2 id="timer-title">{cur ? (cur.state === 'running' ? '집중하는 중' : '일시 정지') : '타이머 준비'}</h2>
        <p className="big" data-testid="timer-elapsed" aria-live="off">
          {clockLabel(elapsed)}
        </p>
        {!cur && (
          <>
            <label htmlFor="timer-group">기록할 그룹 (선택)</label>
            <select id="timer-group" value={groupId} onChange={(e) => setGroupId(e.target.value)}>
              <option value="">그룹 없이 (개인 기록만)</option>
              {groups.data?.map((g) => (
                <option key={g.groupId} value={g.groupId}>
                  {g.groupName}
                </option>
              ))}
            </select>
            <button type="button" className="primary" onClick={() => run(() => post('/api/v1/timers/start', groupId ? { groupId: Number(groupId) } : {}))}>
              시작
            </button>
          </>
        )}
        {cur?.state === 'running' && (
          <button type="button" onClick={() => run(() => post('/api/v1/timers/pause'))}>
            일시 정지
          </button>
        )}
        {cur?.state === 'paused' && (
          <button type="button" className="primary" onClick={() => run(() => post('/api/v1/timers/resume'))}>
            다시 시작
          </button>
        )}
        {cur && (
          <button type="button" className="danger" onClick={() => run(() => post('/api/v1/timers/stop'), '기록했어요.')}>
            끝내기
          </button>
        )}
      </section>
    </>
  );
}
