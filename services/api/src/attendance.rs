//! Attendance: who is in a room, from two sources — the client (`POST/PATCH /rooms/histories`) and
//! the SFU (presence webhooks). A member is present while either source says so; time is credited
//! once per presence interval, clamped to the room window, so enter twice / exit twice, or the
//! client and the SFU reporting the same interval, never count a second twice.

use chrono::NaiveDateTime;
use ppodok_domain::periods::DayBoundary;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, Set,
    TransactionTrait,
};

use crate::db::entities::{reservation, room, study_record};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::study::{credit, Credit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Client,
    Sfu,
}

pub fn not_in_room(member_id: i64, room_id: i64) -> ApiError {
    ApiError::BadRequest(format!(
        "사용자가 참여하고 있는 방이 아닙니다.memberId :{member_id} roomId :{room_id}"
    ))
}

async fn locked_reservation(
    txn: &DatabaseTransaction,
    member_id: i64,
    room_id: i64,
) -> Result<Option<reservation::Model>, sea_orm::DbErr> {
    reservation::Entity::find()
        .filter(reservation::Column::RoomId.eq(room_id))
        .filter(reservation::Column::MemberId.eq(member_id))
        .lock_exclusive()
        .one(txn)
        .await
}

/// Stores the sources' new flags; when neither remains, ends presence at `at` and credits
/// `[present_since, min(at, end)]`. Returns the milliseconds credited.
async fn update_presence(
    ranking_days: DayBoundary,
    txn: &DatabaseTransaction,
    r: &reservation::Model,
    client: bool,
    sfu: bool,
    at: NaiveDateTime,
) -> ApiResult<i64> {
    let mut row: reservation::ActiveModel = r.clone().into();
    row.client_present = Set(client);
    row.sfu_present = Set(sfu);
    let mut credited = 0;
    if !client && !sfu {
        if let Some(since) = r.present_since {
            credited = credit(
                txn,
                &ranking_days,
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

/// A source reports the member present from `at`. Returns the (clamped) entry time, or None when
/// the room is over. Reporting presence twice changes nothing.
pub async fn enter(
    state: &AppState,
    member_id: i64,
    room_id: i64,
    source: Source,
    at: NaiveDateTime,
) -> ApiResult<Option<NaiveDateTime>> {
    Ok(state
        .db
        .transaction::<_, Option<NaiveDateTime>, ApiError>(|txn| {
            Box::pin(async move {
                let r = locked_reservation(txn, member_id, room_id)
                    .await?
                    .ok_or_else(|| not_in_room(member_id, room_id))?;
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

/// What a client exit did.
pub struct Exited {
    pub entered_at: Option<NaiveDateTime>,
    pub exited_at: NaiveDateTime,
    pub credited_ms: i64,
}

/// The client says the member left at `at`. 400 when the client had not entered.
pub async fn client_exit(
    state: &AppState,
    member_id: i64,
    room_id: i64,
    at: NaiveDateTime,
) -> ApiResult<Exited> {
    let ranking_days = state.ranking_days;
    Ok(state
        .db
        .transaction::<_, Exited, ApiError>(|txn| {
            Box::pin(async move {
                let r = locked_reservation(txn, member_id, room_id)
                    .await?
                    .ok_or_else(|| not_in_room(member_id, room_id))?;
                if !r.client_present {
                    return Err(not_in_room(member_id, room_id));
                }
                let credited_ms =
                    update_presence(ranking_days, txn, &r, false, r.sfu_present, at).await?;
                Ok(Exited {
                    entered_at: r.client_entered_at,
                    exited_at: at.min(r.end_at),
                    credited_ms,
                })
            })
        })
        .await?)
}

/// The SFU says the member vanished from the room's video at `at`: every source of presence ends
/// (a client that never says goodbye is closed too). Unknown reservations are ignored.
pub async fn sfu_left(
    state: &AppState,
    member_id: i64,
    room_id: i64,
    at: NaiveDateTime,
) -> ApiResult<i64> {
    let ranking_days = state.ranking_days;
    Ok(state
        .db
        .transaction::<_, i64, ApiError>(|txn| {
            Box::pin(async move {
                let Some(r) = locked_reservation(txn, member_id, room_id).await? else {
                    return Ok(0);
                };
                if !r.sfu_present && !r.client_present {
                    return Ok(0);
                }
                update_presence(ranking_days, txn, &r, false, false, at).await
            })
        })
        .await?)
}

/// Closes presence left open in rooms that have ended by `now` (crediting up to the room end), or
/// in one room (`room_finished`). Returns how many reservations were closed.
pub async fn close_dangling(
    state: &AppState,
    room_id: Option<i64>,
    now: NaiveDateTime,
) -> ApiResult<u64> {
    let ranking_days = state.ranking_days;
    let mut query =
        reservation::Entity::find().filter(reservation::Column::PresentSince.is_not_null());
    query = match room_id {
        Some(id) => query.filter(reservation::Column::RoomId.eq(id)),
        None => query.filter(reservation::Column::EndAt.lte(now)),
    };
    let open = query.all(&state.db).await?;
    let mut closed = 0;
    for r in open {
        // Each close is its own small transaction: a crash midway leaves the rest for the next run.
        let at = now.min(r.end_at);
        closed += state
            .db
            .transaction::<_, u64, ApiError>(|txn| {
                Box::pin(async move {
                    let Some(r) = locked_reservation(txn, r.member_id, r.room_id).await? else {
                        return Ok(0);
                    };
                    if r.present_since.is_none() {
                        return Ok(0);
                    }
                    update_presence(ranking_days, txn, &r, false, false, at).await?;
                    Ok(1)
                })
            })
            .await?;
    }
    Ok(closed)
}

/// A room of one of my groups, or 404: a room of a group I am not in answers exactly like a
/// missing one, so outsiders cannot probe which rooms exist.
pub async fn find_room(state: &AppState, room_id: i64, member_id: i64) -> ApiResult<room::Model> {
    let room = room::Entity::find_by_id(room_id).one(&state.db).await?;
    match room {
        Some(r)
            if crate::membership::membership_of(&state.db, r.group_id, member_id)
                .await?
                .is_some() =>
        {
            Ok(r)
        }
        _ => Err(crate::rooms::room_not_found(room_id)),
    }
}

/// Presence changes go to the group's presence topic (never the calendar topic).
pub async fn announce(
    state: &AppState,
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
        "serverTime": crate::views::local(state, state.clock.now_naive()),
    });
    state
        .realtime
        .publish(format!("/topic/{group_id}/presence"), &body)
        .await;
}
