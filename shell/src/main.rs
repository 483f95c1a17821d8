//! `zone-server`: serve a zone, mint connect tokens, run bots. See `zone-server --help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use clap::{Args, Parser, Subcommand};
use tracing::{error, info};
use zone_shell::bots::{BotConfig, run_crowd};
use zone_shell::config::Config;
use zone_shell::keys::{existing_private_key, private_key};
use zone_shell::tokens::{TokenRequest, mint};

#[derive(Parser, Debug)]
#[command(name = "zone-server", version, about = "Authoritative MMO zone server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a zone over UDP (netcode.io) until SIGTERM/SIGINT.
    Run(RunArgs),
    /// Create the ScyllaDB keyspace and tables (infra/scylla/schema.cql); safe to re-run.
    Migrate(MigrateArgs),
    /// Mint a development connect token (base64) for a player id.
    Token(TokenArgs),
    /// Run headless bot clients against a server and report what they saw.
    Bots(BotArgs),
    /// Throw junk datagrams at a server (abuse testing; only at your own server).
    Flood(FloodArgs),
}

#[derive(Args, Debug)]
struct FloodArgs {
    /// Target server.
    #[arg(long, default_value = "127.0.0.1:40000")]
    target: SocketAddr,
    /// Datagrams per second.
    #[arg(long, default_value_t = 50_000)]
    rate: u32,
    /// Seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

/// Settings shared by every subcommand. Precedence: flag > env > config file > default.
#[derive(Args, Debug)]
struct Common {
    /// Config file (TOML).
    #[arg(long, env = "ZONE_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for local state (development key, spool, embedded stores).
    #[arg(long, env = "ZONE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// UDP address to bind.
    #[arg(long, env = "ZONE_BIND")]
    bind: Option<SocketAddr>,
    /// Address clients reach the server at (defaults to --bind).
    #[arg(long, env = "ZONE_PUBLIC_ADDRESS")]
    public_address: Option<SocketAddr>,
    /// netcode.io protocol id.
    #[arg(long, env = "ZONE_PROTOCOL_ID")]
    protocol_id: Option<u64>,
    /// Log format: human or json.
    #[arg(long, env = "ZONE_LOG_FORMAT")]
    log_format: Option<String>,
    /// Log filter, e.g. info or zone_shell=debug.
    #[arg(long, env = "ZONE_LOG")]
    log: Option<String>,
    /// Redis URL for the hot store (embedded in-process store when absent).
    #[arg(long, env = "ZONE_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// ScyllaDB contact points, host:port[,host:port] (embedded SQLite when absent).
    #[arg(long, env = "ZONE_SCYLLA_URI")]
    scylla_uri: Option<String>,
    /// ScyllaDB keyspace.
    #[arg(long, env = "ZONE_SCYLLA_KEYSPACE")]
    scylla_keyspace: Option<String>,
    /// The world's grid of zones, COLUMNSxROWS (e.g. 2x2; 1x1 is a single zone).
    #[arg(long, env = "ZONE_WORLD", value_parser = parse_world)]
    world: Option<(u32, u32)>,
    /// The zones this process simulates, comma-separated ids (default: the whole world).
    #[arg(long, env = "ZONE_ZONES", value_delimiter = ',')]
    zones: Option<Vec<u32>>,
}

fn parse_world(text: &str) -> Result<(u32, u32), String> {
    let (c, r) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected COLUMNSxROWS such as 2x2, got {text:?}"))?;
    let n = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("expected COLUMNSxROWS such as 2x2, got {text:?}"))
    };
    Ok((n(c)?, n(r)?))
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Admin HTTP address (/metrics, /healthz, /readyz).
    #[arg(long, env = "ZONE_ADMIN_BIND")]
    admin_bind: Option<SocketAddr>,
    /// Where the other zone servers' world pages link to this one's (http://host:port).
    #[arg(long, env = "ZONE_ADMIN_PUBLIC_URL")]
    admin_public_url: Option<String>,
    /// Zone id.
    #[arg(long, env = "ZONE_ID")]
    zone_id: Option<u32>,
    /// Seed of the zone's randomness.
    #[arg(long, env = "ZONE_SEED")]
    seed: Option<u64>,
    /// Side of the generated arena, tiles.
    #[arg(long, env = "ZONE_ARENA_SIZE")]
    arena_size: Option<u32>,
    /// NPCs in the zone.
    #[arg(long, env = "ZONE_NPCS")]
    npcs: Option<u32>,
    /// Rules file (TOML).
    #[arg(long, env = "ZONE_RULES")]
    rules: Option<PathBuf>,
    /// Game plugins after the built-in game, comma-separated (`""`: none; default: the demo's
    /// `example.capture`).
    #[arg(long, env = "ZONE_PLUGINS", value_delimiter = ',')]
    plugins: Option<Vec<String>>,
    /// Most connected clients.
    #[arg(long, env = "ZONE_MAX_CLIENTS")]
    max_clients: Option<usize>,
    /// In-process demo bots connecting over loopback UDP.
    #[arg(long, env = "ZONE_BOTS")]
    bots: Option<u32>,
    /// Stop after this many ticks (0 or absent: run until a signal).
    #[arg(long, env = "ZONE_TICKS")]
    ticks: Option<u64>,
    /// Snapshots per second per client, a divisor of the tick rate (default: every tick).
    #[arg(long, env = "ZONE_SNAPSHOT_HZ")]
    snapshot_hz: Option<u32>,
    /// Threads each zone builds and seals its packets on (0: the cores shared out).
    #[arg(long, env = "ZONE_REPLICATION_THREADS")]
    replication_threads: Option<usize>,
}

