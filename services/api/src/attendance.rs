//! Attendance: who is in a room, from two sources — the client (`POST/PATCH /rooms/histories`) and
//! the SFU (presence webhooks). A member is present while either source says so; time is credited
//! once per presence interval, clamped to the room window, so enter twice / exit twice, or the
//! client and the SFU reporting the same interval, never count a second twice.
//!
//! Credit needs evidence. Video (SFU joined, not left) is continuous evidence until the SFU says
//! the member left. A client presence alone is evidenced by its Enter, its Exit, and a live STOMP
//! session of the member, which records `member_liveness.seen_at` every
//! `rooms.presence_touch_millis` while the client answers (durable, so any replica's job sees it).
//! A presence left open when its room ends is credited up to its last evidence: the room's end
//! when the evidence reaches it, else the last evidence once `rooms.presence_lapse_secs` passed
//! without a newer one (an Enter followed by silence earns nothing past the Enter).

use chrono::{Duration, NaiveDateTime};
use chrono_tz::Tz;
use ppodok_domain::periods::DayBoundary;
use sea_orm::{
    sea_query::OnConflict, ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QuerySelect, Set, TransactionError,
    TransactionTrait,
};

use crate::calendar_body::local_in;
use crate::clock::Clock;
use crate::db::entities::{member_liveness, reservation, room, study_record};
use crate::events::Publisher;
use crate::study::{credit, Credit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Client,
    Sfu,
}

