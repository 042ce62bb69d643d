//! Server time, a member's study-day settings, and their study history ("My page"): per-day
//! durations, the summary card (today, this week, streaks, todo completion) and the yearly heatmap.
//!
//! History is computed from `study_records` in the member's own zone and day boundary, so changing
//! either re-labels past days without rewriting anything.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use ppodok_domain::periods::{streaks, utc, DayBoundary};
use ppodok_domain::stats::{self, WindowError};
use ppodok_domain::time::{format_iso_duration_ms, local_to_utc, parse_local_datetime};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::CurrentMember;
use crate::db::entities::{member, study_record, todo};
use crate::envelope;
use crate::error::{ApiError, ApiResult};
use crate::push::prefs::{
    PrefsChange, PrefsError, ReminderPrefs, MAX_MINUTES_BEFORE, MIN_MINUTES_BEFORE,
};
use crate::state::AppState;

const MSG_BAD_ZONE: &str = "시간대는 IANA 이름이어야 해요. 예: Asia/Seoul";
const MSG_BAD_BOUNDARY: &str = "하루 시작 시각은 HH:MM 형식이어야 해요. 예: 05:00";
const MSG_BAD_REMINDER_MINUTES: &str = "알림 시각은 시작 1분 전부터 60분 전 사이여야 해요.";
const MSG_BAD_WINDOW_FORMAT: &str = "from과 to는 YYYY-MM-DDTHH:mm:ss 형식의 시각이어야 해요.";
const MSG_EMPTY_WINDOW: &str = "to는 from보다 뒤여야 해요.";
const MSG_NONEXISTENT_TIME: &str = "그 시간대에 존재하지 않는 시각이에요.";
const MSG_BAD_YEAR: &str = "year는 1970부터 9999 사이의 연도여야 해요.";

fn too_long_window() -> ApiError {
    ApiError::BadRequest(format!(
        "조회 기간은 최대 {}일이에요.",
        stats::MAX_HISTORY_WINDOW_DAYS
    ))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerTimeResponse {
    /// Now in the service zone, contract format `YYYY-MM-DDTHH:mm:ss[.fff]`.
    pub server_time: String,
    pub epoch_millis: i64,
    /// The service's IANA zone.
    pub zone: String,
    /// The slot grid: a room starts every `cycleMinutes` from local midnight and lasts
    /// `studyMinutes` (clients draw the calendar from it).
    pub cycle_minutes: u32,
    pub study_minutes: u32,
    /// How long before its start a room's video opens.
    pub video_opens_minutes_before: i64,
}

/// The server's clock, so clients can correct countdowns for their own clock's skew.
#[utoipa::path(get, path = "/api/v1/time", tag = "study",
    responses((status = 200, body = ServerTimeResponse)))]
pub async fn server_time(state: web::Data<AppState>) -> HttpResponse {
    let now = state.clock.now();
    envelope::ok(ServerTimeResponse {
        server_time: crate::views::local_in(state.zone, now.naive_utc()),
        epoch_millis: now.timestamp_millis(),
        zone: state.zone.name().to_owned(),
        cycle_minutes: state.settings.rooms.cycle_minutes,
        study_minutes: state.settings.rooms.study_minutes,
        video_opens_minutes_before: state.settings.livekit.join_before_minutes,
    })
}

/// The study days a member sees: their zone and boundary, or the service defaults.
pub fn member_days(state: &AppState, m: &member::Model) -> DayBoundary {
    let zone = m
        .time_zone
        .as_deref()
        .and_then(|z| z.parse::<Tz>().ok())
        .unwrap_or(state.zone);
    let minutes = m
        .day_boundary_minutes
        .and_then(|b| u32::try_from(b).ok())
        .unwrap_or(state.ranking_days.minutes);
    DayBoundary::new(zone, minutes).unwrap_or(state.ranking_days)
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingsResponse {
    /// IANA zone my study days are counted in.
    pub time_zone: String,
    /// When my study day starts, `HH:MM`.
    pub day_boundary: String,
    /// Push reminders of my booked rooms on my devices (and open pages).
    pub push_reminders: bool,
    /// How long before a room starts its reminder comes.
    #[schema(minimum = 1, maximum = 60)]
    pub reminder_minutes_before: i32,
    /// A second reminder when the room starts.
    pub reminder_at_start: bool,
}

fn settings_response(days: DayBoundary, reminders: ReminderPrefs) -> SettingsResponse {
    SettingsResponse {
        time_zone: days.zone.name().to_owned(),
        day_boundary: stats::format_hh_mm(days.minutes),
        push_reminders: reminders.enabled,
        reminder_minutes_before: reminders.minutes_before,
        reminder_at_start: reminders.at_start,
    }
}

/// My study-day and reminder settings (defaults filled in).
#[utoipa::path(get, path = "/api/v1/members/settings", tag = "study",
    responses((status = 200, body = SettingsResponse)), security(("bearer" = [])))]
