//! The world page of the admin endpoint: `/` (one HTML file embedded in the binary, plain
//! canvas, nothing to install), `/world/zones` (each zone's status as JSON: holder, lease,
//! tick p50/p99 against the budget, clients, entities, ghosts, handoffs, store health; the
//! process's spool and breaker), `/world/stream` (the live map over server-sent events, a few
//! frames per second) and `/world/entity/{zone}/{id}` (one entity's state: health, a player's
//! stats and ownership epoch).
//!
//! The map costs the tick nothing it can measure: the loops copy their zone into a shared
//! sample only while a stream is open ([`crate::view`]), after their sends; each stream reads
//! the newest sample at its own pace (nothing is queued for a slow viewer: it gets the newest
//! frame when its connection takes more), at most [`MAX_STREAMS`] streams are served at once,
//! and each ends after [`STREAM_LIFETIME`] (under the admin connection limit) telling the
//! browser to reconnect at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use zone_core::ZoneId;
use zone_core::world::WorldGrid;

use super::neighbours::Neighbours;
use crate::metrics::{Metrics, Reason};
use crate::server::Status;
use crate::view::{Detail, Dot, SAMPLES_PER_SECOND};

/// Map streams served at once; more are answered 503.
pub const MAX_STREAMS: usize = 8;
/// A map stream ends after this long and the browser reconnects (an `EventSource` does so by
/// itself), so that no stream outlives the admin connection limit.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(25);

/// Longest an entity request waits for the loop's next samples.
const ENTITY_WAIT: Duration = Duration::from_secs(2);

const INDEX: &str = include_str!("page/index.html");

/// One zone this process simulates.
#[derive(Clone, Debug)]
pub struct PageZone {
    /// The zone.
    pub zone: ZoneId,
    /// Its loop's status (and its view).
    pub status: Arc<Status>,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    /// Where its clients connect.
    pub public_address: SocketAddr,
}

/// What the world page shows.
#[derive(Debug)]
pub struct Page {
    /// This server's name (its public address and run).
    pub server: String,
    /// The tick rate (the budget is one period).
    pub tick_hz: u32,
    /// The world.
    pub grid: WorldGrid,
    /// The zones simulated here.
    pub zones: Vec<PageZone>,
    /// The process's metrics (the spool, the flusher's breaker).
    pub process: Arc<Metrics>,
    /// What the other zones' holders published (their addresses and world pages).
    pub neighbours: Neighbours,
    streams: AtomicUsize,
}

impl Page {
    /// The page over `zones` of `grid`.
    pub fn new(
        server: String,
        tick_hz: u32,
        grid: WorldGrid,
        zones: Vec<PageZone>,
        process: Arc<Metrics>,
        neighbours: Neighbours,
    ) -> Self {
        Self {
            server,
            tick_hz,
            grid,
            zones,
            process,
            neighbours,
            streams: AtomicUsize::new(0),
        }
    }
}

/// The page's routes.
pub fn routes(page: Arc<Page>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/world/zones", get(zones))
        .route("/world/stream", get(stream))
        .route("/world/entity/{zone}/{id}", get(entity))
        .with_state(page)
}

async fn index() -> Html<&'static str> {
    Html(INDEX)
}

const JSON: [(HeaderName, &str); 2] = [
    (header::CONTENT_TYPE, "application/json"),
    (header::CACHE_CONTROL, "no-store"),
];

#[derive(Serialize)]
struct ZonesJson<'a> {
    server: &'a str,
    tick_hz: u32,
    budget_ms: f64,
    world: WorldJson,
    process: ProcessJson,
    zones: Vec<ZoneJson>,
}

#[derive(Serialize)]
struct WorldJson {
    columns: u32,
    rows: u32,
}

#[derive(Serialize)]
struct ProcessJson {
    spool_records: i64,
    spool_bytes: i64,
    spool_writable: bool,
    flush_lag_s: f64,
    breaker: &'static str,
    dead_letters: u64,
}

