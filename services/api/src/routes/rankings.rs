//! Group rankings: the contract's `GET /ranks` (every member, all-time or one period) and the
//! paged `GET /rankings` (top N plus my own standing). Periods use the service's study days
//! (`AppState::ranking_days`) so that every member of a group competes over the same days.
//!
//! Every answer is a constant number of index-ordered queries: top-N reads walk
//! `ix_ranks_group_duration` / `ix_study_totals_ranking`, and my rank is one COUNT of members ahead.

use actix_web::{web, HttpResponse};
use chrono::{Duration, NaiveDate};
use ppodok_domain::periods::PeriodKind;
use ppodok_domain::stats::{competition_ranks, rank_from_ahead};
use ppodok_domain::time::format_iso_duration_ms;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, JoinType, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, RelationDef, Select,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::CurrentMember;
use crate::db::entities::{member, membership, rank, study_total};
use crate::envelope;
use crate::error::{ApiError, ApiResult};
use crate::membership::require_member;
use crate::state::AppState;

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 200;
const MSG_BAD_PERIOD: &str = "period는 day, week, month, all 중 하나여야 해요.";
const MSG_BAD_LIMIT: &str = "limit은 1부터 200 사이여야 해요.";

/// A ranking period: all time, or the current day/week/month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    AllTime,
    Current(PeriodKind),
}

/// The `period` values, for the document (the server parses them exactly, see `parse_period`).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum PeriodName {
    All,
    Day,
    Week,
    Month,
    Daily,
    Weekly,
    Monthly,
}

fn parse_period(raw: Option<&str>) -> ApiResult<Period> {
    match raw {
        None | Some("all") => Ok(Period::AllTime),
        Some(s) => PeriodKind::parse(s)
            .map(Period::Current)
            .ok_or(ApiError::BadRequest(MSG_BAD_PERIOD.into())),
    }
}

fn period_name(p: Period) -> &'static str {
    match p {
        Period::AllTime => "all",
        Period::Current(kind) => kind.as_str(),
    }
}

/// First study day of the current period of `kind`.
fn current_period_start(state: &AppState, kind: PeriodKind) -> NaiveDate {
    kind.start(state.ranking_days.day_of(state.clock.now()))
}

#[derive(Debug, FromQueryResult)]
struct Standing {
    member_id: i64,
    nickname: String,
    profile: Option<String>,
    duration_ms: i64,
}

fn rank_to_member() -> RelationDef {
    rank::Entity::belongs_to(member::Entity)
        .from(rank::Column::MemberId)
        .to(member::Column::Id)
        .into()
}

fn total_to_member() -> RelationDef {
    study_total::Entity::belongs_to(member::Entity)
        .from(study_total::Column::MemberId)
        .to(member::Column::Id)
        .into()
}

/// Totals outlive a membership (a member who left keeps their history); only current members rank.
fn total_to_membership() -> RelationDef {
    study_total::Entity::belongs_to(membership::Entity)
        .from((study_total::Column::GroupId, study_total::Column::MemberId))
        .to((membership::Column::GroupId, membership::Column::MemberId))
        .into()
}

fn period_totals(group_id: i64, kind: PeriodKind, start: NaiveDate) -> Select<study_total::Entity> {
    study_total::Entity::find()
        .join(JoinType::InnerJoin, total_to_membership())
        .filter(study_total::Column::GroupId.eq(group_id))
        .filter(study_total::Column::PeriodKind.eq(kind.as_str()))
        .filter(study_total::Column::PeriodStart.eq(start))
}

/// The first `limit` standings of a group (all of them when `None`), by time then member id.
async fn top_standings<C: ConnectionTrait>(
    db: &C,
    group_id: i64,
    period: Period,
    period_start: Option<NaiveDate>,
    limit: Option<u64>,
) -> Result<Vec<Standing>, DbErr> {
    match (period, period_start) {
        (Period::Current(kind), Some(start)) => {
            period_totals(group_id, kind, start)
                .join(JoinType::InnerJoin, total_to_member())
                .select_only()
                .column(study_total::Column::MemberId)
                .column_as(member::Column::Name, "nickname")
                .column(member::Column::Profile)
                .column(study_total::Column::DurationMs)
                .filter(study_total::Column::DurationMs.gt(0))
                .order_by_desc(study_total::Column::DurationMs)
                .order_by_asc(study_total::Column::MemberId)
                .limit(limit)
                .into_model::<Standing>()
                .all(db)
                .await
        }
        _ => {
            rank::Entity::find()
                .join(JoinType::InnerJoin, rank_to_member())
                .select_only()
                .column(rank::Column::MemberId)
                .column_as(member::Column::Name, "nickname")
                .column(member::Column::Profile)
                .column(rank::Column::DurationMs)
                .filter(rank::Column::GroupId.eq(group_id))
                .order_by_desc(rank::Column::DurationMs)
                .order_by_asc(rank::Column::MemberId)
                .limit(limit)
                .into_model::<Standing>()
                .all(db)
                .await
        }
    }
}

