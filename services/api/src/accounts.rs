//! Accounts: sign-in (Kakao, development) opening a login session, refresh-token rotation and
//! logout, and withdrawal. Explicit
//! dependencies (the database, the session store, the token codec, the Kakao client, the event
//! sink, the calendar and video announcers); errors of their own, mapped to HTTP at the boundary.

use ppodok_domain::{validate, DEFAULT_GROUP_ID};
use ppodok_tokens::{MemberTokenCodec, TokenKind};
use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QuerySelect, Set, TransactionError, TransactionTrait,
};
use tokio::sync::Notify;

use crate::db::entities::{
    focus_timer, kakao_unlink_outbox, member, membership as membership_row, push_client, todo,
};
use crate::db::{is_unique_violation, now_utc};
use crate::events::{Event, Publisher};
use crate::kakao::{KakaoClient, KakaoError};
use crate::membership;
use crate::rooms::CalendarNews;
use crate::sessions::{Change, LiveView, Rotation, SessionError, SessionStore};
use crate::video::VideoSeats;

/// Why a sign-in failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Kakao refused the code, or could not be reached.
    #[error(transparent)]
    Kakao(#[from] KakaoError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Store(#[from] DbErr),
    /// A unique violation said the account exists, and then it did not.
    #[error("account vanished after a unique violation")]
    Vanished,
}

/// The token pair of a new login session.
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
}

/// Why a refresh was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Not a refresh token of ours, expired, of an ended session or of a withdrawn member, or
    /// already rotated (then the whole session is revoked).
    #[error("invalid refresh token")]
    Invalid,
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Store(#[from] DbErr),
}

/// Login sessions: signing in (find or create the account of a provider identity, open a session
/// for it), rotating refresh tokens, and ending sessions (announced to the other replicas).
pub struct Logins<'a> {
    pub db: &'a DatabaseConnection,
    pub sessions: &'a SessionStore,
    pub tokens: &'a MemberTokenCodec,
    pub events: &'a dyn Publisher,
}

struct NewAccount {
    provider: &'static str,
    provider_user_id: String,
    name: String,
    profile: Option<String>,
    email: Option<String>,
}

/// The name of an account whose Kakao nickname is missing or not a valid member name.
const FALLBACK_NAME: &str = "뽀독이";

