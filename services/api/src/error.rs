//! The API's one error type, mapped to the contract's status codes and `{code, message}` envelope.
//! Causes of internal errors are logged with the request id, never returned.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use ppodok_domain::validate::ValidationError;
use serde::Serialize;

pub const MSG_UNAUTHORIZED: &str = "인증이 필요해요.";
pub const MSG_FORBIDDEN: &str = "접근 권한이 없어요.";
pub const MSG_LOGIN_REQUIRED: &str = "로그인이 필요해요.";
pub const MSG_BAD_REQUEST: &str = "알 수 없는 오류가 발생했어요.";
pub const MSG_INTERNAL: &str = "서버에 문제가 생겼어요. 잠시 후 다시 시도해 주세요.";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A business rule said no (400 `fail` with the rule's message).
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// Anonymous, expired, revoked or withdrawn caller.
    #[error("unauthorized")]
    Unauthorized,
    #[error("forbidden")]
    Forbidden,
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// A provider we depend on (Kakao) failed or is unreachable.
    #[error("{0}")]
    Upstream(String),
    #[error("service unavailable")]
    Unavailable,
    /// A rate limit's budget is spent; retry after this many seconds.
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError::Internal(anyhow::Error::new(e))
    }
}

impl From<crate::cache::CalendarError> for ApiError {
    fn from(e: crate::cache::CalendarError) -> Self {
        match e {
            crate::cache::CalendarError::NoGroup(id) => ApiError::group_not_found(id),
            crate::cache::CalendarError::NotMember => ApiError::Forbidden,
            crate::cache::CalendarError::Store(e) => ApiError::Internal(e),
        }
    }
}

impl From<crate::attendance::AttendanceError> for ApiError {
    fn from(e: crate::attendance::AttendanceError) -> Self {
        use crate::attendance::AttendanceError;
        match e {
            AttendanceError::NotInRoom { member_id, room_id } => ApiError::BadRequest(format!(
                "사용자가 참여하고 있는 방이 아닙니다.memberId :{member_id} roomId :{room_id}"
            )),
            AttendanceError::NoRoom(room_id) => ApiError::room_not_found(room_id),
            AttendanceError::Db(db) => db.into(),
        }
    }
}

/// A stranger to a group is forbidden; a missing group is not found.
impl From<crate::membership::MembershipError> for ApiError {
    fn from(e: crate::membership::MembershipError) -> Self {
        match e {
            crate::membership::MembershipError::Stranger(_) => ApiError::Forbidden,
            crate::membership::MembershipError::NoGroup(id) => ApiError::group_not_found(id),
            crate::membership::MembershipError::Store(e) => e.into(),
        }
    }
}

impl From<crate::sessions::SessionError> for ApiError {
    fn from(e: crate::sessions::SessionError) -> Self {
        ApiError::Internal(anyhow::Error::new(e))
    }
}

impl From<crate::limits::LimitError> for ApiError {
    fn from(e: crate::limits::LimitError) -> Self {
        match e {
            crate::limits::LimitError::Limited { retry_after } => ApiError::TooManyRequests {
                // Whole seconds, rounded up: a client that waits that long is let through.
                retry_after_secs: retry_after.as_millis().div_ceil(1000).max(1) as u64,
            },
            crate::limits::LimitError::Unavailable => ApiError::Unavailable,
        }
    }
}

impl From<crate::passwords::PasswordError> for ApiError {
    fn from(e: crate::passwords::PasswordError) -> Self {
        match e {
            crate::passwords::PasswordError::Busy => ApiError::TooManyRequests {
                retry_after_secs: 1,
            },
            crate::passwords::PasswordError::Failed(m) => {
                ApiError::Internal(anyhow::anyhow!("password hashing: {m}"))
            }
        }
    }
}

impl From<sea_orm::TransactionError<ApiError>> for ApiError {
    fn from(e: sea_orm::TransactionError<ApiError>) -> Self {
        match e {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(api) => api,
        }
    }
}

#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

impl ApiError {
    pub fn group_not_found(id: i64) -> Self {
        Self::NotFound(format!("존재하지 않는 그룹입니다. groupId: {id}"))
    }
    pub fn room_not_found(room_id: i64) -> Self {
        Self::NotFound(format!("존재하지 않는 방 번호입니다. roomId: {room_id}"))
    }
    pub fn todo_not_found(id: i64) -> Self {
        Self::NotFound(format!("존재하지 않는 todo입니다. todoId: {id}"))
    }
    pub fn not_a_member(member_id: i64, group_id: i64) -> Self {
        Self::NotFound(format!(
            "사용자가 참여한 그룹의 id가 아닙니다. 사용자 id : {member_id} 그룹 id : {group_id}"
        ))
    }
    pub fn route_not_found() -> Self {
        Self::NotFound("존재하지 않는 경로예요.".into())
    }

    /// The message a client may see (internal causes are never included).
    pub fn public_message(&self) -> String {
        self.code_and_message().1
    }

    fn code_and_message(&self) -> (&str, String) {
        match self {
            ApiError::InvalidRefreshToken => ("INVALID REFRESH TOKEN", MSG_LOGIN_REQUIRED.into()),
            ApiError::Unauthorized => ("fail", MSG_UNAUTHORIZED.into()),
            ApiError::Forbidden => ("fail", MSG_FORBIDDEN.into()),
            ApiError::MethodNotAllowed => ("fail", "허용되지 않은 메서드예요.".into()),
            ApiError::PayloadTooLarge => ("fail", "요청 본문이 너무 커요.".into()),
            ApiError::Unavailable => ("fail", "서비스를 사용할 수 없어요.".into()),
            ApiError::TooManyRequests { .. } => (
                "fail",
                "요청이 너무 많아요. 잠시 후 다시 시도해 주세요.".into(),
            ),
            ApiError::Internal(_) => ("fail", MSG_INTERNAL.into()),
            ApiError::BadRequest(m) | ApiError::NotFound(m) | ApiError::Upstream(m) => {
                ("fail", m.clone())
            }
            ApiError::Validation(v) => ("fail", v.to_string()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Validation(_) | ApiError::InvalidRefreshToken => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            // The request id is on the current span (tracing-actix-web), so this line carries it.
            tracing::error!(error = format!("{cause:#}"), "internal error");
        }
        let (code, message) = self.code_and_message();
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::TooManyRequests { retry_after_secs } => {
                response.insert_header(("Retry-After", retry_after_secs.to_string()));
            }
            ApiError::Unavailable => {
                response.insert_header(("Retry-After", "1"));
            }
            _ => {}
        }
        response.json(ErrorBody {
            code,
            message: &message,
        })
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
