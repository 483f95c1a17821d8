//! The deployment files under `infra/` agree with the binary they deploy: every `ZONE_*`
//! variable they name is one `zone-server` accepts; the compose stack wires distinct zone
//! servers to its Redis and ScyllaDB with a data volume each, and Prometheus scrapes each of
//! them; Kubernetes probes hit `/healthz` and `/readyz` on the admin port; the shipped TOML
//! configs validate; the image builds `zone-server` and runs it as non-root; and every metric
//! the Grafana dashboard queries is exported by a real server. No Docker needed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;
use zone_shell::config::Config;

/// A valid key standing in for secrets the files leave to the operator.
const TEST_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Read by `zone-server` straight from the environment (never a flag), so not in `--help`.
const ENV_ONLY: &[&str] = &["ZONE_PRIVATE_KEY"];

fn infra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra")
}

fn read(rel: &str) -> String {
    let path = infra().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a (possibly multi-document) YAML file, merge keys (`<<`) applied.
fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    let mut docs = Vec::new();
    for de in serde_yaml::Deserializer::from_str(&text) {
        let mut doc = Value::deserialize(de).unwrap_or_else(|e| panic!("{rel}: {e}"));
        doc.apply_merge()
            .unwrap_or_else(|e| panic!("{rel}: merge keys: {e}"));
        if !doc.is_null() {
            docs.push(doc);
        }
    }
    assert!(!docs.is_empty(), "{rel} holds no YAML document");
    docs
}

fn yaml(rel: &str) -> Value {
    let mut docs = yaml_docs(rel);
    assert_eq!(docs.len(), 1, "{rel} should hold one YAML document");
    docs.remove(0)
}

/// `v[key]` as a string (YAML scalars of any type), or `None`.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().filter_map(text).collect())
        .unwrap_or_default()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else if path.file_name().is_some_and(|n| n != ".env") {
            out.push(path);
        }
    }
}

/// `ZONE_[A-Z0-9_]+` words in `s` (not inside a longer identifier).
fn zone_names(s: &str) -> BTreeSet<String> {
    let bytes = s.as_bytes();
    let word = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_';
    let mut names = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = s[i..].find("ZONE_").map(|p| p + i) {
        let mut end = at + 5;
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        let starts_word =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        if starts_word && end > at + 5 && !s[..end].ends_with('_') {
            names.insert(s[at..end].to_owned());
        }
        i = end;
    }
    names
}

/// The `[env: NAME...]` variables of `zone-server <sub> --help`.
fn help_env(sub: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_zone-server"))
        .args([sub, "--help"])
        .env_clear()
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "zone-server {sub} --help failed: {}{}",
        help,
        String::from_utf8_lossy(&out.stderr)
    );
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let names: BTreeSet<String> = flat
        .split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    assert!(
        !names.is_empty(),
        "no [env: ...] in `{sub} --help`:\n{help}"
    );
    names
}

fn accepted_env() -> BTreeSet<String> {
    let mut names = help_env("run");
    names.extend(help_env("migrate"));
    names.extend(ENV_ONLY.iter().map(|s| (*s).to_owned()));
    names
}

/// Compose-style interpolation: `${V}`, `${V:-default}`, `${V-default}`, `${V:?msg}`, `${V?msg}`.
/// Variables come from `vars`; one with neither a value nor a default fails the test.
fn interpolate(s: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let end = rest[at..].find('}').map(|e| e + at).expect("unclosed ${");
        let inner = &rest[at + 2..end];
        let name_end = inner
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(inner.len());
        let (name, op) = inner.split_at(name_end);
        let default = op
            .strip_prefix(":-")
            .or_else(|| op.strip_prefix('-'))
            .map(str::to_owned);
        let value = vars
            .get(name)
            .map(|v| (*v).to_owned())
            .or(default)
            .unwrap_or_else(|| panic!("{s}: ${{{name}}} has no value and no default"));
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A service's or container's environment, interpolated.
fn compose_env(service: &Value) -> BTreeMap<String, String> {
    let vars = BTreeMap::from([
        ("ZONE_PRIVATE_KEY", TEST_KEY),
        ("REDIS_PASSWORD", "test-redis-password"),
    ]);
    let mut env = BTreeMap::new();
    match &service["environment"] {
        Value::Mapping(m) => {
            for (k, v) in m {
                let (k, v) = (text(k).unwrap(), text(v).unwrap_or_default());
                env.insert(k, interpolate(&v, &vars));
            }
        }
        Value::Sequence(s) => {
            for item in s.iter().filter_map(text) {
                let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                env.insert(k.to_owned(), interpolate(v, &vars));
            }
        }
        Value::Null => {}
        other => panic!("environment should be a mapping or a list, got {other:?}"),
    }
    env
}

/// The Dockerfile's instructions (continuations joined), as (INSTRUCTION, arguments).
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
        } else {
            current.push_str(t);
            joined.push(std::mem::take(&mut current));
        }
    }
    joined
        .into_iter()
        .map(|l| {
            let (op, args) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
            (op.to_ascii_uppercase(), args.trim().to_owned())
        })
        .collect()
}

