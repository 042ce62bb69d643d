import { useState } from 'react';
import { errorMessage, get, patch } from '../api';
import { Alert, useLoad } from '../components';
import { clock, dayLabel, durationLabel, parseDuration } from '../time';

interface DayDuration {
  calculatedAt: string;
  duration: string;
}
interface Summary {
  today: string;
  week: DayDuration[];
  currentStreak: number;
  bestStreak: number;
  todoCompletionRate: number | null;
  totalDuration: string;
}
interface Settings {
  timeZone: string;
  dayBoundary: string;
}

const ZONES = ['Asia/Seoul', 'Asia/Tokyo', 'Asia/Shanghai', 'Asia/Singapore', 'Europe/London', 'Europe/Berlin', 'America/New_York', 'America/Los_Angeles', 'Australia/Sydney', 'UTC'];
const WEEK = ['월', '화', '수', '목', '금', '토', '일'];

export function MyPage() {
  const summary = useLoad(() => get<Summary>('/api/v1/study-histories/summary'), []);
  const year = new Date().getFullYear();
  const heatmap = useLoad(() => get<DayDuration[]>(`/api/v1/study-histories/heatmap?year=${year}`), [year]);
  const s = summary.data;
  const weekMax = Math.max(1, ...(s?.week ?? []).map((d) => parseDuration(d.duration)));
  return (
    <>
      <h1>마이페이지</h1>
      <Alert message={summary.error ?? heatmap.error} />
      {s && (
        <>
          <section className="stats" aria-label="공부 요약">
            <div className="card stat">
              <h2>오늘</h2>
              <p className="big" data-testid="today">{durationLabel(parseDuration(s.today))}</p>
            </div>
            <div className="card stat">
              <h2>총 공부 시간</h2>
              <p className="big" data-testid="total">{durationLabel(parseDuration(s.totalDuration))}</p>
            </div>
            <div className="card stat">
              <h2>연속 공부</h2>
              <p className="big">{s.currentStreak}일</p>
              <p className="hint">최고 {s.bestStreak}일</p>
            </div>
            <div className="card stat">
              <h2>할 일 달성률</h2>
              <p className="big">{s.todoCompletionRate == null ? '—' : `${Math.round(s.todoCompletionRate)}%`}</p>
            </div>
          </section>
          <section className="card" aria-labelledby="week-title">
            <h2 id="week-title">이번 주</h2>
            <ol className="week-chart">
              {s.week.map((d, i) => {
                const ms = parseDuration(d.duration);
                return (
                  <li key={d.calculatedAt} aria-label={`${dayLabel(d.calculatedAt)} ${durationLabel(ms)}`}>
                    <span className="bar" style={{ height: `${Math.round((ms / weekMax) * 100)}%` }} aria-hidden="true" />
                    <span className="day" aria-hidden="true">
                      {WEEK[i]}
                    </span>
                  </li>
                );
              })}
            </ol>
          </section>
        </>
      )}
      {heatmap.data && <Heatmap year={year} days={heatmap.data} />}
      <SettingsForm />
    </>
  );
}

function Heatmap({ year, days }: { year: number; days: DayDuration[] }) {
  const byDay = new Map(days.map((d) => [d.calculatedAt, parseDuration(d.duration)]));
  const cells: { date: string; ms: number }[] = [];
  const d = new Date(Date.UTC(year, 0, 1));
  const pad = (d.getUTCDay() + 6) % 7;
  while (d.getUTCFullYear() === year) {
    const date = d.toISOString().slice(0, 10);
    cells.push({ date, ms: byDay.get(date) ?? 0 });
    d.setUTCDate(d.getUTCDate() + 1);
  }
  const level = (ms: number) => (ms === 0 ? 0 : ms < 30 * 60_000 ? 1 : ms < 2 * 3600_000 ? 2 : ms < 4 * 3600_000 ? 3 : 4);
  const studied = cells.filter((c) => c.ms > 0).length;
  return (
    <section className="card" aria-labelledby="heatmap-title">
      <h2 id="heatmap-title">{year}년 공부 기록</h2>
      <p className="hint">올해 {studied}일 공부했어요.</p>
      {/* Scrolls sideways on a phone: focusable, so the keyboard can scroll it too. */}
      <div className="heatmap-scroll" tabIndex={0} role="region" aria-label={`${year}년 공부 기록 달력`}>
      <div className="heatmap" role="img" aria-label={`${year}년 공부 기록: ${studied}일`}>
        {Array.from({ length: pad }, (_, i) => (
          <span key={`pad-${i}`} className="cell pad" />
        ))}
        {cells.map((c) => (
          <span key={c.date} className={`cell l${level(c.ms)}`} title={`${c.date} ${durationLabel(c.ms)}`} />
        ))}
      </div>
      </div>
    </section>
  );
}

function SettingsForm() {
  const settings = useLoad(() => get<Settings>('/api/v1/members/settings'), []);
  const [notice, setNotice] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  if (!settings.data) return <Alert message={settings.error} />;
  const current = settings.data;
  const zones = ZONES.includes(current.timeZone) ? ZONES : [current.timeZone, ...ZONES];
  return (
    <form
      className="card"
      aria-labelledby="settings-title"
      onSubmit={async (e) => {
        e.preventDefault();
        const form = new FormData(e.currentTarget);
        setError(null);
        setNotice(null);
        try {
          settings.setData(
            await patch<Settings>('/api/v1/members/settings', {
              timeZone: form.get('timeZone'),
              dayBoundary: form.get('dayBoundary'),
            }),
          );
          setNotice('저장했어요.');
          clock.displayZone = String(form.get('timeZone'));
          await settings.reload();
        } catch (err) {
          setError(errorMessage(err));
        }
      }}
    >
      <h2 id="settings-title">공부 날짜 설정</h2>
      <Alert message={error} />
      <Alert message={notice} kind="info" />
      <label htmlFor="time-zone">시간대</label>
      <select id="time-zone" name="timeZone" defaultValue={current.timeZone}>
        {zones.map((z) => (
          <option key={z} value={z}>
            {z}
          </option>
        ))}
      </select>
      <label htmlFor="day-boundary">하루가 시작되는 시각</label>
      <input id="day-boundary" name="dayBoundary" type="time" defaultValue={current.dayBoundary} step={60} />
      <button type="submit">저장</button>
    </form>
  );
}
