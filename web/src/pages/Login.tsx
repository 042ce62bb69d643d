import { useEffect, useState } from 'react';
import { auth, errorMessage, post } from '../api';
import { Alert } from '../components';
import { navigate } from '../router';

// Kakao login appears when the build names the app's REST key (VITE_KAKAO_CLIENT_ID); the API
// exchanges the code (POST /members/login). Dev login (POST /members/dev-login) is the API's
// development switch (auth.dev_login), off in production.
const KAKAO_CLIENT_ID = import.meta.env.VITE_KAKAO_CLIENT_ID as string | undefined;

interface Pair {
  accessToken: string;
  refreshToken: string;
}

export function Login() {
  const [ended] = useState(() => auth.takeEndedReason());
  const [name, setName] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <main id="main" className="login">
      <h1>뽀독뽀독</h1>
      <p className="lead">함께 공부하는 온라인 스터디룸</p>
      <Alert message={ended} kind="info" />
      <Alert message={error} />
      <form
        className="card"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          try {
            auth.store(await post<Pair>('/api/v1/members/dev-login', { name: name.trim() }));
          } catch (err) {
            setError(errorMessage(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <h2>개발용 로그인</h2>
        <label htmlFor="dev-name">이름</label>
        <input id="dev-name" name="name" value={name} onChange={(e) => setName(e.target.value)} required maxLength={30} autoComplete="nickname" />
        <button type="submit" className="primary" disabled={busy || !name.trim()}>
          로그인
        </button>
      </form>
      {KAKAO_CLIENT_ID && (
        <a
          className="kakao button"
          href={`https://kauth.kakao.com/oauth/authorize?response_type=code&client_id=${encodeURIComponent(KAKAO_CLIENT_ID)}&redirect_uri=${encodeURIComponent(`${location.origin}/kakao_redirect`)}`}
        >
          카카오로 로그인
        </a>
      )}
    </main>
  );
}

export function KakaoRedirect() {
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const code = new URLSearchParams(location.search).get('code');
    if (!code) {
      setError('카카오 로그인이 취소되었어요.');
      return;
    }
    post<Pair>('/api/v1/members/login', { authCode: code })
      .then((pair) => {
        auth.store(pair);
        navigate('/', true);
      })
      .catch((e) => setError(errorMessage(e)));
  }, []);
  return (
    <main id="main" className="login">
      <h1>뽀독뽀독</h1>
      {error ? <Alert message={error} /> : <p>로그인하는 중…</p>}
      {error && <a href="/login">돌아가기</a>}
    </main>
  );
}
