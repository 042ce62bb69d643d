import { useEffect, useState } from 'react';
import { del, errorMessage, get, patch, post, type Group, type Member } from '../api';
import { Alert, NextRoom, useLoad } from '../components';
import { Link, navigate } from '../router';

const DEFAULT_GROUP_ID = 1;
export const COLORS: { value: string; label: string }[] = [
  { value: 'accent', label: '민트' },
  { value: 'primary', label: '파랑' },
  { value: 'secondary', label: '분홍' },
  { value: 'neutral', label: '회색' },
];

export function inviteUrl(path: string) {
  return `${location.origin}/invite/${encodeURIComponent(path)}`;
}

export function Home({ me }: { me: Member | null }) {
  const groups = useLoad(() => get<Group[]>('/api/v1/groups'), []);
  const [notice, setNotice] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const act = async (f: () => Promise<unknown>, ok?: string) => {
    setError(null);
    setNotice(null);
    try {
      await f();
      if (ok) setNotice(ok);
      await groups.reload();
    } catch (e) {
      setError(errorMessage(e));
    }
  };
  return (
    <>
      <h1>{me ? `${me.name}님, 오늘도 뽀독뽀독` : '뽀독뽀독'}</h1>
      <NextRoom />
      <Alert message={error ?? groups.error} />
      <Alert message={notice} kind="info" />
      <section aria-labelledby="my-groups">
        <h2 id="my-groups">내 그룹</h2>
        <ul className="groups">
          {groups.data?.map((g) => (
            <li key={g.groupId} className={`card group color-${g.color ?? 'accent'}`} data-group-id={g.groupId}>
              <h3>
                <Link to={`/groups/${g.groupId}`}>{g.groupName}</Link>
                {g.secret && <span className="badge">비밀</span>}
              </h3>
              <div className="row">
                <label htmlFor={`color-${g.groupId}`}>색상</label>
                <select
                  id={`color-${g.groupId}`}
                  value={g.color ?? 'accent'}
                  onChange={(e) => act(() => patch('/api/v1/groups/color', { groupId: g.groupId, color: e.target.value }))}
                >
                  {COLORS.map((c) => (
                    <option key={c.value} value={c.value}>
                      {c.label}
                    </option>
                  ))}
                </select>
              </div>
              <div className="row">
                <Link to={`/groups/${g.groupId}`} className="button">캘린더</Link>
                {g.groupId !== DEFAULT_GROUP_ID && g.path && (
                  <button
                    type="button"
                    onClick={() =>
                      navigator.clipboard
                        ?.writeText(inviteUrl(g.path!))
                        .then(() => setNotice(`초대 링크를 복사했어요: ${inviteUrl(g.path!)}`))
                        .catch(() => setNotice(`초대 링크: ${inviteUrl(g.path!)}`)) ?? setNotice(`초대 링크: ${inviteUrl(g.path!)}`)
                    }
                  >
                    초대 링크
                  </button>
                )}
                {g.groupId !== DEFAULT_GROUP_ID && (
                  <button
                    type="button"
                    className="danger"
                    onClick={() => {
                      if (confirm(`'${g.groupName}' 그룹에서 나갈까요?`)) void act(() => del('/api/v1/groups', { groupId: g.groupId }), '그룹에서 나갔어요.');
                    }}
                  >
                    나가기
                  </button>
                )}
              </div>
              {g.path && g.groupId !== DEFAULT_GROUP_ID && (
                <p className="hint">
                  초대 코드 <code data-testid="invite-code">{g.path}</code>
                </p>
              )}
            </li>
          ))}
        </ul>
      </section>
      <div className="columns">
        <CreateGroup onDone={(g) => act(async () => undefined, `'${g.groupName}' 그룹을 만들었어요.`)} />
        <JoinGroups onJoined={(g) => act(async () => undefined, `'${g.groupName}' 그룹에 가입했어요.`)} />
      </div>
    </>
  );
}