/// My time in the period and how many current members have strictly more.
async fn my_standing<C: ConnectionTrait>(
    db: &C,
    group_id: i64,
    member_id: i64,
    period: Period,
    period_start: Option<NaiveDate>,
) -> Result<(i64, u64), DbErr> {
    match (period, period_start) {
        (Period::Current(kind), Some(start)) => {
            let mine: i64 = period_totals(group_id, kind, start)
                .select_only()
                .column(study_total::Column::DurationMs)
                .filter(study_total::Column::MemberId.eq(member_id))
                .into_tuple()
                .one(db)
                .await?
                .unwrap_or(0);
            let ahead = period_totals(group_id, kind, start)
                .filter(study_total::Column::DurationMs.gt(mine))
                .count(db)
                .await?;
            Ok((mine, ahead))
        }
        _ => {
            let mine: i64 = rank::Entity::find()
                .select_only()
                .column(rank::Column::DurationMs)
                .filter(rank::Column::GroupId.eq(group_id))
                .filter(rank::Column::MemberId.eq(member_id))
                .into_tuple()
                .one(db)
                .await?
                .unwrap_or(0);
            let ahead = rank::Entity::find()
                .filter(rank::Column::GroupId.eq(group_id))
                .filter(rank::Column::DurationMs.gt(mine))
                .count(db)
                .await?;
            Ok((mine, ahead))
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RankResponse {
    pub member_id: i64,
    pub profile: Option<String>,
    pub nickname: String,
    /// ISO-8601, e.g. `PT3H25M`.
    pub duration: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct RanksQuery {
    pub group_id: i64,
    /// `all` (default), `day`, `week` or `month` (`daily`, `weekly`, `monthly` too).
    #[param(inline, value_type = Option<PeriodName>)]
    pub period: Option<String>,
}

/// Every member of the group by all-time study time (ties by member id). With `period`, the
/// members who studied in the current day/week/month, by their time in it.
#[utoipa::path(get, path = "/api/v1/ranks", tag = "rankings", params(RanksQuery),
    responses((status = 200, body = [RankResponse]), (status = 403, description = "not a member"),
        (status = 404, description = "no such group")),
    security(("bearer" = [])))]
pub async fn ranks(
    state: web::Data<AppState>,
    me: CurrentMember,
    q: web::Query<RanksQuery>,
) -> ApiResult<HttpResponse> {
    let period = parse_period(q.period.as_deref())?;
    require_member(&state.db, q.group_id, me.id()).await?;
    let start = match period {
        Period::Current(kind) => Some(current_period_start(&state, kind)),
        Period::AllTime => None,
    };
    let standings = top_standings(&state.db, q.group_id, period, start, None).await?;
    Ok(envelope::ok(
        standings
            .into_iter()
            .map(|s| RankResponse {
                member_id: s.member_id,
                profile: s.profile,
                nickname: s.nickname,
                duration: format_iso_duration_ms(s.duration_ms),
            })
            .collect::<Vec<_>>(),
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct RankingsQuery {
    pub group_id: i64,
    /// `all` (default), `day`, `week` or `month` (`daily`, `weekly`, `monthly` too).
    #[param(inline, value_type = Option<PeriodName>)]
    pub period: Option<String>,
    /// How many entries (default 50, 1 to 200).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RankingEntry {
    /// Competition rank: equal time shares a rank (1, 2, 2, 4).
    pub rank: u64,
    pub member_id: i64,
    pub nickname: String,
    pub profile: Option<String>,
    pub duration: String,
}

#[derive(Serialize, ToSchema)]
pub struct MyRank {
    pub rank: u64,
    pub duration: String,
}

#[derive(Serialize, ToSchema)]
pub struct RankingsResponse {
    /// `all`, `day`, `week` or `month`.
    pub period: String,
    /// First study day of the period (`YYYY-MM-DD`); null for all time.
    pub from: Option<String>,
    /// Last study day of the period, inclusive; null for all time.
    pub to: Option<String>,
    pub entries: Vec<RankingEntry>,
    /// My standing, also when I am not among the entries (no time yet: after everyone with time).
    pub me: MyRank,
}

/// Top N of the group for a period, and my own rank.
#[utoipa::path(get, path = "/api/v1/rankings", tag = "rankings", params(RankingsQuery),
    responses((status = 200, body = RankingsResponse), (status = 400, description = "bad period or limit"),
        (status = 403, description = "not a member"), (status = 404, description = "no such group")),
    security(("bearer" = [])))]
pub async fn rankings(
    state: web::Data<AppState>,
    me: CurrentMember,
    q: web::Query<RankingsQuery>,
) -> ApiResult<HttpResponse> {
    let period = parse_period(q.period.as_deref())?;
    let limit = match q.limit {
        None => DEFAULT_LIMIT,
        Some(n @ 1..=MAX_LIMIT) => n,
        Some(_) => return Err(ApiError::BadRequest(MSG_BAD_LIMIT.into())),
    };
    require_member(&state.db, q.group_id, me.id()).await?;
    let (start, end) = match period {
        Period::Current(kind) => {
            let start = current_period_start(&state, kind);
            (Some(start), Some(kind.end(start) - Duration::days(1)))
        }
        Period::AllTime => (None, None),
    };
    let standings = top_standings(&state.db, q.group_id, period, start, Some(limit)).await?;
    let (my_ms, ahead) = my_standing(&state.db, q.group_id, me.id(), period, start).await?;
    let ranks = competition_ranks(&standings.iter().map(|s| s.duration_ms).collect::<Vec<_>>());
    let day = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    Ok(envelope::ok(RankingsResponse {
        period: period_name(period).to_owned(),
        from: start.map(day),
        to: end.map(day),
        entries: standings
            .into_iter()
            .zip(ranks)
            .map(|(s, rank)| RankingEntry {
                rank,
                member_id: s.member_id,
                nickname: s.nickname,
                profile: s.profile,
                duration: format_iso_duration_ms(s.duration_ms),
            })
            .collect(),
        me: MyRank {
            rank: rank_from_ahead(ahead),
            duration: format_iso_duration_ms(my_ms),
        },
    }))
}
