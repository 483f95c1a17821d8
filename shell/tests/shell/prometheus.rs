//! The monitoring stack for real: Debian's `prometheus` scrapes a running 2x2 world with
//! roaming bots, loads the alert rules of `infra/monitoring/alerts.yml`, and every PromQL
//! expression of the Grafana dashboard and of the alert rules is evaluated through its HTTP
//! API. A query that does not parse, names a metric the server does not export, or selects
//! labels no series has, returns an error or no data, and fails the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use zone_shell::app::start;

use crate::support::{free_port, http_get, loopback_config, wait_until};

/// Seconds between scrapes and rule evaluations in the test's Prometheus.
const SCRAPE_S: u64 = 1;
/// What the dashboard's `$__rate_interval` stands for here (Grafana makes it at least four
/// scrape intervals).
const RATE_INTERVAL: &str = "5s";

fn infra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra")
}

/// The Prometheus process, killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `prometheus` scraping `target` (host:port of an admin endpoint) every second,
    /// with the project's alert rules loaded.
    fn start(dir: &Path, target: &str) -> Self {
        let port = free_port();
        let rules = infra().join("monitoring/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: {SCRAPE_S}s\n  evaluation_interval: {SCRAPE_S}s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: zone-server\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: [\"{target}\"]\n",
            rules.display()
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "this test needs Debian's prometheus (apt-get install prometheus; .ci/run installs it): {e}"
                )
            });
        Self { child, port }
    }

    /// `GET path` of the HTTP API, its JSON body (`None` while Prometheus is not answering).
    fn api(&self, path: &str) -> Option<Value> {
        let (_, response) = http_get(self.port, path)?;
        let (_, body) = response.split_once("\r\n\r\n")?;
        // Chunked or not, the JSON object is the outermost {...}.
        let json = &body[body.find('{')?..=body.rfind('}')?];
        serde_json::from_str(json).ok()
    }

    /// Evaluates `query` now: the vector it returns, or the error Prometheus gives.
    fn query(&self, query: &str) -> Result<Vec<Value>, String> {
        let v = self
            .api(&format!("/api/v1/query?query={}", percent_encode(query)))
            .ok_or_else(|| "no answer".to_owned())?;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every PromQL string of the dashboard (panel targets and template variables).
fn dashboard_queries() -> Vec<String> {
    let text =
        std::fs::read_to_string(infra().join("monitoring/grafana/dashboards/zone-server.json"))
            .unwrap();
    let mut out = Vec::new();
    crate::infra::dashboard_queries(&serde_json::from_str(&text).unwrap(), &mut out);
    out.sort();
    out.dedup();
    out
}

/// A dashboard string as Prometheus sees it: Grafana's variables filled in (every instance,
/// the rate interval), and its `label_values(metric, label)` template function as the query
/// Grafana runs for it.
fn as_promql(q: &str) -> String {
    if let Some(args) = q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let (metric, label) = args.rsplit_once(',').expect("label_values(metric, label)");
        return format!("count by ({}) ({})", label.trim(), metric.trim());
    }
    q.replace("$instance", ".*")
        .replace("$__rate_interval", RATE_INTERVAL)
}

/// The alert rules: name, expression.
fn alert_rules() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(infra().join("monitoring/alerts.yml")).unwrap();
    let rules: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            out.push((
                rule["alert"].as_str().unwrap().to_owned(),
                rule["expr"].as_str().unwrap().trim().to_owned(),
            ));
        }
    }
    out
}

/// An alert expression without its threshold (`signal > 0.5` gives `signal`): what the rule
/// watches, which must have data on a healthy server even though the alert does not fire.
fn signal(expr: &str) -> &str {
    let mut depth = 0i32;
    for (i, c) in expr.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ if depth == 0
                && [">", "<", "==", "!="]
                    .iter()
                    .any(|op| expr[i..].starts_with(op)) =>
            {
                return expr[..i].trim_end();
            }
            _ => {}
        }
    }
    expr
}

#[test]
fn an_alert_signal_is_its_expression_without_the_threshold() {
    assert_eq!(
        signal("sum by (a) (rate(x{reason=~\"a|b\"}[5m])) > 0.1"),
        "sum by (a) (rate(x{reason=~\"a|b\"}[5m]))"
    );
    assert_eq!(signal("min by (i) (w) == 0"), "min by (i) (w)");
    assert_eq!(signal("up"), "up");
    assert_eq!(
        as_promql("label_values(zone_clients, instance)"),
        "count by (instance) (zone_clients)"
    );
    assert_eq!(
        as_promql("rate(x{instance=~\"$instance\"}[$__rate_interval])"),
        "rate(x{instance=~\".*\"}[5s])"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_evaluates_every_dashboard_and_alert_query_with_data() {
    let _live = crate::support::live(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let mut config = loopback_config(&dir.path().join("server"));
    (config.world.columns, config.world.rows) = (2, 2);
    config.zone.arena_size = 48;
    config.zone.npcs = 20;
    config.bots = 12;
    let running = start(config, None).await.unwrap();
    let prometheus = Prometheus::start(dir.path(), &running.admin_addr.to_string());

    // Scraped, and long enough that every rate window holds samples and bots crossed borders.
    let handoffs = || {
        crate::support::metric(
            &running.export.text(),
            "zone_handoffs_total",
            &["reason=\"accepted\""],
        )
    };
    wait_until("bots handed over a border", Duration::from_secs(60), || {
        handoffs() >= 2.0
    })
    .await;
    let mut scraped = 0;
    wait_until(
        "prometheus scraped the server ten times",
        Duration::from_secs(60),
        || {
            scraped = prometheus
                .query("count_over_time(zone_ticks_total{zone=\"1\"}[1m])")
                .ok()
                .and_then(|r| r.first()?["value"][1].as_str()?.parse::<u32>().ok())
                .unwrap_or(0);
            scraped >= 10
        },
    )
    .await;

    let mut failures = Vec::new();
    let dashboard = dashboard_queries();
    assert!(dashboard.len() >= 20, "dashboard queries: {dashboard:?}");
    for q in &dashboard {
        match prometheus.query(&as_promql(q)) {
            Ok(r) if r.is_empty() => failures.push(format!("no data: {q}")),
            Ok(_) => {}
            Err(e) => failures.push(format!("{e}: {q}")),
        }
    }
    let alerts = alert_rules();
    for (name, expr) in &alerts {
        if let Err(e) = prometheus.query(expr) {
            failures.push(format!("alert {name}: {e}: {expr}"));
        }
        match prometheus.query(signal(expr)) {
            Ok(r) if r.is_empty() => failures.push(format!("alert {name} watches no data: {expr}")),
            Ok(_) => {}
            Err(e) => failures.push(format!("alert {name}: {e}: {expr}")),
        }
    }
    // Prometheus evaluated the rules itself, every second: each is loaded and healthy.
    let rules = prometheus.api("/api/v1/rules").expect("rules API");
    let loaded: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(loaded.len(), alerts.len(), "rules loaded: {rules}");
    for r in loaded {
        if r["health"] != "ok" {
            failures.push(format!(
                "rule {} health {}: {}",
                r["name"], r["health"], r["lastError"]
            ));
        }
    }
    running.shutdown();
    running.finish().await.unwrap();
    drop(prometheus);
    assert!(
        failures.is_empty(),
        "{} of {} queries failed after {scraped} scrapes:\n{}",
        failures.len(),
        dashboard.len() + 2 * alerts.len(),
        failures.join("\n")
    );
}
