//! Crediting study time: the one place where a studied interval becomes history, the all-time
//! group rank and the day/week/month ranking totals. Attendance and focus timers both call it.

use chrono::NaiveDateTime;
use ppodok_domain::periods::{period_credits, utc, DayBoundary};
use sea_orm::{
    sea_query::{Expr, OnConflict},
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};

use crate::db::entities::{rank, study_record, study_total};

/// An interval of study to credit, in UTC.
#[derive(Debug, Clone)]
pub struct Credit {
    pub member_id: i64,
    /// The group whose rankings it counts for (None: personal history only).
    pub group_id: Option<i64>,
    pub room_id: Option<i64>,
    pub source: &'static str,
    pub from: NaiveDateTime,
    pub to: NaiveDateTime,
}

/// Records the interval and adds it to rankings; returns the milliseconds credited (0 for an
/// empty or reversed interval). Callers run it inside their transaction and guarantee the
/// interval does not overlap one already credited for the same member and room.
pub async fn credit<C: ConnectionTrait>(
    db: &C,
    ranking_days: &DayBoundary,
    c: Credit,
) -> Result<i64, DbErr> {
    let ms = (c.to - c.from).num_milliseconds();
    if ms <= 0 {
        return Ok(0);
    }
    study_record::ActiveModel {
        member_id: Set(c.member_id),
        group_id: Set(c.group_id),
        room_id: Set(c.room_id),
        source: Set(c.source.to_owned()),
        started_at: Set(c.from),
        ended_at: Set(c.to),
        duration_ms: Set(ms),
        created_at: Set(crate::db::now_utc()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let Some(group_id) = c.group_id else {
        return Ok(ms);
    };
    // Only a current member ranks in the group (the rank row exists exactly while they are in it).
    let ranked = rank::Entity::update_many()
        .col_expr(
            rank::Column::DurationMs,
            Expr::col(rank::Column::DurationMs).add(ms),
        )
        .col_expr(rank::Column::UpdatedAt, Expr::value(crate::db::now_utc()))
        .filter(rank::Column::GroupId.eq(group_id))
        .filter(rank::Column::MemberId.eq(c.member_id))
        .exec(db)
        .await?
        .rows_affected;
    if ranked == 0 {
        return Ok(ms);
    }
    for (kind, period_start, part) in period_credits(ranking_days, utc(c.from), utc(c.to)) {
        study_total::Entity::insert(study_total::ActiveModel {
            group_id: Set(group_id),
            member_id: Set(c.member_id),
            period_kind: Set(kind.as_str().to_owned()),
            period_start: Set(period_start),
            duration_ms: Set(part),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::columns([
                study_total::Column::GroupId,
                study_total::Column::PeriodKind,
                study_total::Column::PeriodStart,
                study_total::Column::MemberId,
            ])
            .value(
                study_total::Column::DurationMs,
                Expr::col(study_total::Column::DurationMs).add(part),
            )
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    Ok(ms)
}
