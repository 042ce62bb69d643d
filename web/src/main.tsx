import { StrictMode, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import './styles.css';
import { auth, get, post, type Member, errorMessage } from './api';
import { clock, syncClock } from './time';
import { Link, match, navigate, usePath } from './router';
import { Alert } from './components';
import { Login, KakaoRedirect } from './pages/Login';
import { Home, Invite } from './pages/Home';
import { Calendar } from './pages/Calendar';
import { Study } from './pages/Study';
import { MyPage } from './pages/MyPage';
import { Rankings } from './pages/Rankings';
import { FocusTimer } from './pages/Timer';

function useSignedIn() {
  const [signedIn, set] = useState(auth.signedIn());
  useEffect(() => {
    const off = auth.subscribe(() => set(auth.signedIn()));
    return () => {
      off();
    };
  }, []);
  return signedIn;
}

const NAV = [
  { to: '/', label: '그룹' },
  { to: '/me', label: '마이페이지' },
  { to: '/rankings', label: '랭킹' },
  { to: '/timer', label: '집중 타이머' },
];

function App() {
  const path = usePath();
  const signedIn = useSignedIn();
  const [me, setMe] = useState<Member | null>(null);
  const [ready, setReady] = useState(false);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    syncClock()
      .catch((e) => setError(errorMessage(e)))
      .finally(() => setReady(true));
  }, []);

  useEffect(() => {
    if (!signedIn) {
      setMe(null);
      return;
    }
    get<Member>('/api/v1/members')
      .then(setMe)
      .catch((e) => setError(errorMessage(e)));
    get<{ timeZone: string }>('/api/v1/members/settings')
      .then((s) => {
        clock.displayZone = s.timeZone;
      })
      .catch(() => undefined);
  }, [signedIn]);

  // A path the signed-out visitor asked for (an invite link) is kept for after login.
  useEffect(() => {
    if (!signedIn && !path.startsWith('/login') && !path.startsWith('/kakao_redirect')) {
      sessionStorage.setItem('ppodok.after', path);
      navigate('/login', true);
    }
  }, [signedIn, path]);

  if (!ready) return <p className="loading">불러오는 중…</p>;
  if (path === '/kakao_redirect') return <KakaoRedirect />;
  if (!signedIn) return <Login />;
  if (path === '/login') {
    navigate(sessionStorage.getItem('ppodok.after') || '/', true);
    return null;
  }

  let page: React.ReactNode;
  let m: Record<string, string> | null;
  if (path === '/') page = <Home me={me} />;
  else if ((m = match('/groups/:id', path))) page = <Calendar groupId={Number(m.id)} me={me} />;
  else if ((m = match('/invite/:code', path))) page = <Invite code={m.code} />;
  else if ((m = match('/study/:roomId', path))) return <Study roomId={Number(m.roomId)} me={me} />;
  else if (path === '/me') page = <MyPage />;
  else if (path === '/rankings') page = <Rankings />;
  else if (path === '/timer') page = <FocusTimer />;
  else page = <p>페이지를 찾을 수 없어요. <Link to="/">처음으로</Link></p>;

  return (
    <>
      <a className="skip" href="#main">본문으로 건너뛰기</a>
      <header className="topbar">
        <Link to="/" className="brand">뽀독뽀독</Link>
        <nav aria-label="주 메뉴">
          <ul>
            {NAV.map((n) => (
              <li key={n.to}>
                <Link to={n.to} aria-current={path === n.to ? 'page' : undefined}>
                  {n.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div className="who">
          {me && <span data-testid="me-name">{me.name}</span>}
          <button
            type="button"
            onClick={async () => {
              await post('/api/v1/members/logout').catch(() => undefined);
              auth.clear('로그아웃했어요.');
            }}
          >
            로그아웃
          </button>
        </div>
      </header>
      <main id="main">
        <Alert message={error} />
        {page}
      </main>
    </>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
