//! `zone-server`: runs one zone at a fixed tick rate.
//!
//! Until the network transport lands, `run` simulates the zone headless with in-process
//! scripted bots and logs what happens each second, so the core can be watched working.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing::info;
use zone_core::scenario::Script;
use zone_core::{Rules, Zone, ZoneConfig, ZoneId};

#[derive(Parser, Debug)]
#[command(name = "zone-server", version, about = "Authoritative MMO zone server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a zone (headless for now: in-process scripted bots play in it).
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Zone id.
    #[arg(long, env = "ZONE_ID", default_value_t = 1)]
    zone: u32,
    /// Seed of the zone's randomness.
    #[arg(long, env = "ZONE_SEED", default_value_t = 1)]
    seed: u64,
    /// Arena side length in tiles.
    #[arg(long, env = "ZONE_ARENA_SIZE", default_value_t = 256)]
    arena_size: u32,
    /// NPCs in the zone.
    #[arg(long, env = "ZONE_NPCS", default_value_t = 2_000)]
    npcs: u32,
    /// In-process scripted bot players.
    #[arg(long, env = "ZONE_BOTS", default_value_t = 100)]
    bots: u32,
    /// Rules file (TOML); defaults are built in.
    #[arg(long, env = "ZONE_RULES")]
    rules: Option<std::path::PathBuf>,
    /// Stop after this many ticks (0 = run until interrupted).
    #[arg(long, env = "ZONE_TICKS", default_value_t = 0)]
    ticks: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Run(args) => run(args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = ZoneConfig::arena(
        ZoneId(args.zone),
        args.arena_size,
        args.arena_size,
        args.npcs,
    );
    if let Some(path) = &args.rules {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading rules file {}", path.display()))?;
        config.rules = Rules::from_toml_str(&text)?;
    }
    let tick_hz = config.rules.tick_hz;
    let mut zone = Zone::new(config, args.seed).context("building the zone")?;
    let mut script = Script::new(args.seed, 1, args.bots);
    script.join_all(&mut zone);
    info!(
        zone = args.zone,
        tick_hz,
        npcs = args.npcs,
        bots = args.bots,
        "zone running (headless)"
    );

    let period = Duration::from_secs_f64(1.0 / f64::from(tick_hz));
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut hits, mut deaths, mut worst) = (0usize, 0usize, Duration::ZERO);
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                info!("interrupted; stopping");
                break;
            }
            _ = interval.tick() => {}
        }
        script.drive(&mut zone);
        let started = Instant::now();
        let out = zone.tick();
        worst = worst.max(started.elapsed());
        hits += out.combat_events.len();
        deaths += out.deaths.len();
        let tick = out.tick;
        if tick % u64::from(tick_hz) == 0 {
            let m = out.metrics;
            info!(
                tick,
                players = m.players,
                npcs = m.npcs,
                alive = m.alive,
                moved = m.moved,
                hits,
                deaths,
                worst_tick_us = worst.as_micros() as u64,
                "second"
            );
            (hits, deaths, worst) = (0, 0, Duration::ZERO);
        }
        if args.ticks != 0 && tick >= args.ticks {
            break;
        }
    }
    info!(
        tick = zone.current_tick(),
        state_hash = format!("{:016x}", zone.state_hash()),
        "zone stopped"
    );
    Ok(())
}