impl Logins<'_> {
    /// Signs in with a Kakao authorisation code (already checked to be plausible), at `now_unix`.
    pub async fn with_kakao(
        &self,
        kakao: &KakaoClient,
        code: &str,
        now_unix: i64,
    ) -> Result<Tokens, LoginError> {
        let profile = kakao.profile_for_code(code).await?;
        let name = profile
            .nickname
            .as_deref()
            .and_then(|n| {
                validate::member_name(
                    &n.chars()
                        .take(validate::MEMBER_NAME_MAX)
                        .collect::<String>(),
                )
                .ok()
            })
            .unwrap_or_else(|| FALLBACK_NAME.to_owned());
        let member_id = self
            .find_or_create(NewAccount {
                provider: member::PROVIDER_KAKAO,
                provider_user_id: profile.id,
                name,
                profile: profile.profile_image_url.filter(|u| u.len() <= 1000),
                email: profile.email.filter(|e| e.len() <= 320),
            })
            .await?;
        self.open_session(member_id, now_unix).await
    }

    /// Development sign-in by a (valid) member name, which identifies the account.
    pub async fn as_dev(&self, name: String, now_unix: i64) -> Result<Tokens, LoginError> {
        let member_id = self
            .find_or_create(NewAccount {
                provider: member::PROVIDER_DEV,
                provider_user_id: name.clone(),
                name,
                profile: None,
                email: None,
            })
            .await?;
        self.open_session(member_id, now_unix).await
    }

    /// Rotates a refresh token at `now_unix`: the presented one dies, the returned pair is the
    /// one stored. Presenting a token that was already rotated revokes the whole session.
    pub async fn refresh(&self, presented: &str, now_unix: i64) -> Result<Tokens, RefreshError> {
        let claims = self
            .tokens
            .verify(presented, TokenKind::Refresh)
            .map_err(|_| RefreshError::Invalid)?;
        let live = member::Entity::find_by_id(claims.member_id)
            .one(self.db)
            .await?
            .is_some_and(|m| m.is_regular());
        if !live {
            self.end_session(&claims.sid).await?;
            return Err(RefreshError::Invalid);
        }
        let (access_token, _) =
            self.tokens
                .issue(claims.member_id, TokenKind::Access, &claims.sid, now_unix);
        let (refresh_token, next) =
            self.tokens
                .issue(claims.member_id, TokenKind::Refresh, &claims.sid, now_unix);
        match self
            .sessions
            .rotate(
                claims.member_id,
                &claims.sid,
                &claims.jti,
                &next.jti,
                self.tokens.refresh_ttl_secs(),
            )
            .await?
        {
            Rotation::Rotated => Ok(Tokens {
                access_token,
                refresh_token,
            }),
            Rotation::Reused { epoch } => {
                tracing::warn!(
                    member_id = claims.member_id,
                    "refresh token reuse; session revoked"
                );
                self.events
                    .emit(Event::RevokeSession {
                        sid: claims.sid.clone(),
                        epoch,
                    })
                    .await;
                Err(RefreshError::Invalid)
            }
            Rotation::Unknown => Err(RefreshError::Invalid),
        }
    }

    /// Ends a session here at once and on the other replicas through the bus (their session
    /// views also catch up from the database's auth epoch if the message is lost).
    pub async fn end_session(&self, sid: &str) -> Result<(), SessionError> {
        if let Some(epoch) = self.sessions.revoke(sid).await? {
            self.events
                .emit(Event::RevokeSession {
                    sid: sid.to_owned(),
                    epoch,
                })
                .await;
        }
        Ok(())
    }

    /// Opens a new session (one per login, so devices are independent) and returns its tokens.
    async fn open_session(&self, member_id: i64, now_unix: i64) -> Result<Tokens, LoginError> {
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let (access_token, _) = self
            .tokens
            .issue(member_id, TokenKind::Access, &sid, now_unix);
        let (refresh_token, refresh) =
            self.tokens
                .issue(member_id, TokenKind::Refresh, &sid, now_unix);
        self.sessions
            .open(
                member_id,
                &sid,
                &refresh.jti,
                self.tokens.refresh_ttl_secs(),
            )
            .await?;
        Ok(Tokens {
            access_token,
            refresh_token,
        })
    }

    /// The live account of a provider identity, or a new one joined to the default group.
    async fn find_or_create(&self, account: NewAccount) -> Result<i64, LoginError> {
        let find = || {
            member::Entity::find()
                .filter(member::Column::Provider.eq(account.provider))
                .filter(member::Column::ProviderUserId.eq(account.provider_user_id.clone()))
                .one(self.db)
        };
        if let Some(m) = find().await? {
            return Ok(m.id);
        }
        let now = now_utc();
        let created = self
            .db
            .transaction::<_, i64, DbErr>(|txn| {
                let row = member::ActiveModel {
                    name: Set(account.name.clone()),
                    profile: Set(account.profile.clone()),
                    email: Set(account.email.clone()),
                    provider: Set(account.provider.to_owned()),
                    provider_user_id: Set(Some(account.provider_user_id.clone())),
                    status: Set(member::STATUS_REGULAR.to_owned()),
                    created_at: Set(now),
                    updated_at: Set(now),
                    withdrawn_at: Set(None),
                    ..Default::default()
                };
                Box::pin(async move {
                    let m = row.insert(txn).await?;
                    membership::join(txn, DEFAULT_GROUP_ID, m.id).await?;
                    Ok(m.id)
                })
            })
            .await;
        match created {
            Ok(id) => Ok(id),
            // A concurrent first login of the same account won: use its row.
            Err(TransactionError::Transaction(e)) if is_unique_violation(&e) => {
                Ok(find().await?.ok_or(LoginError::Vanished)?.id)
            }
            Err(TransactionError::Connection(e) | TransactionError::Transaction(e)) => {
                Err(e.into())
            }
        }
    }
}

