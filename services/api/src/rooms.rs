//! Booking operations, shared by the HTTP endpoints and (later) STOMP: explicit and idempotent,
//! protected by unique constraints, serialised per group by a row lock on the group (taken first,
//! always, so booking, cancelling and leaving can never deadlock each other). Explicit dependencies
//! (the database, the slot grid, zone and clock, the calendar announcer); errors of their own,
//! mapped to HTTP and STOMP at the boundary, which also applies the booking rate limit.

use chrono::{Duration, NaiveDateTime};
use chrono_tz::Tz;
use ppodok_domain::schedule::SlotGrid;
use ppodok_domain::time::local_to_utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QuerySelect, Set, TransactionError, TransactionTrait,
};

pub use crate::attendance::reservation_of;
use crate::calendar::{self, RoomView};
use crate::calendar_body::room_response_at;
use crate::clock::Clock;
use crate::db::entities::{reservation, room, study_group};
use crate::db::is_unique_violation;
use crate::events::{self, Event, Publisher};
use crate::group_view::GroupView;
pub use crate::membership::require_member;
use crate::membership::MembershipError;
use crate::views::tombstone_at;

pub const MSG_BAD_TIME: &str = "유효하지 않은 요청 시간입니다.";
pub const MSG_STARTED: &str = "이미 시작된 공부방은 예약하거나 취소할 수 없어요.";

/// Why a booking or cancellation was refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    /// Not a slot start of the grid, or not a time of the zone.
    #[error("not a slot start")]
    BadTime,
    /// The room has started (or the slot is past).
    #[error("the room has started")]
    Started,
    /// Further ahead than the booking horizon (in days).
    #[error("beyond the booking horizon of {0} days")]
    BeyondHorizon(i64),
    /// No such group.
    #[error("no group {0}")]
    NoGroup(i64),
    /// The member is not in the group.
    #[error("not a member")]
    Stranger,
    /// The booked room vanished before it could be read back.
    #[error("booked room {0} vanished")]
    Vanished(i64),
    #[error(transparent)]
    Store(#[from] DbErr),
}

impl From<MembershipError> for BookingError {
    fn from(e: MembershipError) -> Self {
        match e {
            MembershipError::Stranger(_) => BookingError::Stranger,
            MembershipError::NoGroup(id) => BookingError::NoGroup(id),
            MembershipError::Store(e) => e.into(),
        }
    }
}

impl From<TransactionError<BookingError>> for BookingError {
    fn from(e: TransactionError<BookingError>) -> Self {
        match e {
            TransactionError::Connection(e) => e.into(),
            TransactionError::Transaction(e) => e,
        }
    }
}

/// Outcome of a booking.
pub struct Booked {
    pub room: RoomView,
    /// False when I was booked already (a retried request).
    pub newly_booked: bool,
}

/// Outcome of a cancellation.
pub enum Cancelled {
    /// My reservation is gone; the room lives on with others in it.
    StillOpen(RoomView),
    /// My reservation was the last: the room is gone.
    Removed {
        room_id: i64,
        group_id: i64,
        start_at: NaiveDateTime,
    },
    /// I had no reservation there (a retried cancel); the room as it is, if it exists.
    NotBooked(Option<RoomView>),
}

/// Booking and cancelling: the calendar announcer (with the database, zone, grid and clock it
/// renders with) and the booking horizon.
pub struct Bookings<'a> {
    pub calendar: CalendarNews<'a>,
    /// Rooms are booked at most this many days ahead.
    pub horizon_days: i64,
}

async fn lock_group(txn: &DatabaseTransaction, group_id: i64) -> Result<bool, DbErr> {
    Ok(study_group::Entity::find_by_id(group_id)
        .lock_exclusive()
        .one(txn)
        .await?
        .is_some())
}