/// `ENV` of the image's final stage.
fn image_env() -> BTreeMap<String, String> {
    let instructions = dockerfile();
    let last_from = instructions
        .iter()
        .rposition(|(op, _)| op == "FROM")
        .unwrap();
    let mut env = BTreeMap::new();
    for (op, args) in &instructions[last_from..] {
        if op == "ENV" {
            for pair in args.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("ENV KEY=value");
                env.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    env
}

/// What `zone-server run` does with a config file and these variables (see main.rs).
fn effective_config(file: Option<&str>, env: &BTreeMap<String, String>) -> Config {
    let mut c: Config = match file {
        Some(toml_text) => toml::from_str(toml_text).unwrap(),
        None => Config::default(),
    };
    for (k, v) in env {
        let addr = || {
            v.parse::<SocketAddr>()
                .unwrap_or_else(|e| panic!("{k}={v}: {e}"))
        };
        let num = || v.parse::<u64>().unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        match k.as_str() {
            "ZONE_CONFIG" => {}
            "ZONE_DATA_DIR" => c.data_dir = PathBuf::from(v),
            "ZONE_BIND" => c.net.bind = addr(),
            "ZONE_PUBLIC_ADDRESS" => c.net.public_address = Some(addr()),
            "ZONE_ADMIN_BIND" => c.admin.bind = addr(),
            "ZONE_ADMIN_PUBLIC_URL" => c.admin.public_url = Some(v.clone()),
            "ZONE_PROTOCOL_ID" => c.net.protocol_id = num(),
            "ZONE_LOG_FORMAT" => c.log.format = v.clone(),
            "ZONE_LOG" => c.log.level = v.clone(),
            "ZONE_REDIS_URL" => c.store.redis_url = Some(v.clone()),
            "ZONE_SCYLLA_URI" => c.store.scylla_uri = Some(v.clone()),
            "ZONE_SCYLLA_KEYSPACE" => c.store.scylla_keyspace = v.clone(),
            "ZONE_PRIVATE_KEY" => c.net.private_key = Some(v.clone()),
            "ZONE_ID" => c.zone.id = u32::try_from(num()).unwrap(),
            "ZONE_ZONES" => {
                c.world.zones = v
                    .split(',')
                    .map(|z| z.trim().parse().unwrap_or_else(|e| panic!("{k}={v}: {e}")))
                    .collect()
            }
            "ZONE_WORLD" => {
                let (cols, rows) = v.split_once('x').unwrap_or_else(|| panic!("{k}={v}"));
                c.world.columns = cols.parse().unwrap();
                c.world.rows = rows.parse().unwrap();
            }
            "ZONE_SEED" => c.zone.seed = num(),
            "ZONE_NPCS" => c.zone.npcs = u32::try_from(num()).unwrap(),
            "ZONE_ARENA_SIZE" => c.zone.arena_size = u32::try_from(num()).unwrap(),
            "ZONE_MAX_CLIENTS" => c.net.max_clients = usize::try_from(num()).unwrap(),
            "ZONE_BOTS" => c.bots = u32::try_from(num()).unwrap(),
            other if other.starts_with("ZONE_") => panic!("{other}: not modelled by this test"),
            _ => {}
        }
    }
    c
}

/// Whether a compose port mapping (`[ip:]host:container/udp`, either side a `a-b` range)
/// publishes container UDP port `container` as host port `host`.
fn publishes(mapping: &str, host: u16, container: u16) -> bool {
    mapping
        .strip_suffix("/udp")
        .is_some_and(|spec| maps(spec, host, container))
}

/// [`publishes`] for a TCP mapping (`[ip:]host:container[/tcp]`).
fn publishes_tcp(mapping: &str, host: u16, container: u16) -> bool {
    !mapping.ends_with("/udp") && maps(mapping.trim_end_matches("/tcp"), host, container)
}

fn maps(spec: &str, host: u16, container: u16) -> bool {
    let mut parts = spec.rsplitn(3, ':');
    let (Some(c), Some(h)) = (parts.next(), parts.next()) else {
        return false;
    };
    let range = |r: &str| -> Option<(u16, u16)> {
        match r.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => r.parse().ok().map(|p| (p, p)),
        }
    };
    match (range(h), range(c)) {
        (Some((h0, h1)), Some((c0, c1))) => {
            (h0..=h1).contains(&host)
                && (c0..=c1).contains(&container)
                && host - h0 == container - c0
        }
        _ => false,
    }
}

fn port_of(addr: &str) -> u16 {
    addr.parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("{addr}: {e}"))
        .port()
}