/// Why a withdrawal failed.
#[derive(Debug, thiserror::Error)]
pub enum WithdrawError {
    /// The member is not (or no longer) a regular member: a concurrent withdrawal won.
    #[error("not a regular member")]
    NotRegular,
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Store(#[from] DbErr),
}

impl From<TransactionError<WithdrawError>> for WithdrawError {
    fn from(e: TransactionError<WithdrawError>) -> Self {
        match e {
            TransactionError::Connection(e) => e.into(),
            TransactionError::Transaction(e) => e,
        }
    }
}

/// Withdrawing a member: one transaction, then the announcements.
pub struct Withdrawal<'a> {
    pub db: &'a DatabaseConnection,
    /// This process's session view (applied before the other replicas hear of it).
    pub sessions: &'a LiveView,
    pub events: &'a dyn Publisher,
    pub calendar: CalendarNews<'a>,
    pub video: VideoSeats<'a>,
    /// Wakes the Kakao unlink outbox worker after commit.
    pub unlink_wake: &'a Notify,
}

impl Withdrawal<'_> {
    /// Withdraws `me` in one transaction (memberships with the leave cascade, ranks, todos, push
    /// clients, the focus timer; personal data cleared; every session revoked) and queues the
    /// Kakao unlink in a durable outbox, delivered with retries after commit. Then: the session
    /// views and STOMP sessions of every replica, the calendars of the groups left, the video
    /// rooms the member was in.
    pub async fn withdraw(&self, me: &member::Model) -> Result<(), WithdrawError> {
        let member_id = me.id;
        let kakao_id = (me.provider == member::PROVIDER_KAKAO)
            .then(|| me.provider_user_id.clone())
            .flatten();
        let video_rooms = self.video.open_rooms_of(member_id, None).await;
        let (left_groups, epoch) = self
            .db
            .transaction::<_, (membership::LeaveEffects, i64), WithdrawError>(|txn| {
                Box::pin(async move {
                    // Lock the member row: a concurrent second withdrawal waits, then finds it
                    // withdrawn.
                    let current = member::Entity::find_by_id(member_id)
                        .lock_exclusive()
                        .one(txn)
                        .await?
                        .filter(member::Model::is_regular)
                        .ok_or(WithdrawError::NotRegular)?;
                    let group_ids: Vec<i64> = membership_row::Entity::find()
                        .select_only()
                        .column(membership_row::Column::GroupId)
                        .filter(membership_row::Column::MemberId.eq(member_id))
                        .into_tuple()
                        .all(txn)
                        .await?;
                    let effects = membership::leave(txn, member_id, &group_ids).await?;
                    todo::Entity::delete_many()
                        .filter(todo::Column::MemberId.eq(member_id))
                        .exec(txn)
                        .await?;
                    focus_timer::Entity::delete_by_id(member_id)
                        .exec(txn)
                        .await?;
                    push_client::Entity::delete_many()
                        .filter(push_client::Column::MemberId.eq(member_id))
                        .exec(txn)
                        .await?;
                    let now = now_utc();
                    member::Entity::update_many()
                        .col_expr(
                            member::Column::Status,
                            Expr::value(member::STATUS_WITHDRAWN),
                        )
                        .col_expr(
                            member::Column::ProviderUserId,
                            Expr::value(Option::<String>::None),
                        )
                        .col_expr(member::Column::Name, Expr::value("탈퇴한 회원"))
                        .col_expr(member::Column::Profile, Expr::value(Option::<String>::None))
                        .col_expr(member::Column::Email, Expr::value(Option::<String>::None))
                        .col_expr(member::Column::WithdrawnAt, Expr::value(Some(now)))
                        .col_expr(member::Column::UpdatedAt, Expr::value(now))
                        .filter(member::Column::Id.eq(current.id))
                        .exec(txn)
                        .await?;
                    if let Some(kakao_user_id) = kakao_id {
                        kakao_unlink_outbox::ActiveModel {
                            member_id: Set(member_id),
                            kakao_user_id: Set(kakao_user_id),
                            attempts: Set(0),
                            next_attempt_at: Set(now),
                            locked_until: Set(None),
                            last_error: Set(None),
                            created_at: Set(now),
                            ..Default::default()
                        }
                        .insert(txn)
                        .await?;
                    }
                    // Every session ends with the withdrawal, in its transaction.
                    let epoch = crate::sessions::revoke_member_in(txn, member_id).await?;
                    Ok((effects, epoch))
                })
            })
            .await?;
        self.sessions.apply(&Change::Member { member_id }, epoch);
        self.events
            .emit(Event::RevokeMember { member_id, epoch })
            .await;
        self.calendar.after_leaving(member_id, &left_groups).await;
        self.video.remove(member_id, video_rooms);
        self.unlink_wake.notify_one();
        Ok(())
    }
}
