import { useCallback, useEffect, useRef, useState } from 'react';
import {
  ConnectionState,
  DisconnectReason,
  LocalTrack,
  Participant,
  Room as LkRoom,
  RoomEvent,
  Track,
  createLocalTracks,
  type RemoteParticipant,
} from 'livekit-client';
import { api, del, errorMessage, get, patch, post, type Member, type Room, type Todo } from '../api';
import { Alert, useTick } from '../components';
import { Link, navigate } from '../router';
import { addDays, clock, clockLabel, fromLocal, now, timeLabel, toLocal, today } from '../time';

interface VideoToken {
  token: string;
  url: string;
}
interface ChatLine {
  id: string;
  from: string;
  mine: boolean;
  text: string;
  at: number;
}

declare global {
  interface Window {
    __ppodok?: { room: LkRoom | null };
  }
}

const CHAT_TOPIC = 'chat';
/// A first data packet (ignored by receivers), see `connect`.
const HELLO_TOPIC = 'ppodok.hello';

async function findRoom(roomId: number): Promise<Room | null> {
  const from = `${addDays(today(), -1)}T00:00:00`;
  const to = `${addDays(today(), 2)}T00:00:00`;
  const mine = await get<Room[]>(`/api/v1/rooms/all?from=${from}&to=${to}`);
  return mine.find((r) => r.roomId === roomId) ?? null;
}

/// The room's phase as the server states it, re-read when the server says it changes.
function usePhase(roomId: number) {
  const [room, setRoom] = useState<Room | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loaded, setLoaded] = useState(false);
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    const load = async () => {
      try {
        const r = await findRoom(roomId);
        if (stopped) return;
        setRoom(r);
        setLoaded(true);
        if (r?.nextPhaseAt) {
          const wait = Math.max(250, fromLocal(r.nextPhaseAt) - now() + 250);
          timer = setTimeout(load, Math.min(wait, 60_000));
        }
      } catch (e) {
        if (stopped) return;
        setError(errorMessage(e));
        setLoaded(true);
        timer = setTimeout(load, 5000);
      }
    };
    void load();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [roomId]);
  return { room, error, loaded };
}

function PhaseTimer({ room }: { room: Room }) {
  const t = useTick(500);
  const next = room.nextPhaseAt ? fromLocal(room.nextPhaseAt) : null;
  const left = next ? next - t : 0;
  const phase = room.phase ?? 'ended';
  const text =
    phase === 'before'
      ? '공부 시작까지'
      : phase === 'study'
        ? '쉬는 시간까지'
        : phase === 'break'
          ? '쉬는 시간 · 끝까지'
          : '수고하셨습니다!';
  const total = clock.studyMinutes * 60_000;
  const done = phase === 'study' && next ? Math.min(1, Math.max(0, 1 - left / total)) : phase === 'before' ? 0 : 1;
  return (
    <div className="phase" data-testid="phase" data-phase={phase}>
      <span className="phase-label">{text}</span>
      {phase !== 'ended' && <strong className="phase-clock">{clockLabel(left)}</strong>}
      <progress max={100} value={Math.round(done * 100)} aria-label="공부 진행률" />
    </div>
  );
}

function Tile({
  participant,
  source,
  focus,
  version,
}: {
  participant: Participant;
  source: Track.Source;
  focus?: boolean;
  version: number;
}) {
  const ref = useRef<HTMLVideoElement>(null);
  const pub = participant.getTrackPublication(source);
  const track = pub?.track;
  const muted = !track || pub?.isMuted;
  useEffect(() => {
    const el = ref.current;
    if (!el || !track) return;
    track.attach(el);
    return () => {
      track.detach(el);
    };
  }, [track, version]);
  const name = participant.name || participant.identity;
  const label = source === Track.Source.ScreenShare ? `${name}의 화면` : name;
  return (
    <figure
      className={`tile${participant.isSpeaking ? ' speaking' : ''}${focus ? ' focus' : ''}`}
      data-identity={participant.identity}
      data-source={source}
    >
      {track && !muted ? (
        <video ref={ref} autoPlay playsInline muted aria-label={`${label} 영상`} data-source={source} data-identity={participant.identity} />
      ) : (
        <div className="no-video" aria-hidden="true">
          {name.slice(0, 1)}
        </div>
      )}
      <figcaption>
        {label}
        {participant.isLocal ? ' (나)' : ''}
        {participant.getTrackPublication(Track.Source.Microphone)?.isMuted !== false && source === Track.Source.Camera ? ' · 마이크 꺼짐' : ''}
      </figcaption>
    </figure>
  );
}

