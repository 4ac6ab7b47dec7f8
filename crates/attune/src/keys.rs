//! `attune keys new|rotate|status`: the life of the encryption keys (docs/datastore.md,
//! "Key rotation"). The re-sealing itself is [`attune_core::keyring::rotate`].

use std::time::{Duration, Instant};

use anyhow::bail;
use attune_core::bootstrap::Keys;
use attune_core::keyring::{rotate, Keyring};
use attune_core::Config;
use sqlx::PgPool;

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Make a new key current: in the data dir (the old one is kept for reading), or, when
    /// the key comes from ATTUNE_ENCRYPTION_KEY, print the settings to use.
    New,
    /// Re-seal every encrypted value under the current key, in batches, while the services
    /// run. Safe to interrupt: run it again to carry on.
    Rotate {
        /// Values re-sealed per batch (one statement each).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        batch_size: i64,
        /// Stop after this many batches (spread the work over several runs).
        #[arg(long)]
        max_batches: Option<u64>,
    },
    /// How many sealed values each key version holds.
    Status,
}

/// Runs `keys new`, which needs no database; false for the others.
pub fn run_offline(config: &Config, command: &KeysCommand) -> anyhow::Result<bool> {
    if !matches!(command, KeysCommand::New) {
        return Ok(false);
    }
    if config.datastore.encryption_key.is_some() {
        let keys = Keys::load_or_generate(config)?;
        let version = keys.encryption.newest_version() + 1;
        let key = Keyring::random_key();
        let (current, mut previous) = keys.encryption.formatted();
        previous.insert(0, current);
        eprintln!(
            "attune: the key comes from the environment or the config file: set these in every process, restart them, then run `attune keys rotate`"
        );
        println!("ATTUNE_ENCRYPTION_KEY={}", Keyring::format_key(version, &key));
        println!("ATTUNE_ENCRYPTION_PREVIOUS_KEYS={}", previous.join(","));
    } else {
        let version = Keys::add_generated_key(config)?;
        println!(
            "key version {version} is now current in {}; restart the services, then run `attune keys rotate`",
            config.data_dir.join("secrets/encryption_key").display()
        );
    }
    Ok(true)
}

pub async fn run(config: &Config, pool: &PgPool, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::New => unreachable!("run_offline handles `keys new`"),
        KeysCommand::Status => {
            let keys = Keys::load_or_generate(config)?;
            println!(
                "current key version: {} (this configuration holds versions {})",
                keys.encryption.current_version(),
                keys.encryption.versions()
            );
            let counts = rotate::versions(pool).await?;
            if counts.is_empty() {
                println!("no sealed values");
            }
            for c in counts {
                println!("{:<18} version {:>3}: {}", c.what, c.version, c.count);
            }
            Ok(())
        }
        KeysCommand::Rotate { batch_size, max_batches } => {
            let keys = Keys::load_or_generate(config)?;
            let version = keys.encryption.current_version();
            eprintln!("attune: re-sealing every encrypted value under key version {version}");
            let mut last_report = Instant::now();
            let progress = rotate::rotate(pool, &keys.encryption, batch_size, max_batches, |p| {
                if last_report.elapsed() >= Duration::from_secs(1) {
                    last_report = Instant::now();
                    eprintln!(
                        "attune: {} datastore items and {} secret parameters re-sealed so far",
                        p.items, p.parameters
                    );
                }
            })
            .await?;
            println!(
                "re-sealed {} datastore items and the secret parameters of {} executions under key version {version} ({} batches)",
                progress.items, progress.parameters, progress.batches
            );
            for failure in &progress.failed {
                eprintln!("attune: not re-sealed: {failure}");
            }
            if !progress.failed.is_empty() {
                bail!("{} values could not be opened and were left as they are", progress.failed.len());
            }
            if progress.unfinished {
                println!("stopped after {} batches (--max-batches): run it again to carry on", progress.batches);
            }
            Ok(())
        }
    }
}
