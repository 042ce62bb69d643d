//! Devices: FCM registration tokens and Web Push subscriptions, several per member, keyed by the
//! SHA-256 of the token (or endpoint). Registering a device another account holds moves it here.

use chrono::NaiveDateTime;
use sea_orm::{
    sea_query::OnConflict, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};
use sha2::{Digest, Sha256};

use super::entities::push_reminder;
use super::sender::{KIND_FCM, KIND_WEBPUSH};
use crate::db::entities::push_client;

/// Longest Web Push endpoint accepted (browsers' are a few hundred characters).
pub const MAX_ENDPOINT_LEN: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("the endpoint must be an https URL of at most 1000 characters")]
    BadEndpoint,
    #[error("the subscription keys are not a P-256 public key and a 16-byte auth secret")]
    BadKeys,
    #[error(transparent)]
    Db(#[from] DbErr),
}

pub fn token_key(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Checks a subscription endpoint: an absolute https URL (http only when `allow_http`, for local
/// push services in tests), no credentials in it.
pub fn check_endpoint(endpoint: &str, allow_http: bool) -> Result<String, DeviceError> {
    let endpoint = endpoint.trim();
    if endpoint.is_empty() || endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(DeviceError::BadEndpoint);
    }
    let url = reqwest::Url::parse(endpoint).map_err(|_| DeviceError::BadEndpoint)?;
    let scheme_ok = url.scheme() == "https" || (allow_http && url.scheme() == "http");
    if !scheme_ok
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(DeviceError::BadEndpoint);
    }
    Ok(endpoint.to_owned())
}

/// Stores a device for `member_id` (moving it from another account if needed) and returns it.
pub async fn register<C: ConnectionTrait>(
    db: &C,
    member_id: i64,
    kind: &str,
    token: &str,
    keys: Option<(&str, &str)>,
    now: NaiveDateTime,
) -> Result<push_client::Model, DbErr> {
    debug_assert!(kind == KIND_FCM || kind == KIND_WEBPUSH);
    let key = token_key(token);
    push_client::Entity::insert(push_client::ActiveModel {
        member_id: Set(member_id),
        token: Set(token.to_owned()),
        token_key: Set(key.clone()),
        kind: Set(kind.to_owned()),
        p256dh: Set(keys.map(|k| k.0.to_owned())),
        auth_secret: Set(keys.map(|k| k.1.to_owned())),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::column(push_client::Column::TokenKey)
            .update_columns([
                push_client::Column::MemberId,
                push_client::Column::Kind,
                push_client::Column::P256dh,
                push_client::Column::AuthSecret,
                push_client::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    let row = push_client::Entity::find()
        .filter(push_client::Column::TokenKey.eq(key))
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("push client vanished after upsert".into()))?;
    // Reminders queued for the device's previous owner must not reach the new one.
    push_reminder::Entity::delete_many()
        .filter(push_reminder::Column::DeviceId.eq(row.id))
        .filter(push_reminder::Column::MemberId.ne(member_id))
        .filter(push_reminder::Column::State.eq(push_reminder::PENDING))
        .exec(db)
        .await?;
    Ok(row)
}

/// Removes one of my devices; false when I have no such device.
pub async fn unregister<C: ConnectionTrait>(
    db: &C,
    member_id: i64,
    kind: &str,
    token: &str,
) -> Result<bool, DbErr> {
    let gone = push_client::Entity::delete_many()
        .filter(push_client::Column::TokenKey.eq(token_key(token.trim())))
        .filter(push_client::Column::MemberId.eq(member_id))
        .filter(push_client::Column::Kind.eq(kind))
        .exec(db)
        .await?;
    Ok(gone.rows_affected > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked() {
        assert!(check_endpoint("https://push.example/abc", false).is_ok());
        assert!(check_endpoint("http://127.0.0.1:9/abc", false).is_err());
        assert!(check_endpoint("http://127.0.0.1:9/abc", true).is_ok());
        assert!(check_endpoint("https://u:p@push.example/abc", false).is_err());
        assert!(check_endpoint("javascript:alert(1)", true).is_err());
        assert!(check_endpoint(&format!("https://a.example/{}", "x".repeat(1000)), false).is_err());
    }
}