pub async fn get_settings(
    state: web::Data<AppState>,
    me: CurrentMember,
) -> ApiResult<HttpResponse> {
    let reminders = crate::push::prefs::get(&state.db, me.id()).await?;
    Ok(envelope::ok(settings_response(
        member_days(&state, &me.member),
        reminders,
    )))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingsRequest {
    /// IANA zone name; omitted keeps the current one.
    #[schema(max_length = 64, pattern = "^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")]
    pub time_zone: Option<String>,
    /// `HH:MM`; omitted keeps the current one.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub day_boundary: Option<String>,
    /// Reminders on or off; omitted keeps the current choice.
    pub push_reminders: Option<bool>,
    /// Minutes before the start (1–60); omitted keeps the current value.
    #[schema(minimum = 1, maximum = 60)]
    pub reminder_minutes_before: Option<i32>,
    /// Also remind at the start; omitted keeps the current choice.
    pub reminder_at_start: Option<bool>,
}

/// Changes my zone and/or day boundary. History is recomputed with them; group rankings keep the
/// service's days so that members of one group compete over the same periods.
#[utoipa::path(patch, path = "/api/v1/members/settings", tag = "study",
    request_body = SettingsRequest,
    responses((status = 200, body = SettingsResponse), (status = 400, description = "bad zone, boundary or reminder minutes")),
    security(("bearer" = [])))]
pub async fn patch_settings(
    state: web::Data<AppState>,
    me: CurrentMember,
    body: crate::routes::Json<SettingsRequest>,
) -> ApiResult<HttpResponse> {
    let zone = body
        .time_zone
        .as_deref()
        .map(|z| {
            z.parse::<Tz>()
                .map_err(|_| ApiError::BadRequest(MSG_BAD_ZONE.into()))
        })
        .transpose()?;
    let boundary = body
        .day_boundary
        .as_deref()
        .map(|b| stats::parse_hh_mm(b).ok_or(ApiError::BadRequest(MSG_BAD_BOUNDARY.into())))
        .transpose()?;
    let change = PrefsChange {
        enabled: body.push_reminders,
        minutes_before: body.reminder_minutes_before,
        at_start: body.reminder_at_start,
    };
    if change
        .minutes_before
        .is_some_and(|m| !(MIN_MINUTES_BEFORE..=MAX_MINUTES_BEFORE).contains(&m))
    {
        return Err(ApiError::BadRequest(MSG_BAD_REMINDER_MINUTES.into()));
    }
    let mut row: member::ActiveModel = (*me.member).clone().into();
    if let Some(zone) = zone {
        row.time_zone = Set(Some(zone.name().to_owned()));
    }
    if let Some(minutes) = boundary {
        row.day_boundary_minutes = Set(Some(minutes as i32));
    }
    let now = state.clock.now_naive();
    row.updated_at = Set(now);
    let member_id = me.id();
    // The member row is cached by the session views: the edit bumps the auth epoch with it.
    let (updated, reminders, epoch) = state
        .db
        .transaction::<_, _, ApiError>(|txn| {
            Box::pin(async move {
                let updated = row.update(txn).await?;
                let reminders = crate::push::prefs::update(txn, member_id, change, now)
                    .await
                    .map_err(|e| match e {
                        PrefsError::MinutesOutOfRange => {
                            ApiError::BadRequest(MSG_BAD_REMINDER_MINUTES.into())
                        }
                        PrefsError::Db(e) => e.into(),
                    })?;
                let epoch = crate::sessions::bump_epoch(txn).await?;
                Ok((updated, reminders, epoch))
            })
        })
        .await?;
    state
        .sessions
        .view()
        .apply(&crate::sessions::Change::Member { member_id }, epoch);
    state
        .realtime
        .emit(crate::events::Event::MemberChanged { member_id, epoch })
        .await;
    Ok(envelope::ok(settings_response(
        member_days(&state, &updated),
        reminders,
    )))
}