/// What attendance refuses, or a storage failure.
#[derive(Debug, thiserror::Error)]
pub enum AttendanceError {
    /// No reservation, or (for an exit) no open client presence.
    #[error("member {member_id} is not in room {room_id}")]
    NotInRoom { member_id: i64, room_id: i64 },
    /// No such room, or one of a group the member is not in.
    #[error("no room {0} for this member")]
    NoRoom(i64),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<TransactionError<AttendanceError>> for AttendanceError {
    fn from(e: TransactionError<AttendanceError>) -> Self {
        match e {
            TransactionError::Connection(db) => db.into(),
            TransactionError::Transaction(a) => a,
        }
    }
}

type Result<T> = std::result::Result<T, AttendanceError>;

/// The query for `member_id`'s reservation in `room_id` (one row at most).
fn reservation_in(room_id: i64, member_id: i64) -> sea_orm::Select<reservation::Entity> {
    reservation::Entity::find()
        .filter(reservation::Column::RoomId.eq(room_id))
        .filter(reservation::Column::MemberId.eq(member_id))
}

async fn locked_reservation(
    txn: &DatabaseTransaction,
    member_id: i64,
    room_id: i64,
) -> std::result::Result<Option<reservation::Model>, DbErr> {
    reservation_in(room_id, member_id)
        .lock_exclusive()
        .one(txn)
        .await
}

/// Stores the sources' new flags; when neither remains, ends presence at `at` and credits
/// `[present_since, min(at, end)]`. Returns the milliseconds credited.
async fn update_presence(
    days: DayBoundary,
    txn: &DatabaseTransaction,
    r: &reservation::Model,
    client: bool,
    sfu: bool,
    at: NaiveDateTime,
) -> Result<i64> {
    let mut row: reservation::ActiveModel = r.clone().into();
    row.client_present = Set(client);
    row.sfu_present = Set(sfu);
    let mut credited = 0;
    if !client && !sfu {
        if let Some(since) = r.present_since {
            credited = credit(
                txn,
                &days,
                Credit {
                    member_id: r.member_id,
                    group_id: Some(r.group_id),
                    room_id: Some(r.room_id),
                    source: study_record::SOURCE_ROOM,
                    from: since,
                    to: at.min(r.end_at),
                },
            )
            .await?;
            row.present_since = Set(None);
            row.credited_ms = Set(r.credited_ms + credited);
        }
    }
    row.update(txn).await?;
    Ok(credited)
}

/// Where an open presence ends, judged at `now`: `Some(t)` closes it at `t`, `None` waits for
/// evidence that may still come. `bound` is the latest it may be credited to (the room's end, or
/// when the SFU finished the room); `seen` is the member's last STOMP liveness.
pub fn close_point(
    r: &reservation::Model,
    seen: Option<NaiveDateTime>,
    bound: NaiveDateTime,
    now: NaiveDateTime,
    lapse: Duration,
) -> Option<NaiveDateTime> {
    let since = r.present_since?;
    if r.sfu_present {
        // On video and never reported gone: continuous evidence up to the bound.
        return Some(bound);
    }
    let evidence = seen.map_or(since, |s| s.max(since));
    if evidence >= bound {
        Some(bound)
    } else if now < evidence + lapse {
        None
    } else {
        Some(evidence)
    }
}

/// Records that a live session of `member_id` was seen at `at` (one upsert; callers bound the rate).
pub async fn record_liveness(
    db: &DatabaseConnection,
    member_id: i64,
    at: NaiveDateTime,
) -> std::result::Result<(), DbErr> {
    member_liveness::Entity::insert(member_liveness::ActiveModel {
        member_id: Set(member_id),
        seen_at: Set(at),
    })
    .on_conflict(
        OnConflict::column(member_liveness::Column::MemberId)
            .update_column(member_liveness::Column::SeenAt)
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

async fn seen_at<C: sea_orm::ConnectionTrait>(
    db: &C,
    member_id: i64,
) -> std::result::Result<Option<NaiveDateTime>, DbErr> {
    Ok(member_liveness::Entity::find_by_id(member_id)
        .one(db)
        .await?
        .map(|l| l.seen_at))
}

/// What a client exit did.
pub struct Exited {
    pub entered_at: Option<NaiveDateTime>,
    pub exited_at: NaiveDateTime,
    pub credited_ms: i64,
}

/// Attendance over a database: explicit dependencies (connection, the ranking days credits count
/// in, and the evidence lapse); every operation is its own transaction.
pub struct Attendance<'a> {
    db: &'a DatabaseConnection,
    days: DayBoundary,
    lapse: Duration,
}

impl<'a> Attendance<'a> {
    pub fn new(db: &'a DatabaseConnection, days: DayBoundary, lapse: Duration) -> Self {
        Self { db, days, lapse }
    }

    /// A source reports the member present from `at`. Returns the (clamped) entry time, or None
    /// when the room is over. Reporting presence twice changes nothing.
    pub async fn enter(
        &self,
        member_id: i64,
        room_id: i64,
        source: Source,
        at: NaiveDateTime,
    ) -> Result<Option<NaiveDateTime>> {
        Ok(self
            .db
            .transaction::<_, Option<NaiveDateTime>, AttendanceError>(|txn| {
                Box::pin(async move {
                    let r = locked_reservation(txn, member_id, room_id)
                        .await?
                        .ok_or(AttendanceError::NotInRoom { member_id, room_id })?;
                    if at >= r.end_at {
                        return Ok(None);
                    }
                    let entered = at.max(r.start_at);
                    let mut row: reservation::ActiveModel = r.clone().into();
                    match source {
                        Source::Client if !r.client_present => {
                            row.client_present = Set(true);
                            row.client_entered_at = Set(Some(entered));
                        }
                        Source::Sfu if !r.sfu_present => row.sfu_present = Set(true),
                        _ => return Ok(Some(r.client_entered_at.unwrap_or(entered))),
                    }
                    if r.present_since.is_none() {
                        row.present_since = Set(Some(entered));
                    }
                    row.update(txn).await?;
                    Ok(Some(entered))
                })
            })
            .await?)
    }

    /// The client says the member left at `at` (itself evidence of presence until then).
    /// `NotInRoom` when the client had not entered.
    pub async fn client_exit(
        &self,
        member_id: i64,
        room_id: i64,
        at: NaiveDateTime,
    ) -> Result<Exited> {
        let days = self.days;
        Ok(self
            .db
            .transaction::<_, Exited, AttendanceError>(|txn| {
                Box::pin(async move {
                    let r = locked_reservation(txn, member_id, room_id)
                        .await?
                        .filter(|r| r.client_present)
                        .ok_or(AttendanceError::NotInRoom { member_id, room_id })?;
                    let credited_ms =
                        update_presence(days, txn, &r, false, r.sfu_present, at).await?;
                    Ok(Exited {
                        entered_at: r.client_entered_at,
                        exited_at: at.min(r.end_at),
                        credited_ms,
                    })
                })
            })
            .await?)
    }

    /// The SFU says the member vanished from the room's video at `at`: every source of presence
    /// ends (a client that never says goodbye is closed too). Unknown reservations are ignored.
    pub async fn sfu_left(&self, member_id: i64, room_id: i64, at: NaiveDateTime) -> Result<i64> {
        let days = self.days;
        Ok(self
            .db
            .transaction::<_, i64, AttendanceError>(|txn| {
                Box::pin(async move {
                    let Some(r) = locked_reservation(txn, member_id, room_id).await? else {
                        return Ok(0);
                    };
                    if !r.sfu_present && !r.client_present {
                        return Ok(0);
                    }
                    update_presence(days, txn, &r, false, false, at).await
                })
            })
            .await?)
    }

    /// Closes presence left open in rooms that have ended by `now`, or in one room
    /// (`room_finished` at `now`), each at its last evidence (see the module's rule). A presence
    /// whose evidence may still be refreshed is left for a later run. Returns how many closed.
    pub async fn close_dangling(&self, room_id: Option<i64>, now: NaiveDateTime) -> Result<u64> {
        let mut query =
            reservation::Entity::find().filter(reservation::Column::PresentSince.is_not_null());
        query = match room_id {
            Some(id) => query.filter(reservation::Column::RoomId.eq(id)),
            None => query.filter(reservation::Column::EndAt.lte(now)),
        };
        let open = query.all(self.db).await?;
        let (days, lapse) = (self.days, self.lapse);
        let mut closed = 0;
        for r in open {
            // Each close is its own small transaction: a crash midway leaves the rest for the
            // next run. The evidence is read under the reservation's lock.
            closed += self
                .db
                .transaction::<_, u64, AttendanceError>(|txn| {
                    Box::pin(async move {
                        let Some(r) = locked_reservation(txn, r.member_id, r.room_id).await? else {
                            return Ok(0);
                        };
                        let seen = seen_at(txn, r.member_id).await?;
                        let Some(at) = close_point(&r, seen, now.min(r.end_at), now, lapse) else {
                            return Ok(0);
                        };
                        update_presence(days, txn, &r, false, false, at).await?;
                        Ok(1)
                    })
                })
                .await?;
        }
        Ok(closed)
    }
}

/// A room of one of my groups, or [`AttendanceError::NoRoom`]: a room of a group I am not in
/// answers exactly like a missing one, so outsiders cannot probe which rooms exist.
pub async fn find_room<C: ConnectionTrait>(
    db: &C,
    room_id: i64,
    member_id: i64,
) -> Result<room::Model> {
    let room = room::Entity::find_by_id(room_id).one(db).await?;
    match room {
        Some(r)
            if crate::membership::membership_of(db, r.group_id, member_id)
                .await?
                .is_some() =>
        {
            Ok(r)
        }
        _ => Err(AttendanceError::NoRoom(room_id)),
    }
}

/// My reservation in a room, if any.
pub async fn reservation_of<C: ConnectionTrait>(
    db: &C,
    room_id: i64,
    member_id: i64,
) -> std::result::Result<Option<reservation::Model>, DbErr> {
    reservation_in(room_id, member_id).one(db).await
}

/// Where presence changes are announced: the group's presence topic (never the calendar topic),
/// stamped with the clock in the service zone.
pub struct PresenceNews<'a> {
    pub events: &'a dyn Publisher,
    pub zone: Tz,
    pub clock: &'a Clock,
}

impl PresenceNews<'_> {
    pub async fn announce(
        &self,
        group_id: i64,
        member_id: i64,
        room_id: i64,
        source: Source,
        present: bool,
    ) {
        let body = serde_json::json!({
            "memberId": member_id,
            "roomId": room_id,
            "source": match source { Source::Client => "client", Source::Sfu => "sfu" },
            "present": present,
            "serverTime": local_in(self.zone, self.clock.now_naive()),
        });
        crate::events::publish(self.events, format!("/topic/{group_id}/presence"), &body).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(minute: i64, sfu: bool) -> (reservation::Model, NaiveDateTime) {
        let start = chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .unwrap()
            .naive_utc();
        let at = |m: i64| start + Duration::minutes(m);
        let r = reservation::Model {
            id: 1,
            room_id: 1,
            member_id: 1,
            group_id: 1,
            start_at: start,
            end_at: at(25),
            client_present: true,
            client_entered_at: Some(at(minute)),
            sfu_present: sfu,
            present_since: Some(at(minute)),
            credited_ms: 0,
            created_at: start,
        };
        (r, start)
    }

    #[test]
    fn a_presence_ends_at_its_last_evidence() {
        let lapse = Duration::seconds(90);
        let (r, start) = open(5, false);
        let at = |m: i64| start + Duration::minutes(m);
        let end = r.end_at;
        // Enter, then silence: the Enter itself.
        assert_eq!(close_point(&r, None, end, at(31), lapse), Some(at(5)));
        // A session seen before the Enter adds nothing; one seen at 12 is evidence until 12.
        assert_eq!(
            close_point(&r, Some(at(2)), end, at(31), lapse),
            Some(at(5))
        );
        assert_eq!(
            close_point(&r, Some(at(12)), end, at(31), lapse),
            Some(at(12))
        );
        // Evidence at (or past) the end: the whole room.
        assert_eq!(close_point(&r, Some(at(26)), end, at(31), lapse), Some(end));
        // Recent evidence is not final yet.
        assert_eq!(close_point(&r, Some(at(24)), end, at(25), lapse), None);
        // On video and never reported gone: continuous evidence.
        let (video, _) = open(5, true);
        assert_eq!(close_point(&video, None, end, at(31), lapse), Some(end));
        // Nothing open: nothing to close.
        let closed = reservation::Model {
            present_since: None,
            ..r
        };
        assert_eq!(close_point(&closed, None, end, at(31), lapse), None);
    }
}
