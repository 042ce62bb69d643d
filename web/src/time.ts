// The service's clock, zone and slot grid (from GET /api/v1/time). Every time the contract
// speaks is a local time in the service's zone without an offset ("2026-12-02T19:30:00").

import { get, type ServerTime } from './api';

export const clock = {
  offsetMs: 0,
  zone: 'Asia/Seoul',
  cycleMinutes: 30,
  studyMinutes: 25,
  videoOpensMinutesBefore: 5,
  /// The member's own zone (settings): times are shown in it; the contract speaks `zone`.
  displayZone: null as string | null,
};

export async function syncClock(): Promise<void> {
  const sent = Date.now();
  const t = await get<ServerTime>('/api/v1/time');
  const received = Date.now();
  clock.offsetMs = t.epochMillis - (sent + received) / 2;
  clock.zone = t.zone;
  clock.cycleMinutes = t.cycleMinutes ?? 30;
  clock.studyMinutes = t.studyMinutes ?? 25;
  clock.videoOpensMinutesBefore = t.videoOpensMinutesBefore ?? 5;
}

export const now = () => Date.now() + clock.offsetMs;

const pad = (n: number) => String(n).padStart(2, '0');

function zoneParts(epoch: number, zone: string) {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: zone,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).formatToParts(new Date(epoch));
  const get = (t: string) => Number(parts.find((p) => p.type === t)?.value);
  return { y: get('year'), mo: get('month'), d: get('day'), h: get('hour') % 24, mi: get('minute'), s: get('second') };
}

/// An instant as the contract's local string in the service zone (seconds precision).
export function toLocal(epoch: number): string {
  const p = zoneParts(epoch, clock.zone);
  return `${p.y}-${pad(p.mo)}-${pad(p.d)}T${pad(p.h)}:${pad(p.mi)}:${pad(p.s)}`;
}

/// A contract local string (service zone) as an instant.
export function fromLocal(local: string): number {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?/.exec(local);
  if (!m) return NaN;
  const ms = m[7] ? Number(m[7].padEnd(3, '0').slice(0, 3)) : 0;
  const asUtc = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] ?? 0), ms);
  // The zone's offset at that instant (twice, for instants near a transition).
  let epoch = asUtc;
  for (let i = 0; i < 2; i++) {
    const p = zoneParts(epoch, clock.zone);
    const seen = Date.UTC(p.y, p.mo - 1, p.d, p.h, p.mi, p.s);
    epoch = asUtc - (seen - Math.floor(epoch / 1000) * 1000);
  }
  return epoch;
}

/// Today's date in the service zone, `YYYY-MM-DD`.
export const today = () => toLocal(now()).slice(0, 10);

export function addDays(date: string, days: number): string {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

/// Slot starts of a day (`YYYY-MM-DD`) on the grid, as local strings.
export function slotsOf(date: string): string[] {
  const out: string[] = [];
  for (let m = 0; m < 24 * 60; m += clock.cycleMinutes) {
    out.push(`${date}T${pad(Math.floor(m / 60))}:${pad(m % 60)}:00`);
  }
  return out;
}

export function slotEnd(start: string): string {
  return toLocal(fromLocal(start) + clock.studyMinutes * 60_000);
}

const WEEKDAYS = ['일', '월', '화', '수', '목', '금', '토'];

/// "12월 3일 (목) 오후 7:30" of a contract local string, in the member's zone.
export function dateTimeLabel(contractLocal: string): string {
  return `${dayLabel(inDisplayZone(contractLocal).slice(0, 10))} ${timeLabel(contractLocal)}`;
}

/// "12월 3일 (목)".
export function dayLabel(date: string): string {
  const d = new Date(`${date}T00:00:00Z`);
  return `${d.getUTCMonth() + 1}월 ${d.getUTCDate()}일 (${WEEKDAYS[d.getUTCDay()]})`;
}

/// A contract local string re-expressed in the member's zone (unchanged when it is the service's).
function inDisplayZone(local: string): string {
  if (!clock.displayZone || clock.displayZone === clock.zone) return local;
  const p = zoneParts(fromLocal(local), clock.displayZone);
  return `${p.y}-${pad(p.mo)}-${pad(p.d)}T${pad(p.h)}:${pad(p.mi)}:${pad(p.s)}`;
}

/// "오후 7:30" from a contract local string, in the member's zone.
export function timeLabel(contractLocal: string): string {
  const local = inDisplayZone(contractLocal);
  const h = Number(local.slice(11, 13));
  const m = local.slice(14, 16);
  return `${h < 12 ? '오전' : '오후'} ${h % 12 === 0 ? 12 : h % 12}:${m}`;
}

/// Milliseconds of an ISO-8601 duration ("PT1H25M30.5S").
export function parseDuration(iso: string | null | undefined): number {
  const m = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?$/.exec(iso ?? '');
  if (!m) return 0;
  return ((+(m[1] ?? 0) * 24 + +(m[2] ?? 0)) * 60 + +(m[3] ?? 0)) * 60_000 + Math.round(+(m[4] ?? 0) * 1000);
}

/// "1시간 5분", "3분 20초", "0분".
export function durationLabel(ms: number): string {
  const totalSeconds = Math.floor(ms / 1000);
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const s = totalSeconds % 60;
  if (h > 0) return `${h}시간 ${m}분`;
  if (m > 0 || s === 0) return s > 0 && m < 10 ? `${m}분 ${s}초` : `${m}분`;
  return `${s}초`;
}

/// "01:02:03" countdown.
export function clockLabel(ms: number): string {
  const t = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const s = t % 60;
  return h > 0 ? `${pad(h)}:${pad(m)}:${pad(s)}` : `${pad(m)}:${pad(s)}`;
}