#[derive(Serialize, Default)]
struct ZoneJson {
    zone: u32,
    /// Simulated by this process.
    here: bool,
    bounds: [f32; 4],
    /// The server holding its lease (this one's name when here), and the lease's fence when
    /// held elsewhere.
    holder: Option<String>,
    fence: Option<u64>,
    /// Where its clients connect (published by its holder).
    address: Option<String>,
    /// Where its holder's world page is (published by its holder; `None` here).
    page: Option<String>,
    held: bool,
    ready: bool,
    ticks: u64,
    tick_p50_ms: Option<f64>,
    tick_p99_ms: Option<f64>,
    clients: i64,
    entities: i64,
    ghosts: i64,
    hot_store_up: bool,
    handoffs_out: u64,
    handoffs_in: u64,
    leases_lost: u64,
    viewers: usize,
}

fn handoffs(m: &Metrics, reason: &'static str) -> u64 {
    m.handoffs
        .get_or_create(&Reason {
            reason: reason.into(),
        })
        .get()
}

async fn zones(State(page): State<Arc<Page>>) -> impl IntoResponse {
    let p = &page.process;
    let breaker = match p.breaker_state.get() {
        0 => "closed",
        1 => "half-open",
        _ => "open",
    };
    let mut zones = Vec::new();
    for zone in page.grid.zones() {
        let bounds = page
            .grid
            .bounds(zone)
            .map_or([0.0; 4], |r| [r.min.x, r.min.y, r.max.x, r.max.y]);
        let Some(z) = page.zones.iter().find(|z| z.zone == zone) else {
            let published = page.neighbours.get(zone);
            let (holder, fence) = published.holder.unzip();
            zones.push(ZoneJson {
                zone: zone.0,
                bounds,
                holder,
                fence,
                address: published.address.map(|a| a.to_string()),
                page: published.page,
                ..ZoneJson::default()
            });
            continue;
        };
        // A look at the status asks the loop for samples for a few seconds (the tick times).
        z.status.view.want_for(u64::from(page.tick_hz) * 3);
        let (p50, p99) = {
            let sample = z.status.view.latest();
            (sample.tick_quantile_ms(0.5), sample.tick_quantile_ms(0.99))
        };
        let m = &z.metrics;
        zones.push(ZoneJson {
            zone: zone.0,
            here: true,
            bounds,
            holder: Some(page.server.clone()),
            fence: None,
            address: Some(z.public_address.to_string()),
            page: None,
            held: z.status.held.load(Ordering::Acquire),
            ready: z.status.ready.load(Ordering::Acquire),
            ticks: z.status.ticks.load(Ordering::Acquire),
            tick_p50_ms: p50,
            tick_p99_ms: p99,
            clients: m.clients.get(),
            entities: m.entities.get(),
            ghosts: m.ghosts.get(),
            hot_store_up: !z.status.hot_store_down.load(Ordering::Acquire),
            handoffs_out: handoffs(m, "accepted"),
            handoffs_in: handoffs(m, "taken"),
            leases_lost: m.leases_lost.get(),
            viewers: z.status.view.viewers(),
        });
    }
    let body = ZonesJson {
        server: &page.server,
        tick_hz: page.tick_hz,
        budget_ms: 1000.0 / f64::from(page.tick_hz.max(1)),
        world: WorldJson {
            columns: page.grid.columns(),
            rows: page.grid.rows(),
        },
        process: ProcessJson {
            spool_records: p.spool_records.get(),
            spool_bytes: p.spool_bytes.get(),
            spool_writable: p.spool_writable.get() != 0,
            flush_lag_s: p.flush_lag_seconds.get(),
            breaker,
            dead_letters: p.dead_letters.get(),
        },
        zones,
    };
    (JSON, serde_json::to_string(&body).unwrap_or_default())
}