impl Bookings<'_> {
    /// Validates a requested slot start (service-zone local time) and returns it in UTC.
    pub fn slot_start_utc(
        &self,
        start_local: NaiveDateTime,
    ) -> Result<NaiveDateTime, BookingError> {
        let news = &self.calendar;
        if !news.grid.is_slot_start(start_local) {
            return Err(BookingError::BadTime);
        }
        let start = local_to_utc(start_local, news.zone)
            .ok_or(BookingError::BadTime)?
            .naive_utc();
        let now = news.clock.now_naive();
        if start <= now {
            return Err(BookingError::Started);
        }
        let horizon = self.horizon_days;
        if start > now + Duration::days(horizon) {
            return Err(BookingError::BeyondHorizon(horizon));
        }
        Ok(start)
    }

    /// Books `member_id` into the slot of `group_id` starting at `start` (UTC), creating the room
    /// when the slot is empty. Booking the same slot again changes nothing.
    pub async fn book(
        &self,
        member_id: i64,
        group_id: i64,
        start: NaiveDateTime,
    ) -> Result<Booked, BookingError> {
        let db = self.calendar.db;
        require_member(db, group_id, member_id).await?;
        let end = self.calendar.grid.room_end(start);
        let (room_id, newly_booked) = db
            .transaction::<_, (i64, bool), BookingError>(|txn| {
                Box::pin(async move {
                    if !lock_group(txn, group_id).await? {
                        return Err(BookingError::NoGroup(group_id));
                    }
                    // Checked again under the group lock: a leave that committed meanwhile wins.
                    if crate::membership::membership_of(txn, group_id, member_id)
                        .await?
                        .is_none()
                    {
                        return Err(BookingError::Stranger);
                    }
                    let existing = room::Entity::find()
                        .filter(room::Column::GroupId.eq(group_id))
                        .filter(room::Column::StartAt.eq(start))
                        .one(txn)
                        .await?;
                    let room_id = match existing {
                        Some(r) => r.id,
                        None => {
                            room::ActiveModel {
                                group_id: Set(group_id),
                                start_at: Set(start),
                                end_at: Set(end),
                                created_by: Set(Some(member_id)),
                                created_at: Set(crate::db::now_utc()),
                                ..Default::default()
                            }
                            .insert(txn)
                            .await?
                            .id
                        }
                    };
                    let inserted = reservation::ActiveModel {
                        room_id: Set(room_id),
                        member_id: Set(member_id),
                        group_id: Set(group_id),
                        start_at: Set(start),
                        end_at: Set(end),
                        client_present: Set(false),
                        client_entered_at: Set(None),
                        sfu_present: Set(false),
                        present_since: Set(None),
                        credited_ms: Set(0),
                        created_at: Set(crate::db::now_utc()),
                        ..Default::default()
                    }
                    .insert(txn)
                    .await;
                    match inserted {
                        Ok(_) => {
                            crate::cache::bump_versions(txn, &[group_id]).await?;
                            Ok((room_id, true))
                        }
                        Err(e) if is_unique_violation(&e) => Ok((room_id, false)),
                        Err(e) => Err(e.into()),
                    }
                })
            })
            .await?;
        if newly_booked {
            self.calendar.changed(&[group_id]).await;
        }
        let room = calendar::room_view(db, room_id)
            .await?
            .ok_or(BookingError::Vanished(room_id))?;
        if newly_booked {
            self.calendar.room(&room).await;
        }
        Ok(Booked { room, newly_booked })
    }

    /// Cancels my reservation in `room_id`; the room goes with its last reservation. Idempotent.
    pub async fn cancel(&self, member_id: i64, room_id: i64) -> Result<Cancelled, BookingError> {
        let db = self.calendar.db;
        let Some(found) = room::Entity::find_by_id(room_id).one(db).await? else {
            return Ok(Cancelled::NotBooked(None));
        };
        // A room of a group I am not in answers like a missing one (nothing to cancel, data null).
        if crate::membership::membership_of(db, found.group_id, member_id)
            .await?
            .is_none()
        {
            return Ok(Cancelled::NotBooked(None));
        }
        let now = self.calendar.clock.now_naive();
        let group_id = found.group_id;
        let outcome = db
            .transaction::<_, Option<Cancelled>, BookingError>(|txn| {
                Box::pin(async move {
                    lock_group(txn, group_id).await?;
                    let Some(room) = room::Entity::find_by_id(room_id).one(txn).await? else {
                        return Ok(Some(Cancelled::NotBooked(None)));
                    };
                    if reservation_of(txn, room_id, member_id).await?.is_none() {
                        return Ok(None);
                    }
                    if room.start_at <= now {
                        return Err(BookingError::Started);
                    }
                    reservation::Entity::delete_many()
                        .filter(reservation::Column::RoomId.eq(room_id))
                        .filter(reservation::Column::MemberId.eq(member_id))
                        .exec(txn)
                        .await?;
                    crate::cache::bump_versions(txn, &[group_id]).await?;
                    let left = reservation::Entity::find()
                        .filter(reservation::Column::RoomId.eq(room_id))
                        .count(txn)
                        .await?;
                    if left == 0 {
                        room::Entity::delete_by_id(room_id).exec(txn).await?;
                        return Ok(Some(Cancelled::Removed {
                            room_id,
                            group_id,
                            start_at: room.start_at,
                        }));
                    }
                    Ok(Some(Cancelled::StillOpen(RoomView {
                        room_id,
                        group_id,
                        start_at: room.start_at,
                        end_at: room.end_at,
                        member_ids: Vec::new(),
                        profiles: Vec::new(),
                    })))
                })
            })
            .await?;
        if matches!(
            outcome,
            Some(Cancelled::Removed { .. } | Cancelled::StillOpen(_))
        ) {
            self.calendar.changed(&[group_id]).await;
        }
        match outcome {
            None => Ok(Cancelled::NotBooked(
                calendar::room_view(db, room_id).await?,
            )),
            Some(Cancelled::StillOpen(_)) => {
                let view = calendar::room_view(db, room_id).await?;
                Ok(match view {
                    Some(v) => {
                        self.calendar.room(&v).await;
                        Cancelled::StillOpen(v)
                    }
                    None => Cancelled::NotBooked(None),
                })
            }
            Some(Cancelled::Removed {
                room_id,
                group_id,
                start_at,
            }) => {
                self.calendar.removed(group_id, start_at).await;
                Ok(Cancelled::Removed {
                    room_id,
                    group_id,
                    start_at,
                })
            }
            Some(other) => Ok(other),
        }
    }
}

