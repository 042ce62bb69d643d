use ppodok_sfu::{config::Settings, startup::Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    let format = ppodok_telemetry::LogFormat::parse(&settings.telemetry.format)
        .unwrap_or(ppodok_telemetry::LogFormat::Text);
    ppodok_telemetry::init(format, &settings.telemetry.filter);
    let app = Application::build(settings).await?;
    println!("ppodok-sfu listening on http://127.0.0.1:{}", app.port());
    app.stop_on_signal();
    app.run_until_stopped().await
}