function CreateGroup({ onDone }: { onDone: (g: Group) => void }) {
  const [name, setName] = useState('');
  const [secret, setSecret] = useState(false);
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  return (
    <form
      className="card"
      aria-labelledby="create-title"
      onSubmit={async (e) => {
        e.preventDefault();
        setError(null);
        try {
          const g = await post<Group>('/api/v1/groups', { groupName: name.trim(), secret, password: secret ? password : null });
          setName('');
          setPassword('');
          setSecret(false);
          onDone(g);
        } catch (err) {
          setError(errorMessage(err));
        }
      }}
    >
      <h2 id="create-title">그룹 만들기</h2>
      <Alert message={error} />
      <label htmlFor="group-name">그룹 이름</label>
      <input id="group-name" value={name} onChange={(e) => setName(e.target.value)} required maxLength={50} />
      <label className="check">
        <input type="checkbox" checked={secret} onChange={(e) => setSecret(e.target.checked)} /> 비밀 그룹 (비밀번호로 가입)
      </label>
      {secret && (
        <>
          <label htmlFor="group-password">비밀번호</label>
          <input id="group-password" type="password" value={password} onChange={(e) => setPassword(e.target.value)} required autoComplete="new-password" />
        </>
      )}
      <button type="submit" className="primary" disabled={!name.trim()}>
        만들기
      </button>
    </form>
  );
}

function JoinGroups({ onJoined }: { onJoined: (g: Group) => void }) {
  const [query, setQuery] = useState('');
  const [code, setCode] = useState('');
  const [passwords, setPasswords] = useState<Record<number, string>>({});
  const [error, setError] = useState<string | null>(null);
  const joinable = useLoad(() => get<Group[]>('/api/v1/groups/all'), []);
  const q = query.trim().toLowerCase();
  // The list changes as others create groups: fetched again (debounced) while searching.
  const reloadJoinable = joinable.reload;
  useEffect(() => {
    if (!q) return;
    const id = setTimeout(() => void reloadJoinable(), 250);
    return () => clearTimeout(id);
  }, [q, reloadJoinable]);
  const found = (joinable.data ?? []).filter((g) => q && g.groupName.toLowerCase().includes(q)).slice(0, 20);
  const join = async (f: () => Promise<Group>) => {
    setError(null);
    try {
      const g = await f();
      onJoined(g);
      setQuery('');
      setCode('');
      await joinable.reload();
    } catch (e) {
      setError(errorMessage(e));
    }
  };
  return (
    <section className="card" aria-labelledby="join-title">
      <h2 id="join-title">그룹 가입</h2>
      <Alert message={error ?? joinable.error} />
      <label htmlFor="group-search">그룹 검색</label>
      <input id="group-search" type="search" value={query} onChange={(e) => setQuery(e.target.value)} placeholder="그룹 이름" />
      <ul className="search-results" aria-live="polite">
        {found.map((g) => (
          <li key={g.groupId} data-group-id={g.groupId}>
            <span>
              {g.groupName} {g.secret && <span className="badge">비밀</span>}
            </span>
            {g.secret && (
              <>
                <label className="sr-only" htmlFor={`pw-${g.groupId}`}>{`${g.groupName} 비밀번호`}</label>
                <input
                  id={`pw-${g.groupId}`}
                  type="password"
                  placeholder="비밀번호"
                  value={passwords[g.groupId] ?? ''}
                  onChange={(e) => setPasswords({ ...passwords, [g.groupId]: e.target.value })}
                />
              </>
            )}
            <button
              type="button"
              onClick={() => join(() => post<Group>(`/api/v1/groups/${g.groupId}`, g.secret ? { password: passwords[g.groupId] ?? '' } : {}))}
            >
              가입
            </button>
          </li>
        ))}
        {q && found.length === 0 && <li>검색 결과가 없어요.</li>}
      </ul>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const c = code.trim().replace(/^.*\/invite\//, '');
          void join(() => post<Group>('/api/v1/groups/path', { path: c }));
        }}
      >
        <label htmlFor="invite-code">초대 코드 또는 링크</label>
        <div className="row">
          <input id="invite-code" value={code} onChange={(e) => setCode(e.target.value)} required />
          <button type="submit">코드로 가입</button>
        </div>
      </form>
    </section>
  );
}

export function Invite({ code }: { code: string }) {
  const preview = useLoad(() => get<Group>(`/api/v1/groups/path?path=${encodeURIComponent(code)}`), [code]);
  const [error, setError] = useState<string | null>(null);
  return (
    <section className="card" aria-labelledby="invite-title">
      <h1 id="invite-title">그룹 초대</h1>
      <Alert message={error ?? preview.error} />
      {preview.data && (
        <>
          <p>
            <strong>{preview.data.groupName}</strong> 그룹에 초대받았어요.
          </p>
          <button
            type="button"
            className="primary"
            onClick={async () => {
              try {
                const g = await post<Group>('/api/v1/groups/path', { path: code });
                navigate(`/groups/${g.groupId}`, true);
              } catch (e) {
                setError(errorMessage(e));
              }
            }}
          >
            가입하기
          </button>
        </>
      )}
      <p>
        <Link to="/">내 그룹으로</Link>
      </p>
    </section>
  );
}
