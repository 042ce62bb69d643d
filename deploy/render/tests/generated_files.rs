//! The committed files under deploy/generated/ must be exactly what deploy/routes.toml
//! renders to, and the real routes must send each path where the design says.

use std::path::{Path, PathBuf};

use ppodok_deploy_render::{load, render_all, Action, RouteTable};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the render crate lives inside deploy/")
        .to_path_buf()
}

fn real_routes() -> RouteTable {
    let text = std::fs::read_to_string(deploy_dir().join("routes.toml")).expect("read routes.toml");
    load(&text).unwrap_or_else(|error| panic!("deploy/routes.toml: {error}"))
}

#[test]
fn committed_files_match_the_routes_file() {
    for file in render_all(&real_routes()) {
        let path = deploy_dir().join("generated").join(file.file_name);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        assert!(
            committed == file.contents,
            "{} is out of date; run `cargo run -p ppodok-deploy-render`",
            path.display()
        );
    }
}

#[test]
fn real_routes_send_each_path_where_the_design_says() {
    let table = real_routes();
    let destination = |path: &str| match table.resolve(path) {
        Action::Forward(target) => target.name.clone(),
        Action::Deny => "denied".to_owned(),
    };
    let expected = [
        ("/rtc", "sfu"),
        ("/rtc/validate", "sfu"),
        ("/rtc/v1", "sfu"),
        ("/rtc/v1/validate", "sfu"),
        ("/video/health", "sfu"),
        ("/api/v1/rooms", "api"),
        ("/api/v1/internal/sfu/webhook", "api"),
        ("/bbodok-websocket", "api"),
        ("/health", "api"),
        ("/ready", "api"),
        ("/swagger-ui/index.html", "api"),
        ("/api-docs/openapi.json", "api"),
        ("/video/api/url", "api"),
        ("/video/getToken", "api"),
        ("/video/getToken/x", "sfu"),
        ("/", "web"),
        ("/invite/Q7vTz2LmK9", "web"),
        ("/assets/index.js", "web"),
        ("/apix", "web"),
        ("/rtcx", "web"),
        ("/metrics", "denied"),
        ("/metrics/anything", "denied"),
        ("/socket.io/", "denied"),
        ("/sfu/ppodok-sfu-0/rtc", "sfu_node_0"),
        ("/sfu/ppodok-sfu-0/rtc/validate", "sfu_node_0"),
        ("/sfu/ppodok-sfu-1/rtc", "sfu_node_1"),
        ("/sfu/ppodok-sfu-1/rtc/v1/validate", "sfu_node_1"),
        (
            "/sfu/ppodok-sfu-1/twirp/livekit.RoomService/ListRooms",
            "web",
        ),
        ("/sfu/ppodok-sfu-2/rtc", "web"),
    ];
    for (path, want) in expected {
        assert_eq!(destination(path), want, "{path}");
    }
}

#[test]
fn real_targets_listen_where_the_services_do() {
    let table = real_routes();
    let api = table.target("api").expect("api target");
    assert_eq!((api.port, api.health_path.as_str()), (8080, "/health"));
    let sfu = table.target("sfu").expect("sfu target");
    assert_eq!((sfu.port, sfu.health_path.as_str()), (7880, "/health"));
    assert_eq!(table.router.idle_timeout_seconds, 60);
    let web = table.target("web").expect("web target");
    assert_eq!(web.kind, ppodok_deploy_render::TargetKind::Static);
    assert_eq!(table.router.default_target, "web");
    // Signalling to the SFU is a WebSocket; its server API (Twirp) is plain HTTP.
    let sfu_rules: Vec<_> = table
        .rules
        .iter()
        .filter(|rule| rule.target.starts_with("sfu"))
        .collect();
    assert!(sfu_rules
        .iter()
        .filter(|rule| rule.name != "sfu_server_api")
        .all(|rule| rule.websocket));
    assert!(sfu_rules
        .iter()
        .any(|rule| rule.name == "sfu_server_api" && !rule.websocket));
}

#[test]
fn each_sfu_node_is_a_target_of_its_own_on_every_router() {
    let table = real_routes();
    let nodes: Vec<(&str, &str, u16, Option<u16>)> = table
        .targets
        .iter()
        .filter_map(|t| {
            Some((
                t.node_id.as_deref()?,
                t.service_name.as_str(),
                t.port,
                t.local_port,
            ))
        })
        .collect();
    assert_eq!(
        nodes,
        [
            ("ppodok-sfu-0", "ppodok-sfu-0", 7880, None),
            ("ppodok-sfu-1", "ppodok-sfu-1", 7880, Some(7881))
        ]
    );
    let files = render_all(&table);
    let file = |name: &str| {
        files
            .iter()
            .find(|f| f.file_name == name)
            .map(|f| f.contents.as_str())
            .unwrap()
    };
    let nginx = file("nginx.conf");
    assert!(nginx.contains("    upstream sfu_node_1 {\n        server 127.0.0.1:7881;\n"));
    assert!(nginx.contains(
        "        location ^~ /sfu/ppodok-sfu-1/rtc/ {\n            proxy_pass http://sfu_node_1;\n"
    ));
    let compose = file("nginx.compose.conf");
    assert!(compose.contains("    upstream sfu_node_0 {\n        server ppodok-sfu-0:7880;\n"));
    assert!(compose.contains("    upstream sfu_node_1 {\n        server ppodok-sfu-1:7880;\n"));
    let alb = file("alb.tf");
    assert!(alb.contains("resource \"aws_lb_target_group\" \"sfu_node_0\" {"));
    assert!(alb.contains("\"/sfu/ppodok-sfu-0/rtc/*\""), "{alb}");
    let ingress = file("ingress.yaml");
    assert!(
        ingress.contains("          - path: /sfu/ppodok-sfu-1/rtc\n            pathType: Prefix\n")
    );
    assert!(ingress.contains("kind: Service\nmetadata:\n  name: ppodok-sfu-1\n"));
    assert!(ingress.contains("    statefulset.kubernetes.io/pod-name: ppodok-sfu-1\n"));
    assert!(ingress.contains("    - port: 7880\n      targetPort: 7880\n"));
    assert!(
        !alb.contains("7881") && !ingress.contains("7881"),
        "7881 is local only"
    );
}
