//! deploy/compose.yaml and the Dockerfiles, checked without a Docker engine: their structure
//! against the services' real config keys, ports and the routes file, and the compose file
//! through `docker-compose config` (Debian's docker-compose, which needs no engine for it).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use ppodok_deploy_kit::{dockerfile_stages, read, repo_root, yaml};
use serde_yaml_ng::Value;

const SECRETS: [(&str, &str); 4] = [
    ("MARIADB_PASSWORD", "compose-test-db-password"),
    (
        "PPODOK_JWT_SECRET",
        "compose-test-jwt-secret-0123456789abcdef",
    ),
    (
        "LIVEKIT_API_SECRET",
        "compose-test-livekit-secret-0123456789ab",
    ),
    ("GRAFANA_ADMIN_PASSWORD", "compose-test-grafana"),
];

fn services() -> serde_yaml_ng::Mapping {
    yaml("deploy/compose.yaml")["services"]
        .as_mapping()
        .expect("compose.yaml has services")
        .clone()
}

fn service_names(services: &serde_yaml_ng::Mapping) -> BTreeSet<String> {
    services
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

/// The services built from `dockerfile` (a path relative to the repository root).
fn built_from(services: &serde_yaml_ng::Mapping, dockerfile: &str) -> Vec<String> {
    services
        .iter()
        .filter(|(_, s)| s["build"]["dockerfile"].as_str() == Some(dockerfile))
        .map(|(name, _)| name.as_str().unwrap().to_owned())
        .collect()
}

/// A list of strings (ports, volumes, aliases); empty when absent.
fn strings(value: &Value) -> Vec<&str> {
    value
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn environment(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_mapping()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                other => serde_yaml_ng::to_string(other).unwrap().trim().to_owned(),
            };
            (k.as_str().unwrap().to_owned(), value)
        })
        .collect()
}

/// Whether `PREFIX__A__B` names a key `a.b` of the service's compiled-in defaults.
fn config_has_key(defaults: &toml::Table, path: &str) -> bool {
    let mut node = toml::Value::Table(defaults.clone());
    for part in path.split("__") {
        match node.get(part.to_ascii_lowercase()) {
            Some(next) => node = next.clone(),
            None => return false,
        }
    }
    !node.is_table()
}

fn routes() -> toml::Table {
    read("deploy/routes.toml").parse().expect("routes.toml")
}

