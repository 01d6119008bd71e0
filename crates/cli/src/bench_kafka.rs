//! `imagelake bench kafka`: ingest throughput from the images topic into stored and recorded
//! images (processing excluded), beside the physical limit of the same path: an rdkafka
//! consumer alone that reads the same topic and writes the same bytes to the same kind of store
//! with the same durability (the object, then one SQLite row committed with
//! `synchronous=FULL`), storing offsets the same way.

use std::{path::PathBuf, sync::Arc, time::Instant};

use clap::Args;
use imagelake_core::records::{ApiKey, Customer};
use imagelake_runtime::{AppState, Settings, settings::Secret};
use object_store::{ObjectStoreExt, PutPayload, local::LocalFileSystem, path::Path as ObjectPath};
use rdkafka::{
    ClientConfig, Message,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{Consumer, StreamConsumer},
};
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct KafkaBenchArgs {
    /// Folder of photos; those of 1.2-3.5 MB are used.
    corpus: PathBuf,
    #[arg(long, env = "KAFKA_BROKERS")]
    brokers: String,
    /// Each photo is sent once per customer, so every message is a distinct image.
    #[arg(long, default_value_t = 10)]
    customers: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

pub async fn run(args: KafkaBenchArgs) -> anyhow::Result<()> {
    let photos: Vec<Vec<u8>> = crate::client::collect_files(std::slice::from_ref(&args.corpus))?
        .into_iter()
        .filter_map(|f| std::fs::read(f).ok())
        .filter(|b| (1_200_000..=3_500_000).contains(&b.len()))
        .collect();
    anyhow::ensure!(!photos.is_empty(), "no photos of 1.2-3.5 MB in the corpus");
    let topic = format!("bench-images-{}", std::process::id());
    create_topic(&args.brokers, &topic).await?;
    let work = std::env::temp_dir().join(format!("imagelake-bench-kafka-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let customers: Vec<String> = (0..args.customers)
        .map(|_| imagelake_core::CustomerId::new().to_string())
        .collect();
    let producer = imagelake_kafka::ImageProducer::connect(
        &args.brokers,
        &topic,
        50 << 20,
        &Default::default(),
    )
    .await?;
    let (mut messages, mut bytes) = (0usize, 0u64);
    for customer in &customers {
        for (n, photo) in photos.iter().enumerate() {
            let key = format!("bench-{customer}-{n}");
            let out = imagelake_kafka::Outgoing {
                customer,
                filename: "bench.jpg",
                idempotency_key: &key,
            };
            producer.send_bytes(&out, photo).await?;
            messages += 1;
            bytes += photo.len() as u64;
        }
    }
    println!(
        "topic {topic}: {messages} messages, {:.1} MB, {} photos x {} customers",
        bytes as f64 / 1e6,
        photos.len(),
        customers.len()
    );
    let (mut ingest, mut baseline) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let dir = work.join(format!("round-{round}"));
        baseline.push(run_baseline(&args.brokers, &topic, &dir.join("baseline"), messages).await?);
        ingest.push(
            run_ingest(
                &args.brokers,
                &topic,
                &dir.join("ingest"),
                &customers,
                messages,
            )
            .await?,
        );
        println!(
            "round {round}: baseline {:.2} s, imagelake {:.2} s",
            baseline[round], ingest[round]
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, i) = (median(&mut baseline), median(&mut ingest));
    let (wb, wi) = store_only(&work.join("store-only"), &photos, &customers).await?;
    let mb = bytes as f64 / 1e6;
    println!(
        "baseline (rdkafka + object + SQLite row): median {b:.2} s, {:.1} images/s, {:.1} MB/s",
        messages as f64 / b,
        mb / b
    );
    println!(
        "imagelake kafka ingest: median {i:.2} s, {:.1} images/s, {:.1} MB/s; {:.0}% of the baseline",
        messages as f64 / i,
        mb / i,
        100.0 * b / i
    );
    println!(
        "without the broker, per message: baseline write {:.1} ms, imagelake take-in {:.1} ms ({:.0}%)",
        wb * 1e3 / messages as f64,
        wi * 1e3 / messages as f64,
        100.0 * wb / wi
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// The same messages written without Kafka: the bare write of the baseline against what the
/// consumer does with a message (customer lookup, checks, hash, object, record); seconds each.
async fn store_only(
    dir: &std::path::Path,
    photos: &[Vec<u8>],
    customers: &[String],
) -> anyhow::Result<(f64, f64)> {
    let sink = BaselineSink::open(&dir.join("baseline"))?;
    let started = Instant::now();
    let mut n = 0;
    for _ in customers {
        for photo in photos {
            sink.write(n, bytes::Bytes::copy_from_slice(photo)).await?;
            n += 1;
        }
    }
    let baseline = started.elapsed().as_secs_f64();
    let state = ingest_state(&dir.join("ingest"), "127.0.0.1:9", "unused")?;
    for id in customers {
        let (customer, key) = bench_customer(id.parse()?);
        state.store.insert_customer(&customer, &key).await?;
    }
    let started = Instant::now();
    for (c, id) in customers.iter().enumerate() {
        for (p, photo) in photos.iter().enumerate() {
            let customer = id.parse()?;
            state.store.get_customer(customer).await?;
            let upload = imagelake_runtime::ingest::Upload {
                customer,
                bytes: bytes::Bytes::copy_from_slice(photo),
                filename: Some("bench.jpg".to_owned()),
                idempotency_key: Some(format!("kafka:bench:{c}:{p}")),
                source: imagelake_core::records::Source::Kafka,
                delivery: Some(format!("kafka:bench:{c}:{p}")),
            };
            imagelake_runtime::ingest::accept(&state, upload)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        }
    }
    Ok((baseline, started.elapsed().as_secs_f64()))
}

/// The bare write: the object, then one row committed with `synchronous=FULL`.
struct BaselineSink {
    objects: LocalFileSystem,
    db: Arc<std::sync::Mutex<rusqlite::Connection>>,
}

impl BaselineSink {
    fn open(dir: &std::path::Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("objects"))?;
        let db = rusqlite::Connection::open(dir.join("baseline.sqlite"))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch("CREATE TABLE images (id TEXT PRIMARY KEY, bytes INTEGER NOT NULL)")?;
        Ok(Self {
            objects: LocalFileSystem::new_with_prefix(dir.join("objects"))?,
            db: Arc::new(std::sync::Mutex::new(db)),
        })
    }

    async fn write(&self, n: usize, payload: bytes::Bytes) -> anyhow::Result<()> {
        let size = payload.len() as i64;
        let key = ObjectPath::from(format!("originals/bench/{n}"));
        self.objects
            .put(&key, PutPayload::from_bytes(payload))
            .await?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let conn = db.lock().unwrap_or_else(|e| e.into_inner());
            conn.execute(
                "INSERT INTO images (id, bytes) VALUES (?1, ?2)",
                rusqlite::params![n.to_string(), size],
            )
        })
        .await??;
        Ok(())
    }
}

/// A customer record with a key nobody holds.
fn bench_customer(id: imagelake_core::CustomerId) -> (Customer, ApiKey) {
    let now = chrono::Utc::now();
    let customer = Customer {
        id,
        name: format!("bench {id}"),
        email: "bench@example.test".to_owned(),
        plan: "standard".to_owned(),
        created_at: now,
        updated_at: now,
    };
    let key = ApiKey {
        id: imagelake_core::KeyId::new(),
        customer_id: id,
        prefix: "bench".to_owned(),
        hash: format!("bench-{id}"),
        wire: None,
        created_at: now,
        revoked_at: None,
    };
    (customer, key)
}

async fn create_topic(brokers: &str, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    for result in admin.create_topics(&[new], &AdminOptions::new()).await? {
        result.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

/// An embedded system whose stream reads `topic` (no workers run: processing is excluded).
fn ingest_state(dir: &std::path::Path, brokers: &str, topic: &str) -> anyhow::Result<AppState> {
    std::fs::create_dir_all(dir)?;
    let mut settings = Settings {
        data_dir: dir.to_path_buf(),
        admin_token: Some(Secret("bench-admin".to_owned())),
        ..Settings::default()
    };
    settings.kafka.brokers = Some(brokers.to_owned());
    settings.kafka.images_topic = topic.to_owned();
    settings.kafka.group_id = format!("bench-ingest-{}", dir.display());
    AppState::embedded(settings)
}

/// imagelake's consumer from the start of the topic into a fresh data dir, until every message
/// is stored and recorded; seconds.
async fn run_ingest(
    brokers: &str,
    topic: &str,
    dir: &std::path::Path,
    customers: &[String],
    messages: usize,
) -> anyhow::Result<f64> {
    let state = ingest_state(dir, brokers, topic)?;
    for id in customers {
        let (customer, key) = bench_customer(id.parse()?);
        state.store.insert_customer(&customer, &key).await?;
    }
    let stop = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(imagelake_kafka::run(state.clone(), stop.clone(), true));
    loop {
        let stored: u64 = ["created", "duplicate", "replay", "dead_letter"]
            .iter()
            .map(|o| {
                state
                    .metrics
                    .stream_messages
                    .get_or_create(&vec![("outcome", (*o).to_owned())])
                    .get()
            })
            .sum();
        if stored as usize >= messages {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.cancel();
    task.await??;
    Ok(elapsed)
}

/// The physical limit: consume, write the object, commit one row, store the offset.
async fn run_baseline(
    brokers: &str,
    topic: &str,
    dir: &std::path::Path,
    messages: usize,
) -> anyhow::Result<f64> {
    let sink = BaselineSink::open(dir)?;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-baseline-{}", dir.display()))
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "52428800")
        .set("receive.message.max.bytes", "54525952")
        .create()?;
    consumer.subscribe(&[topic])?;
    let started = Instant::now();
    for n in 0..messages {
        let message = consumer.recv().await?;
        let payload = bytes::Bytes::copy_from_slice(message.payload().unwrap_or_default());
        sink.write(n, payload).await?;
        consumer.store_offset_from_message(&message)?;
    }
    Ok(started.elapsed().as_secs_f64())
}
