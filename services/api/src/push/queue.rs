//! Turns due bookings into outbox rows. Run by the leased `queue_reminders` job (one replica per
//! period); inserting a row that exists is a no-op, so a period run twice queues nothing twice.

use std::collections::HashMap;

use chrono::{Duration, NaiveDateTime};
use sea_orm::{
    sea_query::OnConflict, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QuerySelect, Set,
};

use super::entities::push_reminder::{self, KIND_BEFORE, KIND_START, PENDING, TARGET_STOMP};
use super::prefs::{self, MAX_MINUTES_BEFORE};
use crate::db::entities::{push_client, reservation};

/// A reminder due now for a booking: `(kind, due_at)`, if any. A `before` reminder is due from
/// `start − minutes` until the start; an `at start` one from the start for `grace`.
pub fn due_kinds(
    prefs: &prefs::ReminderPrefs,
    start: NaiveDateTime,
    now: NaiveDateTime,
    grace: Duration,
) -> Vec<(&'static str, NaiveDateTime)> {
    let mut out = Vec::new();
    if !prefs.enabled {
        return out;
    }
    let before = start - Duration::minutes(prefs.minutes_before as i64);
    if before <= now && now < start {
        out.push((KIND_BEFORE, before));
    }
    if prefs.at_start && start <= now && now < start + grace {
        out.push((KIND_START, start));
    }
    out
}

/// Queues every reminder due at `now`; returns how many rows were offered (existing ones included).
pub async fn queue_due(
    db: &DatabaseConnection,
    now: NaiveDateTime,
    device_kinds: &[&str],
    grace: Duration,
) -> Result<usize, DbErr> {
    let bookings = reservation::Entity::find()
        .filter(reservation::Column::StartAt.gt(now - grace))
        .filter(
            reservation::Column::StartAt.lte(now + Duration::minutes(MAX_MINUTES_BEFORE as i64)),
        )
        .all(db)
        .await?;
    if bookings.is_empty() {
        return Ok(0);
    }
    let mut members: Vec<i64> = bookings.iter().map(|b| b.member_id).collect();
    members.sort_unstable();
    members.dedup();
    let settings = prefs::of_members(db, &members).await?;
    let mut devices: HashMap<i64, Vec<i64>> = HashMap::new();
    if !device_kinds.is_empty() {
        for chunk in members.chunks(500) {
            let rows: Vec<(i64, i64)> = push_client::Entity::find()
                .select_only()
                .column(push_client::Column::Id)
                .column(push_client::Column::MemberId)
                .filter(push_client::Column::MemberId.is_in(chunk.to_vec()))
                .filter(push_client::Column::Kind.is_in(device_kinds.iter().copied()))
                .into_tuple()
                .all(db)
                .await?;
            for (id, member) in rows {
                devices.entry(member).or_default().push(id);
            }
        }
    }
    let mut rows = Vec::new();
    for b in &bookings {
        let p = settings.get(&b.member_id).copied().unwrap_or_default();
        for (kind, due_at) in due_kinds(&p, b.start_at, now, grace) {
            let targets = devices
                .get(&b.member_id)
                .into_iter()
                .flatten()
                .map(|d| (format!("d{d}"), Some(*d)))
                .chain(std::iter::once((TARGET_STOMP.to_owned(), None)));
            for (target, device_id) in targets {
                rows.push(push_reminder::ActiveModel {
                    reservation_id: Set(b.id),
                    target: Set(target),
                    device_id: Set(device_id),
                    member_id: Set(b.member_id),
                    room_id: Set(b.room_id),
                    group_id: Set(b.group_id),
                    kind: Set(kind.to_owned()),
                    start_at: Set(b.start_at),
                    due_at: Set(due_at),
                    state: Set(PENDING.to_owned()),
                    attempts: Set(0),
                    next_attempt_at: Set(now),
                    lease_until: Set(None),
                    attempt_id: Set(None),
                    last_error: Set(None),
                    created_at: Set(now),
                    sent_at: Set(None),
                    ..Default::default()
                });
            }
        }
    }
    let offered = rows.len();
    for chunk in rows.chunks(200) {
        push_reminder::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    push_reminder::Column::ReservationId,
                    push_reminder::Column::Kind,
                    push_reminder::Column::Target,
                ])
                // MySQL has no DO NOTHING: `ON DUPLICATE KEY UPDATE reservation_id = reservation_id`.
                .do_nothing_on([push_reminder::Column::ReservationId])
                .to_owned(),
            )
            .do_nothing()
            .exec_without_returning(db)
            .await?;
    }
    Ok(offered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 3, 1)
            .unwrap()
            .and_hms_opt(h, m, 0)
            .unwrap()
    }

    #[test]
    fn due_windows() {
        let p = prefs::ReminderPrefs::default();
        let g = Duration::seconds(60);
        assert!(due_kinds(&p, at(10, 0), at(9, 54), g).is_empty());
        assert_eq!(
            due_kinds(&p, at(10, 0), at(9, 55), g),
            vec![(KIND_BEFORE, at(9, 55))]
        );
        assert!(
            due_kinds(&p, at(10, 0), at(10, 0), g).is_empty(),
            "started: not late"
        );
        let both = prefs::ReminderPrefs {
            at_start: true,
            ..p
        };
        assert_eq!(
            due_kinds(&both, at(10, 0), at(10, 0), g),
            vec![(KIND_START, at(10, 0))]
        );
        assert!(due_kinds(&both, at(10, 0), at(10, 1), g).is_empty());
        let off = prefs::ReminderPrefs {
            enabled: false,
            ..both
        };
        assert!(due_kinds(&off, at(10, 0), at(9, 58), g).is_empty());
    }
}
