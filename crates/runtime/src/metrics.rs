//! Prometheus metrics, rendered in the text exposition format at `/metrics`.

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

pub type Labels = Vec<(&'static str, String)>;

/// The window of `imagelake_stream_messages_per_second`.
pub const STREAM_RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Metrics {
    registry: Registry,
    /// Uploads by outcome (`created`, `duplicate`, `replay`, `refused`).
    pub uploads: Family<Labels, Counter>,
    pub upload_bytes: Counter,
    /// Seconds from upload to processed, and the processing step alone.
    pub end_to_end_seconds: Histogram,
    pub processing_seconds: Histogram,
    /// Images that ended `failed`, by error code.
    pub processing_failures: Family<Labels, Counter>,
    pub processed: Counter,
    pub dead_letters: Counter,
    pub retries: Counter,
    pub skipped: Counter,
    pub stream_messages: Family<Labels, Counter>,
    /// Dead letters of the image stream produced back to the images topic.
    pub stream_redriven: Counter,
    /// Every stream message settled, whatever the outcome: the base of `stream_rate`.
    pub stream_settled: Counter,
    /// Messages settled per second over the last [`STREAM_RATE_WINDOW`], as Kafka's own clients
    /// report `records-consumed-rate`.
    pub stream_rate: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub stream_lag: Family<Labels, Gauge>,
    /// Lifecycle events delivered to the events topic, and sends the broker refused.
    pub events_published: Counter,
    pub event_publish_failures: Counter,
    pub expired: Counter,
    pub queue_depth: Gauge,
    /// 1 for each background task's current state (`running`, `idle`, `failing`), 0 for the
    /// others.
    pub task_state: Family<Labels, Gauge>,
    /// Steps of a task tried again after a failure.
    pub task_restarts: Family<Labels, Counter>,
    /// The lake writer: what it wrote, by table.
    pub lake: LakeMetrics,
    /// The scheduled jobs, by job.
    pub jobs: JobMetrics,
    /// The SQL doors' queries.
    pub sql: SqlMetrics,
}

/// What the SQL doors report.
pub struct SqlMetrics {
    /// Queries by door (`http`, `cli`, `pg`) and outcome (`ok`, `truncated` or the error code).
    pub queries: Family<Labels, Counter>,
    /// How long queries took, whatever the outcome.
    pub seconds: Histogram,
    /// Rows answered.
    pub rows: Counter,
    /// Queries running now.
    pub running: Gauge,
}

impl Default for SqlMetrics {
    fn default() -> Self {
        Self {
            queries: Family::default(),
            seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            rows: Counter::default(),
            running: Gauge::default(),
        }
    }
}

impl SqlMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "sql_queries",
            "SQL queries by door and outcome",
            self.queries.clone(),
        );
        r.register(
            "sql_query_seconds",
            "How long SQL queries took",
            self.seconds.clone(),
        );
        r.register("sql_rows", "Rows SQL queries answered", self.rows.clone());
        r.register(
            "sql_queries_running",
            "SQL queries running now",
            self.running.clone(),
        );
    }
}

/// What the scheduler reports, by job.
#[derive(Default)]
pub struct JobMetrics {
    /// When the newest successful run ended (Unix seconds).
    pub last_success: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// How long the newest successful run took.
    pub duration: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Attempts that failed.
    pub failures: Family<Labels, Counter>,
    /// Runs of the schedule not finished by their deadline.
    pub late: Family<Labels, Gauge>,
}

impl JobMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "job_last_success_timestamp_seconds",
            "When the newest successful run of a job ended (Unix seconds)",
            self.last_success.clone(),
        );
        r.register(
            "job_duration_seconds",
            "How long the newest successful run of a job took",
            self.duration.clone(),
        );
        r.register(
            "job_failures",
            "Attempts of a job that failed",
            self.failures.clone(),
        );
        r.register(
            "job_late",
            "Runs of a job's schedule not finished by their deadline",
            self.late.clone(),
        );
    }
}

/// What the lake writer and its doors report.
#[derive(Default)]
pub struct LakeMetrics {
    /// Rows and Parquet bytes written, by table (`quarantine/<table>` for quarantined records).
    pub rows: Family<Labels, Counter>,
    pub bytes: Family<Labels, Counter>,
    /// Hours closed (marked complete), by table.
    pub hours_closed: Family<Labels, Counter>,
    /// Seconds since the newest hour was closed.
    pub since_close: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Records quarantined, by table.
    pub quarantined: Family<Labels, Counter>,
    /// Records dropped because a buffer was full, by table (`api_requests`).
    pub dropped: Family<Labels, Counter>,
    /// Records read and not yet written: in the local log, or held by the writer on Kafka.
    pub waiting: Gauge,
    /// Records of the lake's topics not yet taken in, by topic and partition.
    pub lag: Family<Labels, Gauge>,
}

