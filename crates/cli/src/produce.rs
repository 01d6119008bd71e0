//! `imagelake kafka produce`: pushes files and folders into the image stream, as raw records or,
//! above a size, as claim-checks whose bytes go to the object store first. And `imagelake kafka
//! create-topics`, which makes the topics the settings name.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use imagelake_kafka::{ImageProducer, Outgoing};
use object_store::{ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use crate::client::collect_files;

#[derive(Subcommand)]
pub enum KafkaCommand {
    /// Push files and folders (searched recursively) into the images topic.
    Produce(ProduceArgs),
    /// Create the images, dead-letter and events topics the settings name (existing ones are
    /// left as they are).
    CreateTopics(CreateTopicsArgs),
}

#[derive(Args)]
pub struct CreateTopicsArgs {
    /// Partitions of the images and events topics: the most consumers that can be busy at once.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// Brokers (default: kafka.brokers of the settings).
    #[arg(long, env = "IMAGELAKE_KAFKA_BROKERS")]
    brokers: Option<String>,
    /// Settings file naming the topics, `limits.max_body_bytes`, `retention` and the
    /// librdkafka passthrough.
    #[arg(long, env = "IMAGELAKE_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args)]
pub struct ProduceArgs {
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The customer the images belong to.
    #[arg(long)]
    customer: String,
    /// The images topic (default: kafka.images_topic of the settings).
    #[arg(long)]
    topic: Option<String>,
    /// Brokers (default: kafka.brokers of the settings).
    #[arg(long, env = "IMAGELAKE_KAFKA_BROKERS")]
    brokers: Option<String>,
    /// Send files larger than this many bytes as claim-checks: their bytes are written under
    /// kafka.claims_prefix of the configured object store, and the message names them.
    #[arg(long)]
    claim_above: Option<u64>,
    /// Settings file for the brokers, topic, librdkafka passthrough and the claims' object store.
    #[arg(long, env = "IMAGELAKE_CONFIG")]
    config: Option<PathBuf>,
}

pub async fn run(cmd: KafkaCommand) -> anyhow::Result<()> {
    match cmd {
        KafkaCommand::Produce(args) => produce(args).await,
        KafkaCommand::CreateTopics(args) => create_topics(args).await,
    }
}

/// `--brokers`, or the settings' brokers.
fn brokers(
    flag: &Option<String>,
    settings: &imagelake_runtime::settings::Settings,
) -> anyhow::Result<String> {
    flag.clone()
        .or_else(|| settings.kafka.brokers.clone())
        .context("no brokers: pass --brokers, IMAGELAKE_KAFKA_BROKERS or kafka.brokers")
}

async fn create_topics(args: CreateTopicsArgs) -> anyhow::Result<()> {
    let settings = crate::settings::file_settings(args.config.as_deref())?;
    let brokers = brokers(&args.brokers, &settings)?;
    let layout = imagelake_kafka::Layout {
        partitions: args.partitions,
        replication: args.replication_factor,
    };
    for (topic, outcome) in imagelake_kafka::create_topics(&settings, &brokers, &layout).await? {
        let said = match outcome {
            imagelake_kafka::Created::Created => "created",
            imagelake_kafka::Created::Exists => "exists",
        };
        println!("{said}: {topic}");
    }
    Ok(())
}

async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let customer: imagelake_core::CustomerId = args.customer.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "--customer {:?} is not a customer id (the id `customers create` printed)",
            args.customer
        )
    })?;
    let customer = customer.to_string();
    let settings = crate::settings::file_settings(args.config.as_deref())?;
    let kafka = &settings.kafka;
    let brokers = brokers(&args.brokers, &settings)?;
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| kafka.images_topic.clone());
    let producer = ImageProducer::connect(
        &brokers,
        &topic,
        settings.limits.max_body_bytes,
        &kafka.config,
    )
    .await?;
    let objects = match args.claim_above {
        Some(_) => Some(imagelake_runtime::state::object_store(&settings)?),
        None => None,
    };
    let files = collect_files(&args.paths)?;
    let bar = crate::client::byte_progress(&files)?;
    let (mut sent, mut claims, mut failed) = (0, 0, Vec::new());
    for file in &files {
        bar.inc(std::fs::metadata(file).map_or(0, |m| m.len()));
        let bytes = match read_acceptable(file, &settings).await {
            Ok(bytes) => bytes,
            Err(why) => {
                failed.push((file.clone(), why));
                continue;
            }
        };
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let key = format!("produce:{}", hex::encode(Sha256::digest(&bytes)));
        let out = Outgoing {
            customer: &customer,
            filename: &name,
            idempotency_key: &key,
        };
        let as_claim = args
            .claim_above
            .is_some_and(|limit| bytes.len() as u64 > limit);
        let result = match (&objects, as_claim) {
            (Some(objects), true) => {
                let safe = imagelake_runtime::ingest::clean_filename(&name)
                    .unwrap_or_else(|| "image".to_owned());
                let location = kafka.claims_prefix.claim(claim_folder(&key), &safe);
                let stored = objects
                    .put(&location, PutPayload::from(bytes.clone()))
                    .await;
                match stored {
                    Ok(_) => producer.send_claim(&out, location.as_ref()).await,
                    Err(e) => Err(e.into()),
                }
            }
            _ => producer.send_bytes(&out, &bytes).await,
        };
        match result {
            Ok(()) => {
                sent += 1;
                claims += usize::from(as_claim);
            }
            Err(e) => failed.push((file.clone(), format!("{e:#}"))),
        }
    }
    bar.finish_and_clear();
    println!(
        "sent: {sent} to {topic} ({claims} as claim-checks), not sent: {}",
        failed.len()
    );
    for (file, why) in &failed {
        println!("  not sent {}: {why}", file.display());
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} files were not sent", failed.len())
    }
}

/// The file's bytes, unless every consumer with these settings would send them to the dead
/// letters anyway: over the body limit (refused before reading it), not a supported image, or
/// over the pixel or decode limits by its headers. A broken image is sent: the consumer records
/// it as failed, with the decoder's reason. Whether the customer exists is the consumer's
/// question; the metadata store may not be reachable from where images are pushed.
async fn read_acceptable(
    file: &std::path::Path,
    settings: &imagelake_runtime::settings::Settings,
) -> Result<Vec<u8>, String> {
    let max_body_bytes = settings.limits.max_body_bytes;
    let size = tokio::fs::metadata(file)
        .await
        .map_err(|e| e.to_string())?
        .len();
    if size > max_body_bytes {
        return Err(format!(
            "{size} bytes is over limits.max_body_bytes ({max_body_bytes})"
        ));
    }
    let bytes = tokio::fs::read(file).await.map_err(|e| e.to_string())?;
    match imagelake_imaging::inspect(&bytes, &settings.imaging_options()) {
        Ok(_) | Err(imagelake_imaging::ImagingError::Corrupt(_)) => Ok(bytes),
        Err(refused) => Err(refused.to_string()),
    }
}

/// A folder name for one claim, from the content hash: a second push of a file reuses it.
fn claim_folder(key: &str) -> &str {
    let hash = key.trim_start_matches("produce:");
    &hash[..hash.len().min(32)]
}