function RemoteAudio({ participant, version }: { participant: RemoteParticipant; version: number }) {
  const ref = useRef<HTMLAudioElement>(null);
  const track = participant.getTrackPublication(Track.Source.Microphone)?.track;
  useEffect(() => {
    const el = ref.current;
    if (!el || !track) return;
    track.attach(el);
    return () => {
      track.detach(el);
    };
  }, [track, version]);
  return <audio ref={ref} autoPlay data-identity={participant.identity} />;
}

function PreJoin({
  onJoin,
  busy,
}: {
  onJoin: (tracks: LocalTrack[], mic: boolean, cam: boolean) => void;
  busy: boolean;
}) {
  const [tracks, setTracks] = useState<LocalTrack[]>([]);
  const [cams, setCams] = useState<MediaDeviceInfo[]>([]);
  const [mics, setMics] = useState<MediaDeviceInfo[]>([]);
  const [camId, setCamId] = useState<string>('');
  const [micId, setMicId] = useState<string>('');
  const [camOn, setCamOn] = useState(true);
  const [micOn, setMicOn] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const videoRef = useRef<HTMLVideoElement>(null);
  const tracksRef = useRef<LocalTrack[]>([]);
  const handedOver = useRef(false);

  useEffect(() => {
    let cancelled = false;
    createLocalTracks({
      audio: micOn ? (micId ? { deviceId: micId } : true) : false,
      video: camOn ? (camId ? { deviceId: camId } : true) : false,
    })
      .then(async (t) => {
        if (cancelled) {
          t.forEach((x) => x.stop());
          return;
        }
        tracksRef.current.forEach((x) => x.stop());
        tracksRef.current = t;
        setTracks(t);
        setError(null);
        setCams(await LkRoom.getLocalDevices('videoinput'));
        setMics(await LkRoom.getLocalDevices('audioinput'));
      })
      .catch(() => {
        if (!cancelled) setError('카메라나 마이크를 쓸 수 없어요. 브라우저의 권한 설정을 확인해 주세요.');
      });
    return () => {
      cancelled = true;
    };
  }, [camId, micId, camOn, micOn]);

  useEffect(
    () => () => {
      if (!handedOver.current) tracksRef.current.forEach((x) => x.stop());
    },
    [],
  );

  const video = tracks.find((t) => t.kind === Track.Kind.Video);
  useEffect(() => {
    const el = videoRef.current;
    if (!el || !video) return;
    video.attach(el);
    return () => {
      video.detach(el);
    };
  }, [video]);

  return (
    <section className="card prejoin" aria-labelledby="prejoin-title">
      <h2 id="prejoin-title">입장 전 점검</h2>
      <Alert message={error} />
      <div className="preview">
        {video && camOn ? <video ref={videoRef} autoPlay playsInline muted aria-label="내 카메라 미리보기" /> : <div className="no-video">카메라 꺼짐</div>}
      </div>
      <div className="row">
        <label className="check">
          <input type="checkbox" checked={camOn} onChange={(e) => setCamOn(e.target.checked)} /> 카메라
        </label>
        <label className="check">
          <input type="checkbox" checked={micOn} onChange={(e) => setMicOn(e.target.checked)} /> 마이크
        </label>
      </div>
      <label htmlFor="cam-select">카메라 선택</label>
      <select id="cam-select" value={camId} onChange={(e) => setCamId(e.target.value)}>
        <option value="">기본 카메라</option>
        {cams.map((d) => (
          <option key={d.deviceId} value={d.deviceId}>
            {d.label || '카메라'}
          </option>
        ))}
      </select>
      <label htmlFor="mic-select">마이크 선택</label>
      <select id="mic-select" value={micId} onChange={(e) => setMicId(e.target.value)}>
        <option value="">기본 마이크</option>
        {mics.map((d) => (
          <option key={d.deviceId} value={d.deviceId}>
            {d.label || '마이크'}
          </option>
        ))}
      </select>
      <button
        type="button"
        className="primary"
        disabled={busy}
        onClick={() => {
          handedOver.current = true;
          onJoin(tracksRef.current, micOn, camOn);
        }}
      >
        입장하기
      </button>
    </section>
  );
}