fn route_target(name: &str) -> (u16, String) {
    let routes = routes();
    let target = routes["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("routes.toml has no target {name}"));
    (
        target["port"].as_integer().unwrap() as u16,
        target["service_name"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn the_whole_system_is_there() {
    let services = services();
    let names = service_names(&services);
    for want in ["mariadb", "redis", "router", "prometheus", "grafana"] {
        assert!(names.contains(want), "compose.yaml lacks {want}: {names:?}");
    }
    assert_eq!(
        built_from(&services, "deploy/docker/api.Dockerfile"),
        ["api-1", "api-2"]
    );
    assert_eq!(
        built_from(&services, "deploy/docker/sfu.Dockerfile"),
        ["sfu-1", "sfu-2"]
    );
    for (name, service) in &services {
        if service["build"].is_mapping() {
            assert_eq!(service["build"]["context"].as_str(), Some(".."), "{name:?}");
            let dockerfile = service["build"]["dockerfile"].as_str().unwrap();
            assert!(repo_root().join(dockerfile).is_file(), "{dockerfile}");
        } else {
            let image = service["image"].as_str().unwrap_or("");
            assert!(
                image.contains(':') && !image.ends_with(":latest"),
                "{name:?}: pin the image version, not `{image}`"
            );
        }
        for dependency in service["depends_on"]
            .as_mapping()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .or_else(|| service["depends_on"].as_sequence().cloned())
            .into_iter()
            .flatten()
        {
            let dependency = dependency.as_str().unwrap();
            assert!(
                names.contains(dependency),
                "{name:?} depends on unknown {dependency}"
            );
        }
    }
}

#[test]
fn environment_variables_name_real_config_keys() {
    let services = services();
    let api_defaults: toml::Table = read("services/api/config/default.toml").parse().unwrap();
    let sfu_defaults: toml::Table = read("services/sfu/config/default.toml").parse().unwrap();
    let mut checked = 0;
    for (name, service) in &services {
        for (key, value) in environment(service) {
            if let Some(path) = key.strip_prefix("PPODOK_SFU__") {
                assert!(
                    config_has_key(&sfu_defaults, path),
                    "{name:?}: {key} is no SFU config key"
                );
                checked += 1;
            } else if let Some(path) = key.strip_prefix("PPODOK__") {
                assert!(
                    config_has_key(&api_defaults, path),
                    "{name:?}: {key} is no API config key"
                );
                checked += 1;
            }
            let upper = key.to_ascii_uppercase();
            if upper.contains("SECRET") || upper.contains("PASSWORD") {
                let required = value.contains("${") && value.contains(":?");
                let random = key == "MARIADB_RANDOM_ROOT_PASSWORD";
                assert!(
                    required || random,
                    "{name:?}: {key} must come from deploy/.env as a required `${{VAR:?…}}`, not `{value}`"
                );
            }
        }
    }
    assert!(
        checked >= 15,
        "only {checked} service config variables found"
    );
}

#[test]
fn ports_aliases_and_health_match_the_routes_file_and_the_services() {
    let services = services();
    let (api_port, api_alias) = route_target("api");
    let (sfu_port, sfu_alias) = route_target("sfu");
    for (dockerfile, port_key, port, alias) in [
        (
            "deploy/docker/api.Dockerfile",
            "PPODOK__SERVER__PORT",
            api_port,
            &api_alias,
        ),
        (
            "deploy/docker/sfu.Dockerfile",
            "PPODOK_SFU__PORT",
            sfu_port,
            &sfu_alias,
        ),
    ] {
        for name in built_from(&services, dockerfile) {
            let service = &services[name.as_str()];
            let env = environment(service);
            assert_eq!(
                env.get(port_key).map(String::as_str),
                Some(port.to_string().as_str()),
                "{name}"
            );
            let aliases = strings(&service["networks"]["default"]["aliases"]);
            assert!(
                aliases.contains(&alias.as_str()),
                "{name}: the router's upstream `{alias}` must be its alias"
            );
            assert!(
                strings(&service["ports"])
                    .iter()
                    .all(|p| !p.contains(&format!(":{port}"))),
                "{name}: only the router is published for HTTP"
            );
        }
        let text = read(dockerfile);
        let stages = dockerfile_stages(&text);
        let expose = stages.last().unwrap().all("EXPOSE").join(" ");
        assert!(
            expose.split_whitespace().any(|p| p == port.to_string()),
            "{dockerfile}: EXPOSE {expose}"
        );
    }

    // Each SFU node publishes exactly its own media port range, 1:1, and is in the node
    // registry under a node id the router has a node-addressed upstream for (its alias).
    let nodes: Vec<String> = routes()["node_routes"][0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    let nginx = read("deploy/generated/nginx.compose.conf");
    let mut ranges = Vec::new();
    for (name, node) in built_from(&services, "deploy/docker/sfu.Dockerfile")
        .iter()
        .zip(&nodes)
    {
        let sfu = &services[name.as_str()];
        let env = environment(sfu);
        let (min, max) = (
            &env["PPODOK_SFU__RTC__UDP_PORT_MIN"],
            &env["PPODOK_SFU__RTC__UDP_PORT_MAX"],
        );
        let published = strings(&sfu["ports"]);
        assert_eq!(
            published,
            [format!("{min}-{max}:{min}-{max}/udp")],
            "{name}"
        );
        ranges.push((min.parse::<u16>().unwrap(), max.parse::<u16>().unwrap()));
        assert!(env["PPODOK_SFU__WEBHOOK__URLS"]
            .starts_with(&format!("http://{api_alias}:{api_port}/")));
        assert_eq!(env["PPODOK_SFU__CLUSTER__NODE_ID"], *node, "{name}");
        assert!(env["PPODOK_SFU__CLUSTER__PUBLIC_URL"].ends_with(&format!("/sfu/{node}")));
        assert!(!env["PPODOK_SFU__CLUSTER__REDIS_URL"].is_empty(), "{name}");
        assert!(
            strings(&sfu["networks"]["default"]["aliases"]).contains(&node.as_str()),
            "{name}: the router's node upstream `{node}` must be its alias"
        );
        assert!(
            nginx.contains(&format!("server {node}:{sfu_port};")),
            "{node}"
        );
    }
    assert_eq!(ranges.len(), nodes.len(), "one SFU service per routed node");
    ranges.sort();
    assert!(
        ranges.windows(2).all(|w| w[0].1 < w[1].0),
        "{ranges:?} overlap"
    );

    // The router serves the rendered compose config and waits for healthy upstreams.
    let router = &services["router"];
    let volumes = strings(&router["volumes"]);
    assert!(
        volumes.contains(&"./generated/nginx.compose.conf:/etc/nginx/nginx.conf:ro"),
        "{volumes:?}"
    );
    assert!(nginx.contains(&format!("server {api_alias}:{api_port};")));
    assert!(nginx.contains(&format!("server {sfu_alias}:{sfu_port};")));
    let listen = routes()["router"]["listen_port"].as_integer().unwrap();
    let router_ports = strings(&router["ports"]);
    assert_eq!(
        router_ports,
        [format!("${{PPODOK_HTTP_PORT:-8000}}:{listen}")]
    );
    for upstream in ["api-1", "api-2", "sfu-1", "sfu-2"] {
        assert_eq!(
            router["depends_on"][upstream]["condition"].as_str(),
            Some("service_healthy"),
            "router must wait for {upstream}"
        );
    }
    for stateful in ["mariadb", "redis"] {
        assert!(
            services[stateful]["healthcheck"]["test"].is_sequence(),
            "{stateful} needs a health check"
        );
    }
    // Monitoring is not published beyond this host.
    for (service, port) in [("prometheus", 9090), ("grafana", 3000)] {
        let ports = strings(&services[service]["ports"]);
        assert_eq!(ports, [format!("127.0.0.1:{port}:{port}")]);
    }
}

#[test]
fn bind_mounts_point_at_files_in_the_repository() {
    let services = services();
    let mut mounts = 0;
    for (name, service) in &services {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let volume = volume.as_str().unwrap();
            if let Some(source) = volume.split(':').next().filter(|s| s.starts_with("./")) {
                let path = repo_root().join("deploy").join(source);
                assert!(path.exists(), "{name:?} mounts missing {}", path.display());
                mounts += 1;
            }
        }
    }
    assert!(mounts >= 4);
    // What Prometheus and Grafana are told to load is inside what is mounted.
    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    for file in prometheus["rule_files"].as_sequence().unwrap() {
        assert!(repo_root()
            .join("deploy/prometheus")
            .join(file.as_str().unwrap())
            .is_file());
    }
    let provider = yaml("deploy/grafana/provisioning/dashboards/ppodok.yml");
    assert_eq!(
        provider["providers"][0]["options"]["path"].as_str(),
        Some("/var/lib/grafana/dashboards")
    );
}

/// Prometheus scrapes every API replica and SFU node of the compose file on its service port.
#[test]
fn prometheus_scrapes_every_replica_and_node() {
    let services = services();
    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    let targets = |job: &str| -> BTreeSet<String> {
        prometheus["scrape_configs"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|c| c["job_name"].as_str() == Some(job))
            .unwrap_or_else(|| panic!("no scrape job {job}"))["static_configs"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|c| c["targets"].as_sequence().unwrap().iter())
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    };
    let (api_port, _) = route_target("api");
    let (sfu_port, _) = route_target("sfu");
    let want = |dockerfile, port| -> BTreeSet<String> {
        built_from(&services, dockerfile)
            .into_iter()
            .map(|s| format!("{s}:{port}"))
            .collect()
    };
    assert_eq!(
        targets("ppodok-api"),
        want("deploy/docker/api.Dockerfile", api_port)
    );
    assert_eq!(
        targets("ppodok-sfu"),
        want("deploy/docker/sfu.Dockerfile", sfu_port)
    );
}

#[test]
fn dockerfiles_are_multi_stage_non_root_with_health_checks() {
    for (package, config_file) in [
        ("ppodok-api", Some("services/api/config/production.toml")),
        ("ppodok-sfu", None),
    ] {
        let dockerfile = format!(
            "deploy/docker/{}.Dockerfile",
            package.trim_start_matches("ppodok-")
        );
        let stages = dockerfile_stages(&read(&dockerfile));
        assert_eq!(
            stages.len(),
            2,
            "{dockerfile}: a build stage and a runtime stage"
        );
        let (build, runtime) = (&stages[0], &stages[1]);
        assert!(
            build.base.starts_with("rust:"),
            "{dockerfile}: {}",
            build.base
        );
        let build_run = build.all("RUN").join("\n");
        assert!(
            build_run.contains(&format!("cargo build --release --locked -p {package}")),
            "{dockerfile}: {build_run}"
        );
        let build_name = build.name.as_deref().expect("the build stage is named");
        assert!(
            runtime.base.ends_with("-slim"),
            "{dockerfile}: small runtime base, not {}",
            runtime.base
        );
        assert!(
            runtime
                .all("COPY")
                .iter()
                .any(|c| c.starts_with(&format!("--from={build_name} /out/{package} "))),
            "{dockerfile}: only the binary comes from the build stage"
        );
        assert!(
            runtime.all("RUN").iter().all(|r| !r.contains("apt-get")),
            "{dockerfile}: no packages in the runtime"
        );
        let user = runtime.last("USER").expect("a USER in the runtime stage");
        let uid = user.split(':').next().unwrap();
        assert!(uid != "root" && uid != "0", "{dockerfile}: runs as {user}");
        assert!(
            runtime
                .last("HEALTHCHECK")
                .is_some_and(|h| h.contains("/health")),
            "{dockerfile}"
        );
        assert_eq!(
            runtime.last("ENTRYPOINT"),
            Some(format!("[\"/usr/local/bin/{package}\"]").as_str())
        );
        if let Some(config_file) = config_file {
            let copies = runtime.all("COPY").join("\n");
            assert!(
                copies.contains(config_file),
                "{dockerfile}: copies {config_file}"
            );
            assert!(repo_root().join(config_file).is_file());
            assert!(runtime
                .all("ENV")
                .iter()
                .any(|e| e.starts_with("PPODOK_CONFIG=/etc/ppodok/")));
        }
    }
    let ignore = read(".dockerignore");
    for excluded in [".git", "target", "**/node_modules"] {
        assert!(
            ignore.lines().any(|l| l.trim() == excluded),
            ".dockerignore lacks {excluded}"
        );
    }
}

/// Debian's docker-compose (1.29) validates the file against the Compose schema and resolves
/// variables without a Docker engine. Without the secrets it refuses to render.
#[test]
fn docker_compose_config_accepts_the_file_and_requires_the_secrets() {
    let compose = || {
        let mut command = Command::new("docker-compose");
        command
            .current_dir(repo_root())
            // The example env file leaves every secret empty (a developer's deploy/.env must not
            // decide the refusals below); values from the process environment win over it.
            .args([
                "--env-file",
                "deploy/.env.example",
                "--project-directory",
                "deploy",
            ])
            .args(["-f", "deploy/compose.yaml", "config"])
            .env_remove("MARIADB_PASSWORD")
            .env_remove("PPODOK_JWT_SECRET")
            .env_remove("LIVEKIT_API_SECRET")
            .env_remove("GRAFANA_ADMIN_PASSWORD");
        command
    };
    let ok = compose()
        .envs(SECRETS)
        .output()
        .expect("docker-compose is installed (apt-get install docker-compose; .ci/run does)");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let resolved: Value = serde_yaml_ng::from_str(&stdout).unwrap();
    // Merged and interpolated: api-2 got the shared API environment with the secret in it.
    let api2 = environment(&resolved["services"]["api-2"]);
    assert_eq!(api2["PPODOK__AUTH__JWT_SECRET"], SECRETS[1].1);
    assert_eq!(api2["PPODOK__REDIS__URL"], "redis://redis:6379");

    for (missing, _) in SECRETS {
        let refused = compose()
            .envs(SECRETS.iter().filter(|(k, _)| *k != missing).copied())
            .output()
            .unwrap();
        assert!(
            !refused.status.success(),
            "compose rendered without {missing}"
        );
        assert!(String::from_utf8_lossy(&refused.stderr).contains(missing));
    }
}
