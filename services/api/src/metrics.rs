//! Prometheus metrics: requests by route and status, latency, database pool.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use sea_orm::DatabaseConnection;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    db_pool: IntGaugeVec,
    job_runs: IntCounterVec,
    dependency_up: IntGaugeVec,
    pub db_statements: prometheus::IntCounter,
    pub calendar_computations: prometheus::IntCounter,
    pub calendar_hits: prometheus::IntCounter,
    pub redis_commands: prometheus::IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("ppodok_api".into()), None).expect("static prefix");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by method, route pattern and status",
            ),
            &["method", "route", "status"],
        )
        .expect("static metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route pattern",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )
        .expect("static metric");
        let db_pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections by state"),
            &["state"],
        )
        .expect("static metric");
        let job_runs = IntCounterVec::new(
            Opts::new("job_runs_total", "Scheduled job runs by this process"),
            &["job"],
        )
        .expect("static metric");
        // Sampled on each scrape, so an alert sees a replica that lost its database or Redis
        // even while nobody sends it traffic.
        let dependency_up = IntGaugeVec::new(
            Opts::new(
                "dependency_up",
                "1 when this replica reached the dependency at the last scrape, else 0",
            ),
            &["dependency"],
        )
        .expect("static metric");
        let db_statements =
            prometheus::IntCounter::new("db_statements_total", "SQL statements executed")
                .expect("static metric");
        let calendar_computations = prometheus::IntCounter::new(
            "calendar_computations_total",
            "Calendar reads computed from the database",
        )
        .expect("static metric");
        let calendar_hits = prometheus::IntCounter::new(
            "calendar_cache_hits_total",
            "Calendar reads served from the cache",
        )
        .expect("static metric");
        let redis_commands = prometheus::IntCounter::new(
            "redis_commands_total",
            "Redis commands sent by requests and jobs (probes and the pub/sub listener excluded)",
        )
        .expect("static metric");
        for c in [
            Box::new(redis_commands.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(requests.clone()),
            Box::new(latency.clone()),
            Box::new(db_pool.clone()),
            Box::new(job_runs.clone()),
            Box::new(dependency_up.clone()),
            Box::new(db_statements.clone()),
            Box::new(calendar_computations.clone()),
            Box::new(calendar_hits.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Self {
            registry,
            requests,
            latency,
            db_pool,
            job_runs,
            dependency_up,
            db_statements,
            calendar_computations,
            calendar_hits,
            redis_commands,
        }
    }

    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(seconds);
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn job_ran(&self, job: &str) {
        self.job_runs.with_label_values(&[job]).inc();
    }

    /// Records whether a dependency (`database`, `redis`) answered.
    pub fn set_dependency_up(&self, dependency: &str, up: bool) {
        self.dependency_up
            .with_label_values(&[dependency])
            .set(i64::from(up));
    }

    /// The text exposition, with pool gauges sampled now.
    pub fn render(&self, db: &DatabaseConnection) -> String {
        let (size, idle) = pool_stats(db);
        self.db_pool.with_label_values(&["open"]).set(size as i64);
        self.db_pool.with_label_values(&["idle"]).set(idle as i64);
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding to a Vec cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn pool_stats(db: &DatabaseConnection) -> (u32, usize) {
    match db {
        DatabaseConnection::SqlxMySqlPoolConnection(_) => {
            let p = db.get_mysql_connection_pool();
            (p.size(), p.num_idle())
        }
        DatabaseConnection::SqlxSqlitePoolConnection(_) => {
            let p = db.get_sqlite_connection_pool();
            (p.size(), p.num_idle())
        }
        _ => (0, 0),
    }
}