function Chat({ lines, onSend, disabled }: { lines: ChatLine[]; onSend: (text: string) => Promise<void>; disabled: boolean }) {
  const [text, setText] = useState('');
  const listRef = useRef<HTMLOListElement>(null);
  useEffect(() => {
    listRef.current?.lastElementChild?.scrollIntoView({ block: 'nearest' });
  }, [lines.length]);
  return (
    <section className="card chat" aria-labelledby="chat-title">
      <h2 id="chat-title">채팅</h2>
      <ol ref={listRef} className="chat-lines" aria-live="polite">
        {lines.map((l) => (
          <li key={l.id} className={l.mine ? 'mine' : ''} data-testid="chat-line">
            <span className="from">{l.from}</span> <span className="text">{l.text}</span>{' '}
            <time>{timeLabel(toLocal(l.at))}</time>
          </li>
        ))}
      </ol>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          if (!text.trim()) return;
          await onSend(text.trim());
          setText('');
        }}
      >
        <label htmlFor="chat-input" className="sr-only">
          메시지
        </label>
        <div className="row">
          <input id="chat-input" value={text} onChange={(e) => setText(e.target.value)} maxLength={500} placeholder="메시지 입력" disabled={disabled} />
          <button type="submit" disabled={disabled || !text.trim()}>
            보내기
          </button>
        </div>
      </form>
    </section>
  );
}

function Todos({ groupId }: { groupId: number }) {
  const [todos, setTodos] = useState<Todo[]>([]);
  const [text, setText] = useState('');
  const [error, setError] = useState<string | null>(null);
  const run = async (f: () => Promise<unknown>) => {
    try {
      await f();
      setTodos(await get<Todo[]>(`/api/v1/todos?groupId=${groupId}`));
      setError(null);
    } catch (e) {
      setError(errorMessage(e));
    }
  };
  useEffect(() => {
    void run(async () => undefined);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [groupId]);
  return (
    <section className="card todos" aria-labelledby="todo-title">
      <h2 id="todo-title">할 일</h2>
      <Alert message={error} />
      <ul>
        {todos.map((t) => (
          <li key={t.todoId}>
            <label className="check">
              <input type="checkbox" checked={t.done} onChange={() => run(() => patch('/api/v1/todos', { todoId: t.todoId, done: !t.done }))} />{' '}
              <span className={t.done ? 'done' : ''}>{t.content}</span>
            </label>
            <button type="button" className="link" aria-label={`${t.content} 삭제`} onClick={() => run(() => del('/api/v1/todos', { todoId: t.todoId }))}>
              삭제
            </button>
          </li>
        ))}
      </ul>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (!text.trim()) return;
          void run(() => post('/api/v1/todos', { groupId, content: text.trim() })).then(() => setText(''));
        }}
      >
        <label htmlFor="todo-input" className="sr-only">
          새 할 일
        </label>
        <div className="row">
          <input id="todo-input" value={text} onChange={(e) => setText(e.target.value)} maxLength={255} placeholder="할 일 추가" />
          <button type="submit">추가</button>
        </div>
      </form>
    </section>
  );
}

