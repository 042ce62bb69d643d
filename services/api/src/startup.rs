//! Builds the application from settings: database, stores, background workers, HTTP server.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::{
    body::MessageBody,
    dev::{Server, ServiceRequest, ServiceResponse},
    middleware::{from_fn, Next},
    web, App, HttpServer,
};
use fred::prelude::*;
use ppodok_tokens::MemberTokenCodec;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing_actix_web::TracingLogger;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::cache::CalendarCache;
use crate::clock::Clock;
use crate::config::Settings;
use crate::events::Event;
use crate::jobs;
use crate::kakao::KakaoClient;
use crate::metrics::Metrics;
use crate::outbox::UnlinkWorker;
use crate::realtime::{hub::Hub, metrics::RealtimeMetrics, EventSink, Realtime};
use crate::redis_link::RedisLink;
use crate::routes;
use crate::routes::openapi::ApiDoc;
use crate::sessions::{Change, LiveView, SessionStore};
use crate::state::AppState;
use ppodok_tokens::livekit::LivekitKeys;

pub struct Application {
    port: u16,
    server: Server,
    background: Vec<JoinHandle<()>>,
}

async fn connect_redis(
    settings: &crate::config::RedisSettings,
    commands: prometheus::IntCounter,
) -> anyhow::Result<RedisLink> {
    let timeout = Duration::from_millis(settings.command_timeout_millis.max(1));
    let config = Config::from_url(&settings.url)?;
    let client = Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = timeout.max(Duration::from_secs(1));
            c.internal_command_timeout = timeout.max(Duration::from_secs(1));
        })
        .with_performance_config(|p| {
            p.default_command_timeout = timeout;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 1_000, 2))
        .build()?;
    client.init().await?;
    Ok(RedisLink::new(
        client,
        timeout,
        Duration::from_millis(settings.retry_after_millis),
        commands,
    ))
}

/// Applies the replica bus's session events to this process's session view.
struct SessionSink(Arc<LiveView>);

impl EventSink for SessionSink {
    fn apply(&self, event: &Event) {
        let (change, epoch) = match event {
            Event::RevokeSession { sid, epoch } => (Change::Session { sid: sid.clone() }, *epoch),
            Event::RevokeMember { member_id, epoch }
            | Event::MemberChanged { member_id, epoch } => (
                Change::Member {
                    member_id: *member_id,
                },
                *epoch,
            ),
            _ => return,
        };
        self.0.apply(&change, epoch);
    }
}