/// `host` of `scheme://[user[:pass]@]host[:port][/...]`.
fn url_host(url: &str) -> String {
    let after = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = after.split('/').next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    host_port.split(':').next().unwrap_or("").to_owned()
}

struct Compose {
    services: serde_yaml::Mapping,
    volumes: BTreeSet<String>,
}

impl Compose {
    fn load() -> Self {
        let doc = yaml("docker-compose.yml");
        let services = doc["services"].as_mapping().expect("services").clone();
        let volumes = doc["volumes"]
            .as_mapping()
            .map(|m| m.keys().filter_map(text).collect())
            .unwrap_or_default();
        Self { services, volumes }
    }

    fn named(&self, pred: impl Fn(&str, &Value) -> bool) -> Vec<(String, Value)> {
        self.services
            .iter()
            .map(|(k, v)| (text(k).unwrap(), v.clone()))
            .filter(|(k, v)| pred(k, v))
            .collect()
    }

    fn one_with_image(&self, prefix: &str) -> String {
        let found = self.named(|_, v| text(&v["image"]).is_some_and(|i| i.starts_with(prefix)));
        assert_eq!(
            found.len(),
            1,
            "want exactly one service with image {prefix}*"
        );
        found[0].0.clone()
    }

    /// Services that run `zone-server run`.
    fn zone_servers(&self) -> Vec<(String, Value)> {
        self.named(|_, v| {
            text(&v["image"]).is_some_and(|i| i.starts_with("zone-server"))
                && strings(&v["command"]).first().map(String::as_str) == Some("run")
        })
    }
}

/// `host:container` mounts of a compose service, as (source, target).
fn mounts(service: &Value) -> Vec<(String, String)> {
    strings(&service["volumes"])
        .iter()
        .map(|m| {
            let mut parts = m.splitn(3, ':');
            let source = parts.next().unwrap_or("").to_owned();
            let target = parts.next().unwrap_or("").to_owned();
            (source, target)
        })
        .collect()
}

fn depends_condition(service: &Value, on: &str) -> Option<String> {
    text(&service["depends_on"][on]["condition"])
}

#[test]
fn every_zone_env_var_in_infra_is_one_the_binary_accepts() {
    let _live = crate::support::live(module_path!());
    let accepted = accepted_env();
    for expected in [
        "ZONE_BIND",
        "ZONE_ADMIN_BIND",
        "ZONE_ID",
        "ZONE_REDIS_URL",
        "ZONE_SCYLLA_URI",
    ] {
        assert!(
            accepted.contains(expected),
            "{expected} missing from --help: {accepted:?}"
        );
    }
    let mut files = Vec::new();
    files_under(&infra(), &mut files);
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for file in &files {
        let body =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for name in zone_names(&body) {
            if !accepted.contains(&name) {
                unknown.push(format!("{name} in {}", file.display()));
            }
            used.insert(name);
        }
    }
    assert!(
        unknown.is_empty(),
        "not accepted by zone-server: {unknown:#?}"
    );
    for expected in [
        "ZONE_BIND",
        "ZONE_PUBLIC_ADDRESS",
        "ZONE_ADMIN_BIND",
        "ZONE_PRIVATE_KEY",
    ] {
        assert!(used.contains(expected), "infra/ never sets {expected}");
    }
}

#[test]
fn zone_names_are_found_as_words_only() {
    let found = zone_names("ZONE_ID=1 MY_ZONE_X ZONE_* `ZONE_SCYLLA_URI`,ZONE_");
    assert_eq!(
        found,
        BTreeSet::from(["ZONE_ID".to_owned(), "ZONE_SCYLLA_URI".to_owned()])
    );
}