async fn entity(State(page): State<Arc<Page>>, Path((zone, id)): Path<(u32, u32)>) -> Response {
    let Some(z) = page.zones.iter().find(|z| z.zone == ZoneId(zone)) else {
        return (StatusCode::NOT_FOUND, "no such zone here\n").into_response();
    };
    // The loop copies the entity's full state into its next samples.
    let view = &z.status.view;
    view.ask_detail(id);
    view.want_for(u64::from(page.tick_hz) * 3);
    let asked = view.version();
    let deadline = tokio::time::Instant::now() + ENTITY_WAIT;
    loop {
        let (found, tick, gone) = {
            let sample = view.latest();
            let found = sample.detail.filter(|d| d.dot.id == id);
            // Two samples taken since the question, and the entity in neither: not here.
            let gone = view.version() >= asked + 2 && sample.dot(id).is_none();
            (found, sample.tick, gone)
        };
        if let Some(detail) = found {
            #[derive(Serialize)]
            struct EntityJson {
                zone: u32,
                tick: u64,
                /// A string: 64-bit ids do not survive a JSON reader's doubles.
                player: Option<String>,
                #[serde(flatten)]
                detail: Detail,
            }
            let body = EntityJson {
                zone,
                tick,
                player: detail.dot.player.map(|p| p.to_string()),
                detail,
            };
            return (JSON, serde_json::to_string(&body).unwrap_or_default()).into_response();
        }
        if gone {
            return (StatusCode::NOT_FOUND, "no such entity in the zone\n").into_response();
        }
        if tokio::time::Instant::now() >= deadline {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the zone took no sample in time (is it ticking?)\n",
            )
                .into_response();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An open map stream: its place among [`MAX_STREAMS`] and its zones' viewer counts, given
/// back when the stream ends or the viewer goes away.
struct Watching {
    page: Arc<Page>,
    seen: Vec<u64>,
    dots: Vec<Dot>,
    ghosts: Vec<[f32; 2]>,
    frame: String,
    ends: tokio::time::Instant,
    first: bool,
}

impl Drop for Watching {
    fn drop(&mut self) {
        for z in &self.page.zones {
            z.status.view.detach();
        }
        self.page.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn stream(State(page): State<Arc<Page>>) -> Response {
    let taken = page
        .streams
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_STREAMS).then_some(n + 1)
        });
    if taken.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            "too many map viewers\n",
        )
            .into_response();
    }
    for z in &page.zones {
        z.status.view.attach();
    }
    let watching = Watching {
        seen: vec![0; page.zones.len()],
        page,
        dots: Vec::new(),
        ghosts: Vec::new(),
        frame: String::new(),
        ends: tokio::time::Instant::now() + STREAM_LIFETIME,
        first: true,
    };
    let period = Duration::from_millis(u64::from(1000 / SAMPLES_PER_SECOND));
    let frames = futures_util::stream::unfold(watching, move |mut w| async move {
        loop {
            if tokio::time::Instant::now() >= w.ends {
                return None;
            }
            if !w.first {
                tokio::time::sleep(period).await;
            }
            let first = std::mem::take(&mut w.first);
            if w.next_frame() || first {
                let mut event = Event::default().data(&w.frame);
                if first {
                    event = event.retry(Duration::from_millis(500));
                }
                return Some((Ok::<_, std::convert::Infallible>(event), w));
            }
        }
    });
    Sse::new(frames)
        .keep_alive(KeepAlive::default())
        .into_response()
}