/// Records of a member overlapping `[from, to)`, clipped to it. The lower bound on `started_at`
/// keeps the scan on `ix_study_records_member_start` bounded: no record is longer than
/// `longest_record` (room sessions are minutes, timer segments stop at the idle cap).
async fn intervals_in<C: ConnectionTrait>(
    db: &C,
    member_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    longest_record: Duration,
) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>, DbErr> {
    let rows: Vec<(NaiveDateTime, NaiveDateTime)> = study_record::Entity::find()
        .select_only()
        .column(study_record::Column::StartedAt)
        .column(study_record::Column::EndedAt)
        .filter(study_record::Column::MemberId.eq(member_id))
        .filter(study_record::Column::StartedAt.gte((from - longest_record).naive_utc()))
        .filter(study_record::Column::StartedAt.lt(to.naive_utc()))
        .filter(study_record::Column::EndedAt.gt(from.naive_utc()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(s, e)| stats::clip(utc(s), utc(e), from, to))
        .collect())
}

fn longest_record(state: &AppState) -> Duration {
    Duration::minutes(state.settings.study.timer_idle_cap_minutes).max(Duration::days(1))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayDuration {
    /// The study day, `YYYY-MM-DD`.
    pub calculated_at: String,
    /// ISO-8601 duration, e.g. `PT1H25M`.
    pub duration: String,
}

fn day_duration(day: NaiveDate, ms: i64) -> DayDuration {
    DayDuration {
        calculated_at: day.format("%Y-%m-%d").to_string(),
        duration: format_iso_duration_ms(ms),
    }
}

fn nonzero_days(days: BTreeMap<NaiveDate, i64>) -> Vec<DayDuration> {
    days.into_iter()
        .filter(|(_, ms)| *ms > 0)
        .map(|(d, ms)| day_duration(d, ms))
        .collect()
}

#[derive(Deserialize, IntoParams)]
pub struct WindowQuery {
    /// Local time in my zone, `YYYY-MM-DDTHH:mm:ss`.
    #[param(
        required = true,
        pattern = r#"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?$"#
    )]
    pub from: Option<String>,
    /// Local time in my zone (exclusive), `YYYY-MM-DDTHH:mm:ss`.
    #[param(
        required = true,
        pattern = r#"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?$"#
    )]
    pub to: Option<String>,
}

fn parse_window_bound(raw: Option<&str>, zone: Tz) -> ApiResult<DateTime<Utc>> {
    let local = raw
        .and_then(parse_local_datetime)
        .ok_or(ApiError::BadRequest(MSG_BAD_WINDOW_FORMAT.into()))?;
    local_to_utc(local, zone).ok_or(ApiError::BadRequest(MSG_NONEXISTENT_TIME.into()))
}

/// My study time per study day within `[from, to)`, ordered by day; days without time are left
/// out. Sessions overlapping the window count only for their part inside it.
#[utoipa::path(get, path = "/api/v1/study-histories/durations", tag = "study", params(WindowQuery),
    responses((status = 200, body = [DayDuration]), (status = 400, description = "missing, malformed or too long window")),
    security(("bearer" = [])))]
pub async fn durations(
    state: web::Data<AppState>,
    me: CurrentMember,
    q: web::Query<WindowQuery>,
) -> ApiResult<HttpResponse> {
    let days = member_days(&state, &me.member);
    let from = parse_window_bound(q.from.as_deref(), days.zone)?;
    let to = parse_window_bound(q.to.as_deref(), days.zone)?;
    stats::check_window(from, to).map_err(|e| match e {
        WindowError::Empty => ApiError::BadRequest(MSG_EMPTY_WINDOW.into()),
        WindowError::TooLong => too_long_window(),
    })?;
    let intervals = intervals_in(&state.db, me.id(), from, to, longest_record(&state)).await?;
    Ok(envelope::ok(nonzero_days(days.per_day(intervals))))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SummaryResponse {
    /// Time studied today (my current study day).
    pub today: String,
    /// Monday to Sunday of the current study week, zeros included.
    pub week: Vec<DayDuration>,
    /// Consecutive study days up to today (or yesterday, while today is still open).
    pub current_streak: u32,
    pub best_streak: u32,
    /// Percentage of my todos (all my groups) that are done; null when I have none.
    pub todo_completion_rate: Option<f64>,
    /// All my study time ever.
    pub total_duration: String,
}

/// The "My page" card. Two queries: my records (two timestamp columns only, needed for the
/// all-time streaks) and a grouped todo count.
#[utoipa::path(get, path = "/api/v1/study-histories/summary", tag = "study",
    responses((status = 200, body = SummaryResponse)), security(("bearer" = [])))]