#[test]
fn compose_runs_distinct_zone_servers_wired_to_its_redis_and_scylla() {
    let compose = Compose::load();
    let redis = compose.one_with_image("redis:");
    let scylla = compose.one_with_image("scylladb/scylla:");
    let image = image_env();
    let zones = compose.zone_servers();
    assert!(
        zones.len() >= 2,
        "want at least two zone servers, got {}",
        zones.len()
    );

    let (mut hosted, mut binds, mut publics, mut admins, mut data) = (
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
    );
    let mut world = None;
    for (name, svc) in &zones {
        let env = compose_env(svc);
        let get = |k: &str| {
            env.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("{name}: {k} not set"))
        };
        let bind: SocketAddr = get("ZONE_BIND").parse().unwrap();
        assert!(
            bind.ip().is_unspecified(),
            "{name}: ZONE_BIND should be a wildcard in a container"
        );
        let public: SocketAddr = get("ZONE_PUBLIC_ADDRESS").parse().unwrap();
        assert!(
            !public.ip().is_unspecified(),
            "{name}: ZONE_PUBLIC_ADDRESS is a wildcard"
        );
        assert!(
            admins.insert(port_of(&get("ZONE_ADMIN_BIND"))),
            "{name}: admin port not distinct"
        );
        assert_eq!(
            url_host(&get("ZONE_REDIS_URL")),
            redis,
            "{name}: ZONE_REDIS_URL"
        );
        for host in get("ZONE_SCYLLA_URI").split(',') {
            assert_eq!(
                host.trim(),
                format!("{scylla}:9042"),
                "{name}: ZONE_SCYLLA_URI"
            );
        }

        // The config the server would run with: file (as mounted), image ENV, service env.
        let mounted = mounts(svc);
        let file = env.get("ZONE_CONFIG").map(|path| {
            let (source, _) = mounted
                .iter()
                .find(|(_, target)| target == path)
                .unwrap_or_else(|| panic!("{name}: ZONE_CONFIG {path} is not mounted"));
            read(source.trim_start_matches("./"))
        });
        let mut all_env = image.clone();
        all_env.extend(env.clone());
        let config = effective_config(file.as_deref(), &all_env);
        config.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        // One world, whose zones the servers share out: each zone's socket distinct and
        // published at its public address.
        let grid = config.grid().unwrap();
        assert!(
            world.get_or_insert(grid) == &grid,
            "{name}: every server must be in the same world"
        );
        let ports = strings(&svc["ports"]);
        for z in config.hosted_zones().unwrap() {
            assert!(
                hosted.insert(z.zone),
                "{name}: zone {} served twice",
                z.zone
            );
            assert!(binds.insert(z.bind.port()), "{name}: UDP port not distinct");
            assert!(
                publics.insert(z.public_address),
                "{name}: public address not distinct"
            );
            assert!(
                ports
                    .iter()
                    .any(|p| publishes(p, z.public_address.port(), z.bind.port())),
                "{name}: zone {} must publish {}:{}/udp so clients reach its public address",
                z.zone,
                z.public_address.port(),
                z.bind.port()
            );
        }

        // Its world page is linked from the other server's at the URL it publishes: the
        // host-published admin port.
        if let Some(url) = &config.admin.public_url {
            let port: u16 = url
                .rsplit(':')
                .next()
                .and_then(|p| p.trim_end_matches('/').parse().ok())
                .unwrap_or_else(|| panic!("{name}: ZONE_ADMIN_PUBLIC_URL {url} names no port"));
            assert!(
                ports
                    .iter()
                    .any(|p| publishes_tcp(p, port, config.admin.bind.port())),
                "{name}: ZONE_ADMIN_PUBLIC_URL {url} is not the published admin port"
            );
        }

        let data_dir = config.data_dir.to_string_lossy().into_owned();
        let (volume, _) = mounted
            .iter()
            .find(|(_, target)| *target == data_dir)
            .unwrap_or_else(|| panic!("{name}: no volume at the data dir {data_dir}"));
        assert!(
            compose.volumes.contains(volume),
            "{name}: {volume} is not a named volume"
        );
        assert!(
            data.insert(volume.clone()),
            "{name}: data volume {volume} shared"
        );

        assert_eq!(
            depends_condition(svc, &redis).as_deref(),
            Some("service_healthy"),
            "{name}"
        );
        assert_eq!(
            depends_condition(svc, "schema-init").as_deref(),
            Some("service_completed_successfully"),
            "{name}"
        );
    }
    let world = world.expect("a world");
    assert_eq!(
        hosted,
        world.zones().collect::<BTreeSet<_>>(),
        "every zone of the world served by exactly one server"
    );

    let init = &compose.services["schema-init"];
    assert_eq!(strings(&init["command"]), ["migrate"]);
    assert_eq!(
        compose_env(init).get("ZONE_SCYLLA_URI"),
        Some(&format!("{scylla}:9042"))
    );
    assert_eq!(
        depends_condition(init, &scylla).as_deref(),
        Some("service_healthy")
    );

    let redis_svc = &compose.services[redis.as_str()];
    let conf = mounts(redis_svc)
        .into_iter()
        .find(|(source, _)| source.ends_with("redis.conf"))
        .expect("redis mounts redis.conf");
    assert!(
        strings(&redis_svc["command"]).contains(&conf.1),
        "redis-server is started with {}",
        conf.1
    );
    let conf_text = read(conf.0.trim_start_matches("./"));
    let directive = |name: &str| {
        conf_text
            .lines()
            .map(str::trim)
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l[name.len()..].trim().to_owned())
    };
    assert_eq!(directive("appendonly").as_deref(), Some("yes"));
    assert!(
        directive("maxmemory").is_some_and(|v| v != "0"),
        "redis.conf: maxmemory"
    );
    assert!(
        !redis_svc["healthcheck"]["test"].is_null(),
        "redis healthcheck"
    );

    let scylla_svc = &compose.services[scylla.as_str()];
    let args = strings(&scylla_svc["command"]).join(" ");
    for flag in ["--developer-mode 1", "--smp 1", "--memory 1G"] {
        assert!(args.contains(flag), "scylla command lacks {flag}: {args}");
    }
    let probe = strings(&scylla_svc["healthcheck"]["test"]).join(" ");
    assert!(
        probe.contains("cqlsh") && probe.contains("describe keyspaces"),
        "{probe}"
    );
}

