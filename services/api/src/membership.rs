//! Joining and leaving groups: the multi-row rules that must hold in one transaction and are
//! shared by the group endpoints and member withdrawal.

use std::collections::{HashMap, HashSet};

use ppodok_domain::DEFAULT_GROUP_ID;
use sea_orm::{
    sea_query::{Expr, Query},
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::db::entities::{membership, rank, reservation, room, study_group, study_total, todo};
use crate::db::{is_unique_violation, now_utc};

/// Outcome of a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    New,
    AlreadyMember,
}

/// Adds `member_id` to `group_id` with a fresh rank row. Idempotent: an existing membership (also
/// one a concurrent request just created) is reported, not duplicated.
pub async fn join<C: ConnectionTrait>(
    db: &C,
    group_id: i64,
    member_id: i64,
) -> Result<Joined, DbErr> {
    let now = now_utc();
    let inserted = membership::ActiveModel {
        group_id: Set(group_id),
        member_id: Set(member_id),
        color: Set(None),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => return Ok(Joined::AlreadyMember),
        Err(e) => return Err(e),
    }
    rank::ActiveModel {
        group_id: Set(group_id),
        member_id: Set(member_id),
        duration_ms: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(Joined::New)
}

pub async fn membership_of<C: ConnectionTrait>(
    db: &C,
    group_id: i64,
    member_id: i64,
) -> Result<Option<membership::Model>, DbErr> {
    membership::Entity::find()
        .filter(membership::Column::GroupId.eq(group_id))
        .filter(membership::Column::MemberId.eq(member_id))
        .one(db)
        .await
}

#[derive(FromQueryResult)]
struct GroupCount {
    group_id: i64,
    members: i64,
}

/// What a leave changed, for the caller to announce after commit.
#[derive(Debug, Default)]
pub struct LeaveEffects {
    pub groups: Vec<i64>,
    /// Rooms that lost my seat but live on.
    pub changed_rooms: Vec<room::Model>,
    /// Rooms that went with my seat: (group, start).
    pub removed_rooms: Vec<(i64, chrono::NaiveDateTime)>,
}

/// Removes `member_id` from `group_ids` with the full cascade: rank, todos and membership go; a
/// group left empty is deleted (never the default group; its rooms and rows go with it by foreign
/// key); a group whose owner left passes to its longest-standing member. A bounded number of
/// statements whatever the number of groups, members or rows.
pub async fn leave<C: ConnectionTrait>(
    db: &C,
    member_id: i64,
    group_ids: &[i64],
) -> Result<LeaveEffects, DbErr> {
    let mut effects = LeaveEffects::default();
    if group_ids.is_empty() {
        return Ok(effects);
    }
    let mut ids = group_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    // Lock the groups (in id order, so concurrent leaves cannot deadlock): two last members leaving
    // at once must not both see the other one still there.
    let groups = study_group::Entity::find()
        .filter(study_group::Column::Id.is_in(ids.clone()))
        .order_by_asc(study_group::Column::Id)
        .lock_exclusive()
        .all(db)
        .await?;

    rank::Entity::delete_many()
        .filter(rank::Column::MemberId.eq(member_id))
        .filter(rank::Column::GroupId.is_in(ids.clone()))
        .exec(db)
        .await?;
    todo::Entity::delete_many()
        .filter(todo::Column::MemberId.eq(member_id))
        .filter(todo::Column::GroupId.is_in(ids.clone()))
        .exec(db)
        .await?;
    study_total::Entity::delete_many()
        .filter(study_total::Column::MemberId.eq(member_id))
        .filter(study_total::Column::GroupId.is_in(ids.clone()))
        .exec(db)
        .await?;
    // My bookings in those groups go; rooms left without anyone go with them.
    let my_rooms: Vec<i64> = reservation::Entity::find()
        .select_only()
        .column(reservation::Column::RoomId)
        .filter(reservation::Column::MemberId.eq(member_id))
        .filter(reservation::Column::GroupId.is_in(ids.clone()))
        .into_tuple()
        .all(db)
        .await?;
    if !my_rooms.is_empty() {
        let rooms_before = room::Entity::find()
            .filter(room::Column::Id.is_in(my_rooms.clone()))
            .all(db)
            .await?;
        reservation::Entity::delete_many()
            .filter(reservation::Column::MemberId.eq(member_id))
            .filter(reservation::Column::RoomId.is_in(my_rooms.clone()))
            .exec(db)
            .await?;
        let still_booked = Query::select()
            .column(reservation::Column::RoomId)
            .from(reservation::Entity)
            .and_where(Expr::col(reservation::Column::RoomId).is_in(my_rooms.clone()))
            .to_owned();
        room::Entity::delete_many()
            .filter(room::Column::Id.is_in(my_rooms.clone()))
            .filter(room::Column::Id.not_in_subquery(still_booked))
            .exec(db)
            .await?;
        let surviving: HashSet<i64> = room::Entity::find()
            .select_only()
            .column(room::Column::Id)
            .filter(room::Column::Id.is_in(my_rooms))
            .into_tuple::<i64>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        for r in rooms_before {
            if surviving.contains(&r.id) {
                effects.changed_rooms.push(r);
            } else {
                effects.removed_rooms.push((r.group_id, r.start_at));
            }
        }
    }
    membership::Entity::delete_many()
        .filter(membership::Column::MemberId.eq(member_id))
        .filter(membership::Column::GroupId.is_in(ids.clone()))
        .exec(db)
        .await?;
    // Profiles and seats on the calendars change with the member's departure.
    crate::cache::bump_versions(db, &ids).await?;

    let remaining: HashMap<i64, i64> = membership::Entity::find()
        .select_only()
        .column(membership::Column::GroupId)
        .column_as(membership::Column::Id.count(), "members")
        .filter(membership::Column::GroupId.is_in(ids.clone()))
        .group_by(membership::Column::GroupId)
        .lock_exclusive()
        .into_model::<GroupCount>()
        .all(db)
        .await?
        .into_iter()
        .map(|c| (c.group_id, c.members))
        .collect();

    let emptied: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| *id != DEFAULT_GROUP_ID && !remaining.contains_key(id))
        .collect();
    if !emptied.is_empty() {
        study_group::Entity::delete_many()
            .filter(study_group::Column::Id.is_in(emptied))
            .exec(db)
            .await?;
    }

    effects.groups = ids.clone();
    let orphaned: Vec<i64> = groups
        .iter()
        .filter(|g| g.owner_id == Some(member_id) && remaining.contains_key(&g.id))
        .map(|g| g.id)
        .collect();
    if !orphaned.is_empty() {
        // Membership ids grow with time, so the smallest id is the longest-standing member.
        let first_ids: HashSet<i64> = membership::Entity::find()
            .select_only()
            .column_as(membership::Column::Id.min(), "first_id")
            .filter(membership::Column::GroupId.is_in(orphaned))
            .group_by(membership::Column::GroupId)
            .into_tuple::<i64>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        let heirs = membership::Entity::find()
            .filter(membership::Column::Id.is_in(first_ids))
            .all(db)
            .await?;
        for heir in heirs {
            study_group::Entity::update_many()
                .col_expr(study_group::Column::OwnerId, Expr::value(heir.member_id))
                .col_expr(study_group::Column::UpdatedAt, Expr::value(now_utc()))
                .filter(study_group::Column::Id.eq(heir.group_id))
                .exec(db)
                .await?;
        }
    }
    Ok(effects)
}

/// Why [`require_member`] refused, or a storage failure.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The group exists; the member is not in it.
    #[error("not a member of group {0}")]
    Stranger(i64),
    /// No such group.
    #[error("no group {0}")]
    NoGroup(i64),
    #[error(transparent)]
    Store(#[from] DbErr),
}

/// Members only: [`MembershipError::Stranger`] for a stranger, [`MembershipError::NoGroup`] when
/// the group does not exist.
pub async fn require_member<C: ConnectionTrait>(
    db: &C,
    group_id: i64,
    member_id: i64,
) -> Result<(), MembershipError> {
    if membership_of(db, group_id, member_id).await?.is_some() {
        return Ok(());
    }
    let exists = study_group::Entity::find_by_id(group_id)
        .one(db)
        .await?
        .is_some();
    Err(if exists {
        MembershipError::Stranger(group_id)
    } else {
        MembershipError::NoGroup(group_id)
    })
}