/// Middleware: counts every request under its route pattern (`/api/v1/groups/{groupId}`), so
/// label cardinality stays bounded; unknown paths share the label `unmatched`.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().as_str().to_owned();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let res = next.call(req).await?;
    if let Some(state) = state {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        state.metrics.observe(
            &method,
            &route,
            res.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(res)
}

fn cors(origins: &[String]) -> Cors {
    let base = Cors::default()
        .allow_any_method()
        .allow_any_header()
        .max_age(3600);
    if origins.iter().any(|o| o == "*") {
        base.allow_any_origin()
    } else {
        origins.iter().fold(base, |c, o| c.allowed_origin(o))
    }
}

/// The web client's build, when `web.dir` names one.
fn load_web_assets(dir: &str) -> anyhow::Result<Option<web::Data<crate::web::WebAssets>>> {
    if dir.trim().is_empty() {
        return Ok(None);
    }
    match crate::web::WebAssets::load(std::path::Path::new(dir))? {
        Some(assets) => {
            tracing::info!(dir, files = assets.len(), "serving the web client at /");
            Ok(Some(web::Data::new(assets)))
        }
        None => {
            tracing::info!(
                dir,
                "web client not built: not serving it (npm run build in web/)"
            );
            Ok(None)
        }
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Clock::System).await
    }

    /// As `build`, with the clock the service reads "now" from (tests pass a manual one).
    pub async fn build_with_clock(settings: Settings, clock: Clock) -> anyhow::Result<Self> {
        settings.validate().map_err(anyhow::Error::msg)?;
        let grid = settings.slot_grid().expect("validated");
        let ranking_days = ppodok_domain::periods::DayBoundary::new(
            settings
                .time
                .zone
                .parse()
                .map_err(|_| anyhow::anyhow!("bad time.zone"))?,
            settings.day_boundary_minutes().expect("validated"),
        )
        .expect("validated boundary");
        let zone: chrono_tz::Tz = settings
            .time
            .zone
            .parse()
            .map_err(|_| anyhow::anyhow!("bad time.zone"))?;

        let metrics = Metrics::new();
        let dbs = crate::db::connect_and_migrate(&settings.database).await?;
        // The session view's sync runs on a handle without the statement counter: what
        // `db_statements_total` counts is the work of requests and jobs.
        let sync_db = dbs.read.clone();
        let mut db = dbs.write;
        let statements = metrics.db_statements.clone();
        db.set_metric_callback(move |_| statements.inc());
        let read = if dbs.separate_read {
            let mut read = dbs.read;
            let statements = metrics.db_statements.clone();
            read.set_metric_callback(move |_| statements.inc());
            read
        } else {
            db.clone()
        };
        let sessions = SessionStore::new(
            db.clone(),
            read.clone(),
            sync_db,
            Duration::from_millis(settings.auth.session_max_staleness_millis),
        );
        sessions.sync().await?;
        let redis = if settings.uses_redis() {
            Some(Arc::new(
                connect_redis(&settings.redis, metrics.redis_commands.clone()).await?,
            ))
        } else {
            None
        };
        let secret = if settings.auth.jwt_secret.is_empty() {
            tracing::warn!("auth.jwt_secret is empty: using a random secret, tokens will not survive a restart");
            use rand::RngCore;
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            bytes.to_vec()
        } else {
            settings.auth.jwt_secret.as_bytes().to_vec()
        };
        let tokens = MemberTokenCodec::new(
            &secret,
            &settings.auth.issuer,
            settings.auth.access_ttl_secs,
            settings.auth.refresh_ttl_secs,
        );
        let kakao = KakaoClient::new(settings.kakao.clone());
        let unlink_wake = Arc::new(Notify::new());
        let mut background = vec![
            sessions.spawn_sync(Duration::from_millis(
                settings.auth.session_sync_millis.max(10),
            )),
            tokio::spawn(
                UnlinkWorker::new(
                    db.clone(),
                    kakao.clone(),
                    settings.kakao.clone(),
                    unlink_wake.clone(),
                )
                .run(),
            ),
        ];

        let cache_ttl = Duration::from_secs(settings.cache.calendar_ttl_secs);
        let cache_counters = crate::cache::CacheCounters {
            computations: metrics.calendar_computations.clone(),
            hits: metrics.calendar_hits.clone(),
        };
        let calendar_cache = match &redis {
            Some(link) => CalendarCache::redis(
                read.clone(),
                link.clone(),
                &settings.redis.key_prefix,
                cache_ttl,
                cache_counters,
            ),
            None => CalendarCache::in_memory(read.clone(), cache_ttl, cache_counters),
        };
        let livekit = (!settings.livekit.api_secret.is_empty())
            .then(|| LivekitKeys::new(&settings.livekit.api_key, &settings.livekit.api_secret));
        let video_nodes = Arc::new(crate::placement::VideoNodes::new(
            &settings.livekit,
            livekit.clone(),
            redis
                .clone()
                .map(|link| (link, settings.redis.key_prefix.clone())),
        )?);
        let hub = Arc::new(Hub::new(RealtimeMetrics::register(metrics.registry())));
        let realtime = match &redis {
            Some(link) => {
                let channel = format!("{}realtime", settings.redis.key_prefix);
                let origin = uuid::Uuid::new_v4().simple().to_string();
                background.push(
                    crate::realtime::listen(
                        &settings.redis.url,
                        channel.clone(),
                        origin.clone(),
                        vec![
                            hub.clone() as Arc<dyn EventSink>,
                            Arc::new(SessionSink(sessions.view().clone())),
                        ],
                    )
                    .await?,
                );
                let bus_metrics = crate::realtime::BusMetrics::register(metrics.registry());
                let realtime = Realtime::redis(hub, link.clone(), channel, origin, bus_metrics);
                background.extend(realtime.retry_pending(Duration::from_millis(100)));
                realtime
            }
            None => Realtime::local(hub),
        };
        let limits = crate::limits::RateLimiter::new(
            settings.limits.clone(),
            redis
                .clone()
                .map(|link| (link, settings.redis.key_prefix.clone())),
            metrics.registry(),
        );
        let passwords = crate::passwords::Passwords::new(
            settings.limits.password_hash_concurrency,
            settings.limits.password_hash_queue,
        );
        let push = Arc::new(crate::push::Push::new(
            settings.push.clone(),
            metrics.registry(),
        )?);
        let state = web::Data::new(AppState {
            db,
            read,
            redis,
            sessions,
            tokens,
            kakao,
            unlink_wake,
            zone,
            clock,
            grid,
            ranking_days,
            metrics,
            calendar_cache,
            realtime,
            livekit,
            video_nodes,
            limits,
            passwords,
            push,
            settings: settings.clone(),
        });
        if settings.push.enabled {
            let worker = crate::push::worker::Worker::new(
                state.db.clone(),
                state.clock.clone(),
                state.zone,
                state.push.clone(),
                Arc::new(state.realtime.clone()),
            );
            background.push(tokio::spawn(worker.run()));
        }

        // Warm the calendars before serving, so the first readers after a restart hit the cache;
        // a slow database only delays start-up by the budget, then warming goes on in the background.
        if settings.cache.warm_on_boot {
            let warming = jobs::warm_calendars(&state);
            match tokio::time::timeout(Duration::from_secs(10), warming).await {
                Ok(Ok(groups)) => tracing::info!(groups, "calendar cache warmed"),
                Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "calendar warm-up failed"),
                Err(_) => tracing::warn!("calendar warm-up exceeded its start-up budget"),
            }
        }
        if settings.jobs.enabled {
            background.push(tokio::spawn(jobs::scheduler(
                state.clone(),
                Duration::from_millis(settings.jobs.tick_millis.max(10)),
            )));
        }

        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))?;
        let port = listener.local_addr()?.port();
        let json_limit = settings.server.json_limit_bytes;
        let dev_login = settings.auth.dev_login;
        let origins = settings.cors.allowed_origins.clone();
        let openapi = ApiDoc::openapi();
        let web_assets = load_web_assets(&settings.web.dir)?;
        let mut server = HttpServer::new(move || {
            let app = App::new()
                .app_data(state.clone())
                .app_data(routes::json_config(json_limit))
                .app_data(routes::query_config())
                .app_data(routes::path_config())
                .wrap(from_fn(track))
                .wrap(cors(&origins))
                .wrap(TracingLogger::default())
                .service(
                    SwaggerUi::new("/swagger-ui/{_:.*}")
                        .url("/api-docs/openapi.json", openapi.clone()),
                )
                .configure(|cfg| routes::configure(cfg, dev_login));
            match &web_assets {
                Some(assets) => app
                    .app_data(assets.clone())
                    .default_service(web::to(crate::web::serve)),
                None => app.default_service(web::to(routes::not_found)),
            }
        })
        .listen(listener)?
        .shutdown_timeout(settings.server.shutdown_timeout_secs);
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = server.run();
        tracing::info!(host = %settings.server.host, port, "ppodok-api listening");
        Ok(Self {
            port,
            server,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT (graceful: in-flight requests finish) or the server is stopped.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        for task in self.background {
            task.abort();
        }
        result
    }
}