impl Watching {
    /// Builds the next frame from the zones sampled since the last one, `{"zones":[...]}`
    /// (each as [`write_zone`] writes it). Whether any zone had a new sample.
    fn next_frame(&mut self) -> bool {
        self.frame.clear();
        self.frame.push_str("{\"zones\":[");
        let mut any = false;
        for (z, seen) in self.page.zones.iter().zip(self.seen.iter_mut()) {
            let view = &z.status.view;
            let version = view.version();
            if version == *seen {
                continue;
            }
            *seen = version;
            // Copied out under the lock, written out after it (the loop skips its sample
            // while the lock is held, so it is held briefly).
            let tick = {
                let sample = view.latest();
                self.dots.clear();
                self.dots.extend_from_slice(&sample.dots);
                self.ghosts.clear();
                self.ghosts.extend_from_slice(&sample.ghosts);
                sample.tick
            };
            if any {
                self.frame.push(',');
            }
            any = true;
            write_zone(&mut self.frame, z.zone, tick, &self.dots, &self.ghosts);
        }
        self.frame.push_str("]}");
        any
    }
}

/// Writes one zone's part of a map frame: `{"zone","tick","e":[[id,player,x,y,health,max,
/// alive],...],"g":[[x,y],...]}`: positions in tenths of a unit, player as its id in a string,
/// `null` for an NPC; a capture point has an eighth element, `[owner id (0: none), percent]`. Integers only, written with `itoa`: a frame of 6,000 entities is about
/// 200 KB, written five times a second per viewer, on a core the tick's lanes also use.
pub fn write_zone(f: &mut String, zone: ZoneId, tick: u64, dots: &[Dot], ghosts: &[[f32; 2]]) {
    let mut n = itoa::Buffer::new();
    let tenths = |v: f32| (v * 10.0).round() as i32;
    f.push_str("{\"zone\":");
    f.push_str(n.format(zone.0));
    f.push_str(",\"tick\":");
    f.push_str(n.format(tick));
    f.push_str(",\"e\":[");
    for (i, d) in dots.iter().enumerate() {
        f.push_str(if i == 0 { "[" } else { ",[" });
        f.push_str(n.format(d.id));
        match d.player {
            Some(p) => {
                f.push_str(",\"");
                f.push_str(n.format(p));
                f.push_str("\",");
            }
            None => f.push_str(",null,"),
        }
        f.push_str(n.format(tenths(d.x)));
        f.push(',');
        f.push_str(n.format(tenths(d.y)));
        f.push(',');
        f.push_str(n.format(d.health));
        f.push(',');
        f.push_str(n.format(d.max_health));
        f.push_str(if d.alive { ",1" } else { ",0" });
        if let Some([owner, percent]) = d.flag {
            f.push_str(",[");
            f.push_str(n.format(owner));
            f.push(',');
            f.push_str(n.format(percent));
            f.push(']');
        }
        f.push(']');
    }
    f.push_str("],\"g\":[");
    for (i, [x, y]) in ghosts.iter().enumerate() {
        f.push_str(if i == 0 { "[" } else { ",[" });
        f.push_str(n.format(tenths(*x)));
        f.push(',');
        f.push_str(n.format(tenths(*y)));
        f.push(']');
    }
    f.push_str("]}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zone_frame_is_json_with_positions_in_tenths() {
        let dots = [
            Dot {
                id: 3,
                player: Some(u64::MAX),
                x: 12.34,
                y: -0.05,
                health: 7,
                max_health: 100,
                alive: true,
                flag: None,
            },
            Dot {
                id: 9,
                player: None,
                x: 1.0,
                y: 2.0,
                health: 0,
                max_health: 60,
                alive: false,
                flag: None,
            },
            Dot {
                id: 12,
                player: None,
                x: 5.0,
                y: 5.0,
                health: 0,
                max_health: 0,
                alive: true,
                flag: Some([3, 40]),
            },
        ];
        let mut f = String::new();
        write_zone(&mut f, ZoneId(2), 77, &dots, &[[1.25, 3.0]]);
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"zone": 2, "tick": 77,
                "e": [[3, "18446744073709551615", 123, -1, 7, 100, 1], [9, null, 10, 20, 0, 60, 0],
                    [12, null, 50, 50, 0, 0, 1, [3, 40]]],
                "g": [[13, 30]]})
        );
    }
}