pub async fn summary(state: web::Data<AppState>, me: CurrentMember) -> ApiResult<HttpResponse> {
    let days = member_days(&state, &me.member);
    let now = state.clock.now();
    let rows: Vec<(NaiveDateTime, NaiveDateTime)> = study_record::Entity::find()
        .select_only()
        .column(study_record::Column::StartedAt)
        .column(study_record::Column::EndedAt)
        .filter(study_record::Column::MemberId.eq(me.id()))
        .order_by_asc(study_record::Column::StartedAt)
        .into_tuple()
        .all(&state.db)
        .await?;
    // Time still to come (a record cannot end after now, but a moved clock could) is not "studied".
    let per_day = days.per_day(
        rows.into_iter()
            .filter_map(|(s, e)| stats::clip(utc(s), utc(e), DateTime::<Utc>::MIN_UTC, now)),
    );
    let today = days.day_of(now);
    let studied: BTreeSet<NaiveDate> = per_day
        .iter()
        .filter(|(_, ms)| **ms > 0)
        .map(|(d, _)| *d)
        .collect();
    let (current_streak, best_streak) = streaks(&studied, today);
    let on = |d: NaiveDate| per_day.get(&d).copied().unwrap_or(0);

    let todo_counts: Vec<(bool, i64)> = todo::Entity::find()
        .select_only()
        .column(todo::Column::Done)
        .column_as(todo::Column::Id.count(), "n")
        .filter(todo::Column::MemberId.eq(me.id()))
        .group_by(todo::Column::Done)
        .into_tuple()
        .all(&state.db)
        .await?;
    let total_todos: i64 = todo_counts.iter().map(|(_, n)| n).sum();
    let done_todos: i64 = todo_counts
        .iter()
        .filter(|(done, _)| *done)
        .map(|(_, n)| n)
        .sum();

    Ok(envelope::ok(SummaryResponse {
        today: format_iso_duration_ms(on(today)),
        week: stats::week_of(today)
            .into_iter()
            .map(|d| day_duration(d, on(d)))
            .collect(),
        current_streak,
        best_streak,
        todo_completion_rate: stats::completion_rate(done_todos as u64, total_todos as u64),
        total_duration: format_iso_duration_ms(per_day.values().sum()),
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct HeatmapQuery {
    /// Calendar year of study days, e.g. 2026.
    #[param(required = true, minimum = 1970, maximum = 9999)]
    pub year: Option<i32>,
}

/// Every study day of a year on which I studied, with its time (`[{calculatedAt, duration}]`,
/// ordered by day; days without time are left out — the client fills the grid with zeros).
#[utoipa::path(get, path = "/api/v1/study-histories/heatmap", tag = "study", params(HeatmapQuery),
    responses((status = 200, body = [DayDuration]), (status = 400, description = "missing or bad year")),
    security(("bearer" = [])))]
pub async fn heatmap(
    state: web::Data<AppState>,
    me: CurrentMember,
    q: web::Query<HeatmapQuery>,
) -> ApiResult<HttpResponse> {
    let year = q
        .year
        .filter(|y| (1970..=9999).contains(y))
        .ok_or(ApiError::BadRequest(MSG_BAD_YEAR.into()))?;
    let days = member_days(&state, &me.member);
    let first = NaiveDate::from_ymd_opt(year, 1, 1).expect("valid year");
    let next = NaiveDate::from_ymd_opt(year + 1, 1, 1).expect("valid year");
    let (from, to) = (days.start_of(first), days.start_of(next));
    let intervals = intervals_in(&state.db, me.id(), from, to, longest_record(&state)).await?;
    Ok(envelope::ok(nonzero_days(days.per_day(intervals))))
}