export function Study({ roomId, me }: { roomId: number; me: Member | null }) {
  const { room: info, error: phaseError, loaded } = usePhase(roomId);
  const [lk, setLk] = useState<LkRoom | null>(null);
  const [state, setState] = useState<ConnectionState>(ConnectionState.Disconnected);
  const [version, setVersion] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [dropped, setDropped] = useState(false);
  const [chat, setChat] = useState<ChatLine[]>([]);
  const entered = useRef(false);
  const leaving = useRef(false);
  const bump = useCallback(() => setVersion((v) => v + 1), []);

  const exit = useCallback(() => {
    if (!entered.current) return;
    entered.current = false;
    // The SFU's webhooks also end presence, so an exit lost with a closing tab is still credited.
    void api('PATCH', '/api/v1/rooms/histories', { roomId }).catch(() => undefined);
  }, [roomId]);

  const connect = useCallback(
    async (tracks: LocalTrack[] | null) => {
      setBusy(true);
      setError(null);
      try {
        const grant = await post<VideoToken>(`/api/v1/rooms/${roomId}/video-token`);
        const room = new LkRoom({ adaptiveStream: true, dynacast: true });
        window.__ppodok = { room };
        const events = [
          RoomEvent.ParticipantConnected,
          RoomEvent.ParticipantDisconnected,
          RoomEvent.TrackSubscribed,
          RoomEvent.TrackUnsubscribed,
          RoomEvent.TrackMuted,
          RoomEvent.TrackUnmuted,
          RoomEvent.LocalTrackPublished,
          RoomEvent.LocalTrackUnpublished,
          RoomEvent.ActiveSpeakersChanged,
          RoomEvent.TrackPublished,
          RoomEvent.TrackUnpublished,
        ];
        events.forEach((ev) => room.on(ev, bump));
        room.on(RoomEvent.ConnectionStateChanged, (s) => setState(s));
        room.on(RoomEvent.DataReceived, (payload, participant, _kind, topic) => {
          if (topic !== CHAT_TOPIC) return;
          try {
            const msg = JSON.parse(new TextDecoder().decode(payload));
            if (typeof msg.text !== 'string') return;
            setChat((c) => [
              ...c.slice(-199),
              { id: crypto.randomUUID(), from: participant?.name || participant?.identity || '알 수 없음', mine: false, text: msg.text.slice(0, 500), at: Date.now() },
            ]);
          } catch {
            /* not a chat line */
          }
        });
        room.on(RoomEvent.Disconnected, (reason) => {
          bump();
          exit();
          if (!leaving.current) {
            setDropped(true);
            setError(
              reason === DisconnectReason.DUPLICATE_IDENTITY
                ? '다른 창에서 같은 공부방에 들어가서 연결이 끊겼어요.'
                : '영상 연결이 끊겼어요. 다시 연결해 주세요.',
            );
          }
        });
        await room.connect(grant.url, grant.token);
        setDropped(false);
        setLk(room);
        // Open the data channel (chat) before any track: with ppodok-sfu, a first publisher
        // offer that carries media as well leaves the channel's SCTP association "connecting"
        // for good. A first packet makes the first offer a data-only one.
        await Promise.race([
          room.localParticipant.publishData(new Uint8Array([1]), { reliable: true, topic: HELLO_TOPIC }),
          new Promise((resolve) => setTimeout(resolve, 5000)),
        ]).catch(() => undefined);
        if (tracks) {
          for (const t of tracks) {
            if (t.mediaStreamTrack.readyState === 'live') await room.localParticipant.publishTrack(t);
          }
        } else {
          // Back after a dropped connection: camera and microphone as a fresh start.
          await room.localParticipant.enableCameraAndMicrophone().catch(() => undefined);
        }
        bump();
        await post('/api/v1/rooms/histories', { roomId });
        entered.current = true;
      } catch (e) {
        setError(errorMessage(e));
      } finally {
        setBusy(false);
      }
    },
    [roomId, bump, exit],
  );

  useEffect(() => {
    const onHide = () => exit();
    window.addEventListener('pagehide', onHide);
    return () => {
      window.removeEventListener('pagehide', onHide);
    };
  }, [exit]);

  useEffect(
    () => () => {
      leaving.current = true;
      void lk?.disconnect();
    },
    [lk],
  );

  const leave = async () => {
    leaving.current = true;
    await lk?.disconnect();
    exit();
    window.__ppodok = { room: null };
    navigate(info?.groupId ? `/groups/${info.groupId}` : '/');
  };

  if (!loaded) return <p className="loading">불러오는 중…</p>;
  if (!info) {
    return (
      <main id="main" className="study">
        <Alert message={phaseError ?? '예약한 공부방이 아니에요.'} />
        <Link to="/">내 그룹으로</Link>
      </main>
    );
  }

  const participants: Participant[] = lk ? [lk.localParticipant, ...lk.remoteParticipants.values()] : [];
  const shares = participants.filter((p) => p.getTrackPublication(Track.Source.ScreenShare)?.track);
  const focus = shares.find((p) => !p.isLocal) ?? shares[0];
  const connected = lk && state === ConnectionState.Connected;
  const local = lk?.localParticipant;

  return (
    <main id="main" className="study" data-connection={state}>
      <header className="study-bar">
        <h1>
          공부방 · {timeLabel(info.startTime)}
          {info.endTime ? ` ~ ${timeLabel(info.endTime)}` : ''}
        </h1>
        <PhaseTimer room={info} />
      </header>
      <Alert message={error} />
      {state === ConnectionState.Reconnecting && <Alert kind="info" message="다시 연결하는 중…" />}
      {!lk || dropped ? (
        dropped ? (
          <div className="card">
            <button type="button" className="primary" disabled={busy} onClick={() => connect(null)}>
              다시 연결
            </button>{' '}
            <button type="button" onClick={leave}>
              나가기
            </button>
          </div>
        ) : (
          <div className="prejoin-wrap">
            <PreJoin busy={busy} onJoin={(tracks) => void connect(tracks)} />
            <button type="button" onClick={() => navigate(`/groups/${info.groupId}`)}>
              돌아가기
            </button>
          </div>
        )
      ) : (
        <div className="room-layout">
          <section aria-label="참여자 영상" className="stage" data-layout={focus ? 'focus' : 'grid'} data-participants={participants.length}>
            {focus && <Tile participant={focus} source={Track.Source.ScreenShare} focus version={version} />}
            <div className="grid">
              {participants.map((p) => (
                <Tile key={p.identity} participant={p} source={Track.Source.Camera} version={version} />
              ))}
              {shares
                .filter((p) => p !== focus)
                .map((p) => (
                  <Tile key={`${p.identity}-share`} participant={p} source={Track.Source.ScreenShare} version={version} />
                ))}
            </div>
            {[...lk.remoteParticipants.values()].map((p) => (
              <RemoteAudio key={p.identity} participant={p} version={version} />
            ))}
          </section>
          <div className="controls" role="toolbar" aria-label="공부방 조작">
            <button
              type="button"
              aria-pressed={local?.isMicrophoneEnabled ?? false}
              disabled={!connected}
              onClick={async () => {
                await local?.setMicrophoneEnabled(!local.isMicrophoneEnabled).catch((e) => setError(errorMessage(e)));
                bump();
              }}
            >
              {local?.isMicrophoneEnabled ? '마이크 끄기' : '마이크 켜기'}
            </button>
            <button
              type="button"
              aria-pressed={local?.isCameraEnabled ?? false}
              disabled={!connected}
              onClick={async () => {
                await local?.setCameraEnabled(!local.isCameraEnabled).catch((e) => setError(errorMessage(e)));
                bump();
              }}
            >
              {local?.isCameraEnabled ? '카메라 끄기' : '카메라 켜기'}
            </button>
            <button
              type="button"
              aria-pressed={local?.isScreenShareEnabled ?? false}
              disabled={!connected}
              onClick={async () => {
                await local
                  ?.setScreenShareEnabled(!local.isScreenShareEnabled)
                  .catch(() => setError('화면을 공유할 수 없어요.'));
                bump();
              }}
            >
              {local?.isScreenShareEnabled ? '화면 공유 중지' : '화면 공유'}
            </button>
            <button type="button" className="danger" onClick={leave}>
              나가기
            </button>
          </div>
          <div className="side">
            <Chat
              lines={chat}
              disabled={!connected}
              onSend={async (text) => {
                const body = new TextEncoder().encode(JSON.stringify({ text, sentAt: now() }));
                try {
                  await lk.localParticipant.publishData(body, { reliable: true, topic: CHAT_TOPIC });
                  setChat((c) => [...c.slice(-199), { id: crypto.randomUUID(), from: me?.name ?? '나', mine: true, text, at: Date.now() }]);
                } catch {
                  setError('메시지를 보내지 못했어요.');
                }
              }}
            />
            {info.groupId != null && <Todos groupId={info.groupId} />}
          </div>
        </div>
      )}
    </main>
  );
}