#[test]
fn prometheus_scrapes_every_zone_server_admin_port() {
    let compose = Compose::load();
    let expected: BTreeSet<String> = compose
        .zone_servers()
        .iter()
        .map(|(name, svc)| {
            let admin = compose_env(svc)["ZONE_ADMIN_BIND"].clone();
            format!("{name}:{}", port_of(&admin))
        })
        .collect();
    let prom = yaml("monitoring/prometheus.yml");
    let mut targets = BTreeSet::new();
    for job in prom["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
    {
        for sc in job["static_configs"].as_sequence().into_iter().flatten() {
            targets.extend(strings(&sc["targets"]));
        }
    }
    assert_eq!(targets, expected);

    let prometheus =
        compose.named(|_, v| text(&v["image"]).is_some_and(|i| i.starts_with("prom/prometheus")));
    assert_eq!(prometheus.len(), 1);
    let (prom_name, prom_svc) = &prometheus[0];
    assert!(
        mounts(prom_svc)
            .iter()
            .any(|(s, _)| s == "./monitoring/prometheus.yml"),
        "prometheus mounts monitoring/prometheus.yml"
    );
    let ds = yaml("monitoring/grafana/provisioning/datasources/prometheus.yml");
    let url = text(&ds["datasources"][0]["url"]).unwrap();
    assert_eq!(
        url_host(&url),
        *prom_name,
        "Grafana's datasource points at {url}"
    );

    let providers = yaml("monitoring/grafana/provisioning/dashboards/zone-server.yml");
    let path = text(&providers["providers"][0]["options"]["path"]).unwrap();
    let grafana = &compose.services["grafana"];
    assert!(
        mounts(grafana)
            .iter()
            .any(|(s, t)| s == "./monitoring/grafana/dashboards" && *t == path),
        "grafana mounts the dashboards at the provider's path {path}"
    );
    assert!(
        mounts(grafana)
            .iter()
            .any(|(s, t)| s == "./monitoring/grafana/provisioning"
                && t == "/etc/grafana/provisioning"),
        "grafana mounts its provisioning"
    );
}

/// Every Kubernetes document under infra/k8s, with its file name.
fn k8s_docs() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(infra().join("k8s"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "k8s manifests: {files:?}");
    let mut out = Vec::new();
    for f in files {
        for doc in yaml_docs(&format!("k8s/{f}")) {
            for key in ["apiVersion", "kind"] {
                assert!(text(&doc[key]).is_some(), "{f}: a document without {key}");
            }
            assert!(
                text(&doc["metadata"]["name"]).is_some(),
                "{f}: a document without a name"
            );
            out.push((f.clone(), doc));
        }
    }
    out
}

fn of_kind<'a>(docs: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|(_, d)| text(&d["kind"]).as_deref() == Some(kind))
        .map(|(_, d)| d)
        .collect()
}

/// The env of a k8s container: literal values, with `$(VAR)` references resolved against
/// earlier variables (downward-API ones get a stand-in address).
fn k8s_env(container: &Value) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for var in container["env"].as_sequence().into_iter().flatten() {
        let name = text(&var["name"]).unwrap();
        let value = match text(&var["value"]) {
            Some(v) => {
                let mut v = v;
                for (k, known) in &env {
                    v = v.replace(&format!("$({k})"), known);
                }
                v
            }
            None => "10.0.0.7".to_owned(),
        };
        env.insert(name, value);
    }
    env
}