impl LakeMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "lake_rows_written",
            "Rows written to the lake, by table",
            self.rows.clone(),
        );
        r.register(
            "lake_bytes_written",
            "Parquet bytes written to the lake, by table",
            self.bytes.clone(),
        );
        r.register(
            "lake_hours_closed",
            "Hours of a table marked complete (_SUCCESS)",
            self.hours_closed.clone(),
        );
        r.register(
            "lake_seconds_since_close",
            "Seconds since the lake writer last closed an hour",
            self.since_close.clone(),
        );
        r.register(
            "lake_records_quarantined",
            "Records that did not fit their table, kept under lake/quarantine/",
            self.quarantined.clone(),
        );
        r.register(
            "lake_records_dropped",
            "Records dropped because their buffer was full (never slowing a request)",
            self.dropped.clone(),
        );
        r.register(
            "lake_records_waiting",
            "Records read and not yet written (in the local log, or held in memory by the Kafka lake writer)",
            self.waiting.clone(),
        );
        r.register(
            "lake_consumer_lag",
            "Records of the lake's topics not yet taken in, by topic and partition",
            self.lag.clone(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let buckets = [
            0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ];
        let mut m = Self {
            registry: Registry::with_prefix("imagelake"),
            uploads: Family::default(),
            upload_bytes: Counter::default(),
            end_to_end_seconds: Histogram::new(buckets),
            processing_seconds: Histogram::new(buckets),
            processing_failures: Family::default(),
            processed: Counter::default(),
            dead_letters: Counter::default(),
            retries: Counter::default(),
            skipped: Counter::default(),
            stream_messages: Family::default(),
            stream_redriven: Counter::default(),
            stream_settled: Counter::default(),
            stream_rate: Gauge::default(),
            stream_lag: Family::default(),
            events_published: Counter::default(),
            event_publish_failures: Counter::default(),
            expired: Counter::default(),
            queue_depth: Gauge::default(),
            task_state: Family::default(),
            task_restarts: Family::default(),
            lake: LakeMetrics::default(),
            jobs: JobMetrics::default(),
            sql: SqlMetrics::default(),
        };
        let r = &mut m.registry;
        r.register("uploads", "Uploads by outcome", m.uploads.clone());
        r.register(
            "upload_bytes",
            "Bytes of accepted uploads",
            m.upload_bytes.clone(),
        );
        r.register(
            "upload_to_processed_seconds",
            "Time from upload to processed",
            m.end_to_end_seconds.clone(),
        );
        r.register(
            "processing_seconds",
            "Time to process one image",
            m.processing_seconds.clone(),
        );
        r.register(
            "processing_failures",
            "Images that ended failed, by error code",
            m.processing_failures.clone(),
        );
        r.register("images_processed", "Images processed", m.processed.clone());
        r.register(
            "dead_letters",
            "Jobs moved to the dead letters",
            m.dead_letters.clone(),
        );
        r.register(
            "stream_redriven",
            "Dead letters of the image stream produced back to the images topic",
            m.stream_redriven.clone(),
        );
        r.register(
            "processing_retries",
            "Jobs put back for a later attempt after a transient failure",
            m.retries.clone(),
        );
        r.register(
            "jobs_skipped",
            "Work that found nothing to do: a repeated notification, an image already processed, \
             deleted or expired",
            m.skipped.clone(),
        );
        r.register(
            "stream_messages",
            "Messages taken from the image stream, by outcome (created, duplicate, replay, dead_letter)",
            m.stream_messages.clone(),
        );
        r.register(
            "stream_messages_per_second",
            "Messages taken from the image stream per second, over the last 30 seconds",
            m.stream_rate.clone(),
        );
        r.register(
            "stream_consumer_lag",
            "Messages of the image stream not yet taken in, by topic and partition",
            m.stream_lag.clone(),
        );
        r.register(
            "events_published",
            "Lifecycle events delivered to the events topic",
            m.events_published.clone(),
        );
        r.register(
            "event_publish_failures",
            "Lifecycle events the broker did not take (they stay in the outbox and are sent again)",
            m.event_publish_failures.clone(),
        );
        r.register(
            "images_expired",
            "Images deleted by the retention sweeper",
            m.expired.clone(),
        );
        r.register(
            "queue_depth",
            "Jobs waiting or in progress",
            m.queue_depth.clone(),
        );
        r.register(
            "task_state",
            "Background tasks by state: 1 for the state a task is in",
            m.task_state.clone(),
        );
        r.register(
            "task_restarts",
            "Steps of a background task tried again after a failure",
            m.task_restarts.clone(),
        );
        m.lake.register(r);
        m.jobs.register(r);
        m.sql.register(r);
        m
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub fn upload(&self, outcome: &str) {
        self.uploads
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    pub fn stream(&self, outcome: &str) {
        self.stream_messages
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
        self.stream_settled.inc();
    }

    /// Copies the task board into `task_state` and `task_restarts`.
    pub fn tasks(&self, board: &crate::tasks::TaskBoard) {
        let (tasks, _) = board.snapshot();
        for (name, status) in tasks {
            for state in crate::tasks::TaskState::ALL {
                let labels = vec![
                    ("task", name.to_owned()),
                    ("state", state.as_str().to_owned()),
                ];
                self.task_state
                    .get_or_create(&labels)
                    .set(i64::from(state == status.state));
            }
            let restarts = self
                .task_restarts
                .get_or_create(&vec![("task", name.to_owned())]);
            restarts.inc_by(status.restarts.saturating_sub(restarts.get()));
        }
    }

    pub fn failure(&self, code: &str) {
        self.processing_failures
            .get_or_create(&vec![("code", code.to_owned())])
            .inc();
    }
}