/// The calendar topic of a group (the contract's `/topic/{groupId}`).
pub use crate::events::calendar_topic;

/// Where calendar changes are announced: every subscriber of a group's calendar, on every replica.
/// Explicit dependencies: the database (rooms with their members), the zone, slot grid and clock
/// the room bodies are rendered with, and the event sink.
pub struct CalendarNews<'a> {
    pub db: &'a DatabaseConnection,
    pub zone: Tz,
    pub grid: &'a SlotGrid,
    pub clock: &'a Clock,
    pub events: &'a dyn Publisher,
    pub groups: &'a GroupView,
}

impl CalendarNews<'_> {
    /// After a change to the calendars or memberships of `group_ids` committed (their versions
    /// were bumped in its transaction): the group views forget them, here at once and on every
    /// replica.
    pub async fn changed(&self, group_ids: &[i64]) {
        if group_ids.is_empty() {
            return;
        }
        self.groups.changed(group_ids);
        self.events
            .emit(Event::CalendarChanged {
                group_ids: group_ids.to_vec(),
            })
            .await;
    }

    /// A room as it is now.
    pub async fn room(&self, room: &RoomView) {
        let body = room_response_at(self.zone, self.grid, room, self.clock.now_naive());
        events::publish(self.events, calendar_topic(room.group_id), &body).await;
    }

    /// The room at `start_at` is gone (the contract's tombstone).
    pub async fn removed(&self, group_id: i64, start_at: NaiveDateTime) {
        let body = tombstone_at(self.zone, start_at, self.clock.now_naive());
        events::publish(self.events, calendar_topic(group_id), &body).await;
    }

    /// After a leave or withdrawal committed: seat changes and membership revocations (the
    /// calendar versions were bumped by the leave itself).
    pub async fn after_leaving(&self, member_id: i64, effects: &crate::membership::LeaveEffects) {
        self.changed(&effects.groups).await;
        match calendar::with_members(self.db, effects.changed_rooms.clone()).await {
            Ok(rooms) => {
                for room in &rooms {
                    self.room(room).await;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "loading rooms to broadcast after leaving failed")
            }
        }
        for (group_id, start_at) in &effects.removed_rooms {
            self.removed(*group_id, *start_at).await;
        }
        for group_id in &effects.groups {
            self.events
                .emit(Event::RevokeMembership {
                    member_id,
                    group_id: *group_id,
                })
                .await;
        }
    }
}