#[derive(Args, Debug)]
struct MigrateArgs {
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct TokenArgs {
    #[command(flatten)]
    common: Common,
    /// The player (account) id the token is for.
    #[arg(long)]
    player_id: u64,
    /// The zone to connect to, in a world of zones (default: the first this configuration
    /// hosts). The token names that zone's public address; a client can use it nowhere else.
    #[arg(long)]
    zone: Option<u32>,
    /// The server address the token names (default: the zone's public address, from
    /// `--public-address`, else `--bind`, plus the zone's index in this process).
    #[arg(long)]
    server: Option<SocketAddr>,
}

#[derive(Args, Debug)]
struct BotArgs {
    #[command(flatten)]
    common: Common,
    /// Number of bots.
    #[arg(long, default_value_t = 100)]
    count: u32,
    /// Seconds to play.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Player id of the first bot (by default the reserved bot range, 2^62 up: never a
    /// real account's).
    #[arg(long, default_value_t = zone_shell::bots::FIRST_BOT_PLAYER)]
    first_player: u64,
    /// Inputs per second.
    #[arg(long, default_value_t = 60)]
    tick_hz: u32,
    /// Server to connect to (defaults to the configured public address).
    #[arg(long)]
    server: Option<SocketAddr>,
}

fn load(common: &Common) -> anyhow::Result<Config> {
    let mut config = match &common.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = &common.data_dir {
        config.data_dir = v.clone();
    }
    if let Some(v) = common.bind {
        config.net.bind = v;
    }
    if let Some(v) = common.public_address {
        config.net.public_address = Some(v);
    }
    if let Some(v) = common.protocol_id {
        config.net.protocol_id = v;
    }
    if let Some(v) = &common.log_format {
        config.log.format = v.clone();
    }
    if let Some(v) = &common.log {
        config.log.level = v.clone();
    }
    if let Some(v) = &common.scylla_uri {
        config.store.scylla_uri = Some(v.clone());
    }
    if let Some(v) = &common.scylla_keyspace {
        config.store.scylla_keyspace = v.clone();
    }
    if let Some((columns, rows)) = common.world {
        (config.world.columns, config.world.rows) = (columns, rows);
    }
    if let Some(v) = &common.zones {
        config.world.zones = v.clone();
    }
    // The Redis URL may carry a password: like the key, it comes from the file or the
    // environment (ZONE_REDIS_URL), or a flag for passwordless development servers.
    if let Some(v) = &common.redis_url {
        config.store.redis_url = Some(v.clone());
    }
    // The key only ever comes from the file or the environment, never a flag (ps would show it).
    if let Ok(key) = std::env::var("ZONE_PRIVATE_KEY") {
        config.net.private_key = Some(key);
    }
    Ok(config)
}

fn init_logs(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zone-server: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("zone-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run(args).await,
        Command::Token(args) => token(args),
        Command::Migrate(args) => {
            let config = load(&args.common)?;
            init_logs(&config);
            zone_shell::app::migrate(&config).await
        }
        Command::Bots(args) => bots(args).await,
        Command::Flood(args) => {
            let sent = zone_shell::flood::flood(args.target, args.rate, args.seconds).await?;
            println!(
                "sent {sent} junk datagrams ({:.0}/s)",
                sent as f64 / args.seconds.max(1) as f64
            );
            Ok(())
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = load(&args.common)?;
    if let Some(v) = args.admin_bind {
        config.admin.bind = v;
    }
    if let Some(v) = args.admin_public_url {
        config.admin.public_url = Some(v);
    }
    if let Some(v) = args.zone_id {
        config.zone.id = v;
    }
    if let Some(v) = args.seed {
        config.zone.seed = v;
    }
    if let Some(v) = args.arena_size {
        config.zone.arena_size = v;
    }
    if let Some(v) = args.npcs {
        config.zone.npcs = v;
    }
    if let Some(v) = args.rules {
        config.zone.rules_file = Some(v);
    }
    if let Some(v) = args.plugins {
        config.zone.plugins = v.into_iter().filter(|p| !p.trim().is_empty()).collect();
    }
    if let Some(v) = args.snapshot_hz {
        config.net.snapshot_hz = Some(v);
    }
    if let Some(v) = args.replication_threads {
        config.net.replication_threads = v;
    }
    if let Some(v) = args.max_clients {
        config.net.max_clients = v;
    }
    if let Some(v) = args.bots {
        config.bots = v;
    }
    init_logs(&config);
    config.validate()?;
    let deadline = Duration::from_secs(config.shutdown_deadline_s);
    let running = zone_shell::app::start(config, args.ticks.filter(|t| *t > 0)).await?;
    let stopper = running.stopper();
    let zones = running.zones.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        every.tick().await;
        let accepted = zone_shell::metrics::Reason {
            reason: "accepted".into(),
        };
        loop {
            every.tick().await;
            let ticks = zones
                .iter()
                .map(|z| z.status.ticks.load(std::sync::atomic::Ordering::Acquire))
                .min()
                .unwrap_or(0);
            let sum = |f: &dyn Fn(&zone_shell::metrics::Metrics) -> i64| -> i64 {
                zones.iter().map(|z| f(&z.metrics)).sum()
            };
            info!(
                ticks,
                zones = zones.len(),
                clients = sum(&|m| m.clients.get()),
                entities = sum(&|m| m.entities.get()),
                handoffs = sum(&|m| m.handoffs.get_or_create(&accepted).get() as i64),
                "status"
            );
        }
    });
    let finish = running.finish();
    tokio::pin!(finish);
    let finished = tokio::select! {
        done = &mut finish => done?,
        _ = wait_for_signal() => {
            info!("signal received: shutting down (stop accepting, disconnect clients, save players)");
            stopper.cancel();
            tokio::time::timeout(deadline, &mut finish)
                .await
                .map_err(|_| anyhow::anyhow!("graceful shutdown exceeded shutdown_deadline_s ({}s)", deadline.as_secs()))??
        }
    };
    for z in &finished.zones {
        let (summary, host) = (&z.summary, &z.host);
        let handoffs = host.handoff_stats();
        info!(
            zone = %z.zone,
            ticks = summary.ticks,
            overruns = summary.overruns,
            skipped = summary.skipped,
            saved = summary.saved_at_shutdown,
            connects = host.stats().connects,
            handoffs_out = handoffs.accepted,
            handoffs_in = handoffs.taken,
            tick_p50_ms = summary.tick_times.quantile_ms(0.5),
            tick_p99_ms = summary.tick_times.quantile_ms(0.99),
            state_hash = format!("{:016x}", host.zone().state_hash()),
            "zone stopped cleanly"
        );
    }
    info!(
        zones = finished.zones.len(),
        cpu_s = zone_shell::process_stats::cpu_time().map_or(0.0, |d| d.as_secs_f64()),
        peak_rss_mb = zone_shell::process_stats::peak_rss_bytes().map_or(0, |b| b / (1 << 20)),
        "zone server stopped cleanly"
    );
    if let Some(b) = finished.bots {
        info!(
            bots = b.bots.len(),
            connected = b.connected(),
            faulted = b.faulted(),
            redirects = b.redirects(),
            snapshots_per_bot_s = format!("{:.1}", b.snapshots_per_bot_s()),
            "demo bots"
        );
    }
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let config = load(&args.common)?;
    config.validate()?;
    let (key, _) = existing_private_key(&config)?;
    let zones = config.hosted_zones()?;
    let server = match (args.server, args.zone) {
        (Some(address), _) => address,
        (None, None) => config.public_address(), // the first hosted zone's address
        (None, Some(n)) => zones
            .iter()
            .find(|z| z.zone.0 == n)
            .map(|z| z.public_address)
            .with_context(|| {
                let ids: Vec<u32> = zones.iter().map(|z| z.zone.0).collect();
                format!("zone {n} is not one this configuration hosts ({ids:?}); pass --server")
            })?,
    };
    eprintln!("token for player {} at {server}", args.player_id);
    let token = mint(
        &TokenRequest {
            protocol_id: config.net.protocol_id,
            client_id: args.player_id,
            servers: vec![server],
            expiry_s: config.net.token_expiry_s,
            timeout_s: config.net.timeout_s,
        },
        &key,
    )?;
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(token)
    );
    Ok(())
}

