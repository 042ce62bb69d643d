//! Test support: instruction counts by callgrind, for the cost guards (`router::cost`,
//! `media::cost`). The test binary runs one of its own tests under valgrind, with only the
//! functions matching `*measured_replay*` counted.

/// Instructions callgrind counts in `measured_replay` when the test `test` of this binary runs
/// with `envs` set (e.g. the replay length).
pub fn instructions_in_measured_replay(test: &str, envs: &[(&str, String)]) -> u64 {
    let exe = std::env::current_exe().expect("test binary path");
    let tag: String = envs.iter().map(|(_, v)| format!("-{v}")).collect();
    let out =
        std::env::temp_dir().join(format!("ppodok-cost-{}{tag}.callgrind", std::process::id()));
    let status = std::process::Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--toggle-collect=*measured_replay*")
        .arg(&exe)
        .args(["--exact", test, "--test-threads=1"])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("valgrind (apt-get install valgrind; .ci/run installs it)");
    assert!(status.success(), "the replay under callgrind failed");
    let text = std::fs::read_to_string(&out).expect("callgrind output");
    let _ = std::fs::remove_file(&out);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("callgrind totals")
}
