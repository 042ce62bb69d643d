//! Calendar reads: rooms with the members booked into them, loaded in a constant number of
//! statements whatever the number of rooms (rooms, then all their reservations with members).

use std::collections::HashMap;

use chrono::NaiveDateTime;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, JoinType, QueryFilter,
    QueryOrder, QuerySelect, RelationTrait, Select,
};
use serde::{Deserialize, Serialize};

use crate::db::entities::{member, reservation, room};

/// A room as the calendar shows it. Times are UTC; handlers format them for the contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomView {
    pub room_id: i64,
    pub group_id: i64,
    pub start_at: NaiveDateTime,
    pub end_at: NaiveDateTime,
    /// Booked members in booking order; `profiles[i]` is `member_ids[i]`'s picture.
    pub member_ids: Vec<i64>,
    pub profiles: Vec<Option<String>>,
}

#[derive(FromQueryResult)]
struct Booked {
    room_id: i64,
    member_id: i64,
    profile: Option<String>,
}

/// Attaches the booked members of `rooms` with one statement.
pub async fn with_members<C: ConnectionTrait>(
    db: &C,
    rooms: Vec<room::Model>,
) -> Result<Vec<RoomView>, DbErr> {
    if rooms.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rooms.iter().map(|r| r.id).collect();
    let booked = reservation::Entity::find()
        .select_only()
        .column(reservation::Column::RoomId)
        .column(reservation::Column::MemberId)
        .column_as(member::Column::Profile, "profile")
        .join(JoinType::InnerJoin, reservation::Relation::Member.def())
        .filter(reservation::Column::RoomId.is_in(ids))
        .filter(member::Column::Status.eq(member::STATUS_REGULAR))
        .order_by_asc(reservation::Column::Id)
        .into_model::<Booked>()
        .all(db)
        .await?;
    let mut by_room: HashMap<i64, (Vec<i64>, Vec<Option<String>>)> = HashMap::new();
    for b in booked {
        let entry = by_room.entry(b.room_id).or_default();
        entry.0.push(b.member_id);
        entry.1.push(b.profile);
    }
    Ok(rooms
        .into_iter()
        .map(|r| {
            let (member_ids, profiles) = by_room.remove(&r.id).unwrap_or_default();
            RoomView {
                room_id: r.id,
                group_id: r.group_id,
                start_at: r.start_at,
                end_at: r.end_at,
                member_ids,
                profiles,
            }
        })
        .collect())
}

/// Rooms of the given groups inside `[from, to]` (start ≥ from, end ≤ to), by start time.
pub async fn group_rooms<C: ConnectionTrait>(
    db: &C,
    group_ids: &[i64],
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> Result<Vec<RoomView>, DbErr> {
    if group_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rooms = in_window(
        room::Entity::find().filter(room::Column::GroupId.is_in(group_ids.to_vec())),
        from,
        to,
    )
    .all(db)
    .await?;
    with_members(db, rooms).await
}

/// Rooms I booked inside `[from, to]`, across all my groups.
pub async fn my_rooms<C: ConnectionTrait>(
    db: &C,
    member_id: i64,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> Result<Vec<RoomView>, DbErr> {
    let rooms = in_window(booked_by(member_id), from, to).all(db).await?;
    with_members(db, rooms).await
}

/// My booked room with the earliest start that has not ended yet.
pub async fn nearest_room<C: ConnectionTrait>(
    db: &C,
    member_id: i64,
    now: NaiveDateTime,
) -> Result<Option<RoomView>, DbErr> {
    let room = booked_by(member_id)
        .filter(room::Column::EndAt.gt(now))
        .order_by_asc(room::Column::StartAt)
        .order_by_asc(room::Column::Id)
        .one(db)
        .await?;
    Ok(with_members(db, room.into_iter().collect()).await?.pop())
}

/// One room with its members.
pub async fn room_view<C: ConnectionTrait>(
    db: &C,
    room_id: i64,
) -> Result<Option<RoomView>, DbErr> {
    let room = room::Entity::find_by_id(room_id).one(db).await?;
    Ok(with_members(db, room.into_iter().collect()).await?.pop())
}

/// Rooms `member_id` is booked into.
fn booked_by(member_id: i64) -> Select<room::Entity> {
    room::Entity::find()
        .join(JoinType::InnerJoin, room::Relation::Reservation.def())
        .filter(reservation::Column::MemberId.eq(member_id))
}

/// Rooms lying inside `[from, to]` (start ≥ from, end ≤ to), by start time.
fn in_window(
    rooms: Select<room::Entity>,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> Select<room::Entity> {
    rooms
        .filter(room::Column::StartAt.gte(from))
        .filter(room::Column::EndAt.lte(to))
        .order_by_asc(room::Column::StartAt)
        .order_by_asc(room::Column::Id)
}
