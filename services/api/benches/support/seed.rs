//! Seeding shared by the API benches: members and groups written straight into the database
//! (one transaction, the caller's), as dev logins would have made them.

// Each bench includes this file and uses part of it.
#![allow(dead_code)]

use chrono::NaiveDateTime;
use ppodok_api::db::entities::{member, reservation, room, study_group};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, Set};

/// Inserts `count` regular members named `{prefix}-{n}` with no profile picture (as dev login
/// makes them) and returns their ids.
pub async fn members(
    db: &impl ConnectionTrait,
    prefix: &str,
    count: usize,
    now: NaiveDateTime,
) -> Result<Vec<i64>, DbErr> {
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let row = member::ActiveModel {
            name: Set(format!("{prefix}-{n}")),
            profile: Set(None),
            provider: Set("dev".into()),
            provider_user_id: Set(Some(format!("{prefix}-{n}"))),
            status: Set(member::STATUS_REGULAR.into()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await?;
        ids.push(row.id);
    }
    Ok(ids)
}

/// Inserts a public group and makes each of `members` a member of it (the domain's join: a
/// membership and a zero rank); returns the group's id.
pub async fn group_of(
    db: &impl ConnectionTrait,
    name: String,
    invite_code: String,
    members: &[i64],
    now: NaiveDateTime,
) -> Result<i64, DbErr> {
    let group = study_group::ActiveModel {
        name: Set(name),
        is_secret: Set(false),
        invite_code: Set(invite_code),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    for member in members {
        ppodok_api::membership::join(db, group.id, *member).await?;
    }
    Ok(group.id)
}

/// 08:00 today in Seoul (the groups' zone), as the UTC time the database keeps.
pub fn eight_today_in_seoul() -> NaiveDateTime {
    let zone = chrono_tz::Asia::Seoul;
    let midnight = chrono::Utc::now()
        .with_timezone(&zone)
        .date_naive()
        .and_time(chrono::NaiveTime::MIN);
    ppodok_domain::time::local_to_utc(midnight, zone)
        .expect("Seoul has a midnight every day")
        .naive_utc()
        + chrono::Duration::hours(8)
}

/// Books `count` rooms of 25 minutes in the group, one every 30 minutes from `first`, each
/// reserved by `per_room` of `members` (spread over them by a fixed stride).
pub async fn booked_rooms(
    db: &impl ConnectionTrait,
    group_id: i64,
    first: NaiveDateTime,
    count: i64,
    members: &[i64],
    per_room: usize,
    now: NaiveDateTime,
) -> Result<(), DbErr> {
    for r in 0..count {
        let start = first + chrono::Duration::minutes(30 * r);
        let end = start + chrono::Duration::minutes(25);
        let room = room::ActiveModel {
            group_id: Set(group_id),
            start_at: Set(start),
            end_at: Set(end),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await?;
        for k in 0..per_room {
            reservation::ActiveModel {
                room_id: Set(room.id),
                member_id: Set(members[(r as usize * 7 + k * 13) % members.len()]),
                group_id: Set(group_id),
                start_at: Set(start),
                end_at: Set(end),
                client_present: Set(false),
                sfu_present: Set(false),
                credited_ms: Set(0),
                created_at: Set(now),
                ..Default::default()
            }
            .insert(db)
            .await?;
        }
    }
    Ok(())
}