async fn bots(args: BotArgs) -> anyhow::Result<()> {
    let config = load(&args.common)?;
    init_logs(&config);
    let (key, _) = private_key(&config).context("the bots mint tokens with the server's key")?;
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    // Against a world, the bots start spread over its zones and roam across borders.
    let world = config.is_world() && args.server.is_none();
    let servers = if world {
        config.validate()?;
        config
            .hosted_zones()?
            .iter()
            .map(|z| z.public_address)
            .collect()
    } else {
        Vec::new()
    };
    let report = run_crowd(
        BotConfig {
            server: args.server.unwrap_or_else(|| config.public_address()),
            servers,
            roam: if world { Some(config.grid()?) } else { None },
            layout: None,
            stand: false,
            protocol_id: config.net.protocol_id,
            first_player: args.first_player,
            count: args.count,
            tick_hz: args.tick_hz,
            duration: Some(Duration::from_secs(args.seconds)),
            seed: 1,
            game: zone_shell::game::wire_of(&config.zone.plugins)?,
        },
        &key,
        stop,
    )
    .await?;
    println!("bots:                 {}", report.bots.len());
    println!("connected:            {}", report.connected());
    println!("lost to faults:       {}", report.faulted());
    println!("snapshots/bot/s:      {:.1}", report.snapshots_per_bot_s());
    println!(
        "zone redirects:       {} ({:.1}/s)",
        report.redirects(),
        report.redirects() as f64 / report.seconds.max(1e-9)
    );
    let mut handoff_ms: Vec<u64> = report
        .bots
        .iter()
        .flat_map(|b| b.handoff_ms.iter().copied())
        .collect();
    handoff_ms.sort_unstable();
    if !handoff_ms.is_empty() {
        let q = |f: f64| handoff_ms[((handoff_ms.len() - 1) as f64 * f).round() as usize];
        println!(
            "handoff ms p50/p99:   {} / {} (border crossed -> first snapshot of the new zone)",
            q(0.5),
            q(0.99)
        );
    }
    println!(
        "wire bytes in/bot/s:  {:.0}",
        report.wire_bytes_in_per_bot_s()
    );
    let max_visible = report.bots.iter().map(|b| b.max_visible).max().unwrap_or(0);
    println!("max entities in view: {max_visible}");
    if report.connected() < report.bots.len() {
        anyhow::bail!(
            "{} of {} bots failed to connect",
            report.bots.len() - report.connected(),
            report.bots.len()
        );
    }
    Ok(())
}
