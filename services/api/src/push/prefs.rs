//! A member's reminder settings; no stored row means the defaults.

use chrono::NaiveDateTime;
use sea_orm::{
    sea_query::OnConflict, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};

use super::entities::push_setting;

pub const DEFAULT_MINUTES_BEFORE: i32 = 5;
pub const MIN_MINUTES_BEFORE: i32 = 1;
/// Also how far ahead the queue job looks for bookings.
pub const MAX_MINUTES_BEFORE: i32 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReminderPrefs {
    pub enabled: bool,
    pub minutes_before: i32,
    pub at_start: bool,
}

impl Default for ReminderPrefs {
    fn default() -> Self {
        Self {
            enabled: true,
            minutes_before: DEFAULT_MINUTES_BEFORE,
            at_start: false,
        }
    }
}

impl From<push_setting::Model> for ReminderPrefs {
    fn from(m: push_setting::Model) -> Self {
        Self {
            enabled: m.enabled,
            minutes_before: m
                .minutes_before
                .clamp(MIN_MINUTES_BEFORE, MAX_MINUTES_BEFORE),
            at_start: m.at_start,
        }
    }
}

/// A partial change; `None` keeps the current value.
#[derive(Debug, Default, Clone, Copy)]
pub struct PrefsChange {
    pub enabled: Option<bool>,
    pub minutes_before: Option<i32>,
    pub at_start: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum PrefsError {
    #[error("minutes before must be within 1..=60")]
    MinutesOutOfRange,
    #[error(transparent)]
    Db(#[from] DbErr),
}

pub async fn get<C: ConnectionTrait>(db: &C, member_id: i64) -> Result<ReminderPrefs, DbErr> {
    Ok(push_setting::Entity::find_by_id(member_id)
        .one(db)
        .await?
        .map(ReminderPrefs::from)
        .unwrap_or_default())
}

/// The settings of several members (defaults for those without a row).
pub async fn of_members<C: ConnectionTrait>(
    db: &C,
    member_ids: &[i64],
) -> Result<std::collections::HashMap<i64, ReminderPrefs>, DbErr> {
    let mut out = std::collections::HashMap::with_capacity(member_ids.len());
    for chunk in member_ids.chunks(500) {
        for row in push_setting::Entity::find()
            .filter(push_setting::Column::MemberId.is_in(chunk.to_vec()))
            .all(db)
            .await?
        {
            out.insert(row.member_id, row.into());
        }
    }
    Ok(out)
}

pub async fn update<C: ConnectionTrait>(
    db: &C,
    member_id: i64,
    change: PrefsChange,
    now: NaiveDateTime,
) -> Result<ReminderPrefs, PrefsError> {
    if let Some(m) = change.minutes_before {
        if !(MIN_MINUTES_BEFORE..=MAX_MINUTES_BEFORE).contains(&m) {
            return Err(PrefsError::MinutesOutOfRange);
        }
    }
    let current = get(db, member_id).await?;
    let next = ReminderPrefs {
        enabled: change.enabled.unwrap_or(current.enabled),
        minutes_before: change.minutes_before.unwrap_or(current.minutes_before),
        at_start: change.at_start.unwrap_or(current.at_start),
    };
    push_setting::Entity::insert(push_setting::ActiveModel {
        member_id: Set(member_id),
        enabled: Set(next.enabled),
        minutes_before: Set(next.minutes_before),
        at_start: Set(next.at_start),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(push_setting::Column::MemberId)
            .update_columns([
                push_setting::Column::Enabled,
                push_setting::Column::MinutesBefore,
                push_setting::Column::AtStart,
                push_setting::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(next)
}