fn configmap_toml(docs: &[(String, Value)]) -> (String, String) {
    let maps = of_kind(docs, "ConfigMap");
    assert_eq!(maps.len(), 1);
    let name = text(&maps[0]["metadata"]["name"]).unwrap();
    (
        name,
        text(&maps[0]["data"]["zone.toml"]).expect("ConfigMap data zone.toml"),
    )
}

#[test]
fn k8s_configmap_parses_and_validates_as_the_server_config() {
    let docs = k8s_docs();
    let (_, toml_text) = configmap_toml(&docs);
    let config: Config = toml::from_str(&toml_text).unwrap();
    config.validate().unwrap();
    assert!(
        config.store.scylla_uri.is_some(),
        "k8s uses an external ScyllaDB"
    );

    let secrets = of_kind(&docs, "Secret");
    assert_eq!(secrets.len(), 1);
    let data = &secrets[0]["stringData"];
    assert!(
        text(&data["ZONE_PRIVATE_KEY"]).is_some(),
        "Secret holds ZONE_PRIVATE_KEY"
    );
    assert!(
        read("k8s/secret.yaml").contains("openssl rand -hex 32"),
        "secret.yaml says how to make a key"
    );
}

#[test]
fn k8s_zone_servers_probe_the_admin_port_and_keep_the_spool_on_a_volume() {
    let docs = k8s_docs();
    let (config_map, toml_text) = configmap_toml(&docs);
    let secret = text(&of_kind(&docs, "Secret")[0]["metadata"]["name"]).unwrap();
    let claims: BTreeSet<String> = of_kind(&docs, "PersistentVolumeClaim")
        .iter()
        .filter_map(|d| text(&d["metadata"]["name"]))
        .collect();
    let image = image_env();

    // (what, pod spec, volume claim templates, game port declared by Agones)
    let mut pods: Vec<(String, Value, Vec<String>, Option<Value>)> = Vec::new();
    for sts in of_kind(&docs, "StatefulSet") {
        let vct = sts["spec"]["volumeClaimTemplates"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|t| text(&t["metadata"]["name"]))
            .collect();
        pods.push((
            "StatefulSet".into(),
            sts["spec"]["template"]["spec"].clone(),
            vct,
            None,
        ));
    }
    for fleet in of_kind(&docs, "Fleet") {
        let gs = &fleet["spec"]["template"]["spec"];
        assert_eq!(
            text(&gs["health"]["disabled"]).as_deref(),
            Some("false"),
            "Fleet health"
        );
        let game = gs["ports"].as_sequence().and_then(|p| p.first()).cloned();
        pods.push((
            "Fleet".into(),
            gs["template"]["spec"].clone(),
            Vec::new(),
            game,
        ));
    }
    assert_eq!(pods.len(), 2, "a StatefulSet and an Agones Fleet");

    for (what, pod, templates, agones_port) in &pods {
        let containers = pod["containers"].as_sequence().unwrap();
        let c = containers
            .iter()
            .find(|c| text(&c["name"]).as_deref() == Some("zone-server"))
            .unwrap_or_else(|| panic!("{what}: no zone-server container"));
        assert_eq!(
            text(&pod["securityContext"]["runAsNonRoot"]).as_deref(),
            Some("true")
        );

        let mut env = image.clone();
        env.extend(k8s_env(c));
        env.entry("ZONE_ZONES".into()).or_insert_with(|| "1".into());
        env.insert("ZONE_PRIVATE_KEY".into(), TEST_KEY.into());
        let config = effective_config(Some(&toml_text), &env);
        config.validate().unwrap_or_else(|e| panic!("{what}: {e}"));

        let ports = c["ports"].as_sequence().cloned().unwrap_or_default();
        let port_named = |name: &str| {
            ports
                .iter()
                .find(|p| text(&p["name"]).as_deref() == Some(name))
                .and_then(|p| p["containerPort"].as_u64())
        };
        let admin = port_named("admin").unwrap_or_else(|| panic!("{what}: no admin port"));
        assert_eq!(
            admin,
            u64::from(config.admin.bind.port()),
            "{what}: admin port"
        );
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            let get = &c[probe]["httpGet"];
            assert_eq!(text(&get["path"]).as_deref(), Some(path), "{what}: {probe}");
            let port = text(&get["port"]).unwrap();
            assert!(
                port == "admin" || port == admin.to_string(),
                "{what}: {probe} port {port}"
            );
        }

        let game = agones_port.clone().unwrap_or_else(|| {
            ports
                .iter()
                .find(|p| text(&p["name"]).as_deref() == Some("game"))
                .cloned()
                .unwrap_or_else(|| panic!("{what}: no game port"))
        });
        assert_eq!(
            game["containerPort"].as_u64(),
            Some(u64::from(config.net.bind.port())),
            "{what}"
        );
        assert_eq!(text(&game["protocol"]).as_deref(), Some("UDP"), "{what}");

        let requests = &c["resources"]["requests"];
        assert!(
            text(&requests["cpu"]).is_some() && text(&requests["memory"]).is_some(),
            "{what}: requests"
        );

        let data_dir = config.data_dir.to_string_lossy().into_owned();
        let mount = c["volumeMounts"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|m| text(&m["mountPath"]).as_deref() == Some(data_dir.as_str()))
            .and_then(|m| text(&m["name"]))
            .unwrap_or_else(|| panic!("{what}: nothing mounted at {data_dir}"));
        let volume = pod["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|v| text(&v["name"]).as_deref() == Some(mount.as_str()));
        let persistent = templates.contains(&mount)
            || volume
                .and_then(|v| text(&v["persistentVolumeClaim"]["claimName"]))
                .is_some_and(|claim| claims.contains(&claim));
        assert!(persistent, "{what}: {data_dir} must be a persistent volume");

        let refs = |key: &str, sub: &str| -> Vec<String> {
            c["envFrom"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|e| text(&e[key]["name"]))
                .chain(
                    pod["volumes"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| text(&v[sub]["name"])),
                )
                .collect()
        };
        assert!(
            refs("secretRef", "secret").contains(&secret),
            "{what}: uses Secret {secret}"
        );
        assert!(
            refs("configMapRef", "configMap").contains(&config_map),
            "{what}: mounts {config_map}"
        );
    }
}

