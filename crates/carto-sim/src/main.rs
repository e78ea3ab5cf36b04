//! carto-sim CLI:
//!   carto-sim setup --config FILE
//!   carto-sim serve --config FILE [--listen ADDR] [--setup]
//!   carto-sim teardown --config FILE
use carto_sim::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage:\n  carto-sim setup --config FILE\n  carto-sim serve --config FILE [--listen ADDR] [--setup]\n  carto-sim teardown --config FILE";

struct Args {
    cmd: String,
    config: Option<PathBuf>,
    listen: Option<String>,
    setup: bool,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().ok_or_else(|| USAGE.to_string())?;
    let mut a = Args { cmd, config: None, listen: None, setup: false };
    while let Some(x) = it.next() {
        let (k, inline) = match x.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (x.clone(), None),
        };
        let mut val = || inline.clone().or_else(|| it.next()).ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--config" => a.config = Some(PathBuf::from(val()?)),
            "--listen" => a.listen = Some(val()?),
            "--setup" => a.setup = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(path) = args.config.clone() else {
        eprintln!("--config FILE is required\n{USAGE}");
        return ExitCode::from(2);
    };
    let mut config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("carto-sim: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(l) = &args.listen {
        config.listen = l.clone();
    }
    match args.cmd.as_str() {
        "setup" => match carto_sim::setup::setup(&config).await {
            Ok(()) => {
                eprintln!("carto-sim: setup done");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("carto-sim: setup failed: {e}");
                ExitCode::FAILURE
            }
        },
        "teardown" => match carto_sim::setup::teardown(&config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("carto-sim: teardown failed: {e}");
                ExitCode::FAILURE
            }
        },
        "serve" => serve(config, args.setup).await,
        other => {
            eprintln!("unknown command {other}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

async fn serve(config: Config, setup: bool) -> ExitCode {
    if setup {
        if let Err(e) = carto_sim::setup::setup(&config).await {
            eprintln!("carto-sim: setup failed: {e}");
            return ExitCode::FAILURE;
        }
        eprintln!("carto-sim: setup done");
    }
    let listener = match tokio::net::TcpListener::bind(&config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("carto-sim: cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("carto-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    let state = match carto_sim::state::AppState::new(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("carto-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("carto-sim listening on http://{addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let shutdown = async {
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        eprintln!("carto-sim: shutting down");
    };
    // Open streams should not keep the process alive for long after a signal.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serve = carto_sim::server::serve(state, listener, async move {
        shutdown.await;
        let _ = tx.send(());
    });
    let forced = async move {
        let _ = rx.await;
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    };
    tokio::select! {
        r = serve => {
            if let Err(e) = r {
                eprintln!("carto-sim: {e}");
                return ExitCode::FAILURE;
            }
        }
        _ = forced => eprintln!("carto-sim: open connections closed forcibly"),
    }
    ExitCode::SUCCESS
}
