//! Reads deploy/routes.toml and writes deploy/generated/; `--check` only compares.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ppodok_deploy_render::{load, render_all};

const USAGE: &str = "\
Usage: ppodok-deploy-render [--check] [--routes <file>] [--out <dir>]

Renders the path router description into nginx, ALB (Terraform) and Ingress files.

  --check          write nothing; exit 1 if any generated file is missing or out of date
  --routes <file>  routes file to read (default: deploy/routes.toml)
  --out <dir>      directory to write into (default: deploy/generated)";

struct Options {
    check: bool,
    routes: PathBuf,
    out_dir: PathBuf,
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(None)` means help was asked for.
fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    // Defaults are anchored to this crate, so the binary works from any directory.
    let deploy_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the render crate lives inside deploy/");
    let mut options = Options {
        check: false,
        routes: deploy_dir.join("routes.toml"),
        out_dir: deploy_dir.join("generated"),
    };
    let mut args = args;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => options.check = true,
            "--routes" => options.routes = args.next().ok_or("--routes needs a file")?.into(),
            "--out" => options.out_dir = args.next().ok_or("--out needs a directory")?.into(),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Some(options))
}

/// Returns whether the generated files are (now) up to date.
fn run(options: &Options) -> Result<bool, String> {
    let routes_text = std::fs::read_to_string(&options.routes)
        .map_err(|error| format!("cannot read {}: {error}", options.routes.display()))?;
    let table =
        load(&routes_text).map_err(|error| format!("{}: {error}", options.routes.display()))?;
    let files = render_all(&table);

    if options.check {
        let mut up_to_date = true;
        for file in &files {
            let path = options.out_dir.join(file.file_name);
            let current = std::fs::read_to_string(&path).ok();
            if current.as_deref() != Some(file.contents.as_str()) {
                eprintln!("out of date: {}", path.display());
                up_to_date = false;
            }
        }
        if up_to_date {
            println!("generated files are up to date");
        } else {
            eprintln!("run `cargo run -p ppodok-deploy-render` and commit the result");
        }
        return Ok(up_to_date);
    }

    std::fs::create_dir_all(&options.out_dir)
        .map_err(|error| format!("cannot create {}: {error}", options.out_dir.display()))?;
    for file in &files {
        let path = options.out_dir.join(file.file_name);
        std::fs::write(&path, &file.contents)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(true)
}
