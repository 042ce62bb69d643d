//! The contract's success envelope: `{"data": …, "message": …, "code": …}`.

use actix_web::{http::StatusCode, HttpResponse};
use serde::Serialize;

#[derive(Serialize)]
pub struct Envelope<'a, T: Serialize> {
    pub data: T,
    pub message: &'a str,
    pub code: &'a str,
}

fn respond<T: Serialize>(status: StatusCode, data: T, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(Envelope {
        data,
        message,
        code,
    })
}

/// 200 `success` / `성공`.
pub fn ok<T: Serialize>(data: T) -> HttpResponse {
    respond(StatusCode::OK, data, "success", "성공")
}

/// 201 `resource.created` / `새로 생성되었습니다.`
pub fn created<T: Serialize>(data: T) -> HttpResponse {
    respond(
        StatusCode::CREATED,
        data,
        "resource.created",
        "새로 생성되었습니다.",
    )
}

/// 201 with code `success` (the contract's token refresh).
pub fn created_success<T: Serialize>(data: T) -> HttpResponse {
    respond(StatusCode::CREATED, data, "success", "성공")
}

/// 200 `resource.deleted` / `삭제되었습니다.` with `data: null`.
pub fn deleted() -> HttpResponse {
    respond(StatusCode::OK, (), "resource.deleted", "삭제되었습니다.")
}