#[test]
fn dockerfile_builds_zone_server_and_runs_it_as_non_root() {
    let ins = dockerfile();
    let froms: Vec<&String> = ins
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(froms[0].starts_with("rust:1.95-bookworm"), "{}", froms[0]);
    assert!(froms[1].starts_with("debian:bookworm-slim"), "{}", froms[1]);
    let build = ins
        .iter()
        .find(|(op, a)| op == "RUN" && a.contains("cargo build"))
        .map(|(_, a)| a.clone())
        .expect("a RUN cargo build");
    for part in ["--release", "-p zone-shell", "--bin zone-server"] {
        assert!(build.contains(part), "cargo build lacks {part}: {build}");
    }

    let last_from = ins.iter().rposition(|(op, _)| op == "FROM").unwrap();
    let runtime = &ins[last_from..];
    let last = |op: &str| {
        runtime
            .iter()
            .rev()
            .find(|(o, _)| o == op)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("runtime stage has no {op}"))
    };
    let user = last("USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "runs as {user}");
    assert!(last("ENTRYPOINT").contains("zone-server"));
    let health = last("HEALTHCHECK");
    assert!(health.contains("/healthz"), "{health}");
    if health.contains("curl") {
        assert!(
            runtime
                .iter()
                .any(|(o, a)| o == "RUN" && a.contains("install") && a.contains("curl")),
            "HEALTHCHECK uses curl: the runtime stage must install it"
        );
    }
    let expose = last("EXPOSE");
    let env = image_env();
    let admin = port_of(&env["ZONE_ADMIN_BIND"]);
    assert!(
        expose.contains("40000/udp") && expose.contains(&admin.to_string()),
        "{expose}"
    );
    assert!(
        last("VOLUME").contains(&env["ZONE_DATA_DIR"]),
        "VOLUME at ZONE_DATA_DIR"
    );
}

/// Series names a Prometheus scrape of `text` can be queried by.
fn exported_series(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (Some(name), Some(kind)) = (it.next(), it.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["", "_sum", "_count", "_created"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// `zone_*` metric names in a PromQL expression (skipping strings and `$variables`).
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = expr.char_indices().peekable();
    let mut prev = ' ';
    while let Some((i, c)) = chars.next() {
        if c == '"' || c == '\'' {
            for (_, d) in chars.by_ref() {
                if d == c {
                    break;
                }
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' || d == ':' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &expr[i..end];
            if prev != '$' && word.starts_with("zone_") {
                names.insert(word.to_owned());
            }
        }
        prev = c;
    }
    names
}

fn balanced(expr: &str) -> bool {
    let mut stack = Vec::new();
    let mut in_str = None;
    for c in expr.chars() {
        match (in_str, c) {
            (Some(q), _) if c == q => in_str = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => in_str = Some(c),
            (None, '(' | '{' | '[') => stack.push(c),
            (None, ')') if stack.pop() != Some('(') => return false,
            (None, '}') if stack.pop() != Some('{') => return false,
            (None, ']') if stack.pop() != Some('[') => return false,
            _ => {}
        }
    }
    stack.is_empty() && in_str.is_none()
}

/// Every PromQL string of a dashboard: panel targets (rows included) and variable queries.
pub(crate) fn dashboard_queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr" | "definition" | "query", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => dashboard_queries(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| dashboard_queries(x, out)),
        _ => {}
    }
}

fn datasource_uids(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(uid) = m
                .get("datasource")
                .and_then(|d| d.get("uid"))
                .and_then(|u| u.as_str())
            {
                out.insert(uid.to_owned());
            }
            m.values().for_each(|x| datasource_uids(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| datasource_uids(x, out)),
        _ => {}
    }
}

async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// Every alert rule's expression in `monitoring/alerts.yml`.
fn alert_queries() -> Vec<String> {
    let rules = yaml("monitoring/alerts.yml");
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().expect("alert groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            out.push(text(&rule["expr"]).expect("every rule has an expr"));
        }
    }
    out
}

#[test]
fn alert_rules_load_and_pass_their_promtool_tests() {
    let _live = crate::support::live(module_path!());
    let promtool = |args: &[&str]| {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(infra().join("monitoring"))
            .output()
            .unwrap_or_else(|e| {
                panic!("promtool is needed (apt-get install prometheus; .ci/run does): {e}")
            });
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts.test.yml"]);
    // The rules asked for: tick overruns, spool backlog, breaker open, lease loss, handoffs.
    let names: Vec<String> = yaml("monitoring/alerts.yml")["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|r| text(&r["alert"]))
        .collect();
    for wanted in [
        "ZoneTickOverruns",
        "ZoneSpoolBacklog",
        "ZoneBreakerOpen",
        "ZoneLeaseLost",
        "ZoneHandoffFailures",
    ] {
        assert!(names.iter().any(|n| n == wanted), "no alert {wanted}");
    }
    // Prometheus loads them (and compose mounts them beside its config).
    let prometheus = yaml("monitoring/prometheus.yml");
    assert!(
        prometheus["rule_files"]
            .as_sequence()
            .is_some_and(|f| f.iter().any(|x| text(x).as_deref() == Some("alerts.yml"))),
        "prometheus.yml loads alerts.yml"
    );
    assert!(
        read("docker-compose.yml")
            .contains("./monitoring/alerts.yml:/etc/prometheus/alerts.yml:ro"),
        "compose mounts alerts.yml next to prometheus.yml"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_only_metrics_a_real_server_exports() {
    let _live = crate::support::live(module_path!());
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("monitoring/grafana/dashboards/zone-server.json")).unwrap();
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    // The alert rules' expressions too: they must name metrics the server exports.
    queries.extend(alert_queries());
    let mut used = BTreeSet::new();
    for q in &queries {
        assert!(balanced(q), "unbalanced PromQL: {q}");
        used.extend(promql_metrics(q));
    }
    // The panels the dashboard promises.
    for wanted in [
        "zone_tick_seconds_bucket",
        "zone_clients",
        "zone_udp_bytes_total",
        "zone_dropped_packets_total",
        "zone_spool_records",
        "zone_spool_bytes",
        "zone_flush_lag_seconds",
        "zone_breaker_state",
        "zone_dead_letters_total",
    ] {
        assert!(used.contains(wanted), "dashboard has no panel on {wanted}");
    }
    let ds = yaml("monitoring/grafana/provisioning/datasources/prometheus.yml");
    let uid = text(&ds["datasources"][0]["uid"]).unwrap();
    let mut uids = BTreeSet::new();
    datasource_uids(&dashboard, &mut uids);
    assert_eq!(
        uids,
        BTreeSet::from([uid]),
        "panels use the provisioned datasource"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::support::loopback_config(dir.path());
    config.zone.arena_size = 64;
    config.zone.npcs = 50;
    let running = zone_shell::app::start(config, Some(600)).await.unwrap();
    // prometheus-client leaves a labelled family out of the scrape until it has a child: the
    // enumerated reasons are created at start-up; junk datagrams give the rest real ones.
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for len in [1usize, 40, 1300] {
        junk.send_to(&vec![0xA5; len], running.udp_addr).unwrap();
    }
    let mut body = scrape(running.admin_addr).await;
    for _ in 0..500 {
        let seen = exported_series(&body);
        if seen.contains("zone_ticks_total")
            && seen.contains("zone_dropped_packets_total")
            && running
                .status
                .ticks
                .load(std::sync::atomic::Ordering::Acquire)
                > 0
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        body = scrape(running.admin_addr).await;
    }
    running.shutdown();
    running.finish().await.unwrap();

    let exported = exported_series(&body);
    assert!(
        exported.contains("zone_tick_seconds_bucket"),
        "scrape:\n{body}"
    );
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the server does not export: {missing:?}\nexported: {exported:?}"
    );
}
