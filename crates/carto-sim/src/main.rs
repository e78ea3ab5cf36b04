//! carto-sim CLI:
//!   carto-sim setup --config FILE
//!   carto-sim serve --config FILE [--listen ADDR] [--setup] [--tls-listen ADDR --tls-cert FILE --tls-key FILE]
//!   carto-sim teardown --config FILE
use carto_sim::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage:\n  carto-sim setup --config FILE\n  carto-sim serve --config FILE [--listen ADDR] [--setup] [--tls-listen ADDR --tls-cert FILE --tls-key FILE]\n  carto-sim teardown --config FILE";

struct Args {
    cmd: String,
    config: Option<PathBuf>,
    listen: Option<String>,
    setup: bool,
    /// A second, HTTPS listener (same accounts and state) with this certificate chain and key.
    tls_listen: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().ok_or_else(|| USAGE.to_string())?;
    let mut a = Args { cmd, config: None, listen: None, setup: false, tls_listen: None, tls_cert: None, tls_key: None };
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
            "--tls-listen" => a.tls_listen = Some(val()?),
            "--tls-cert" => a.tls_cert = Some(PathBuf::from(val()?)),
            "--tls-key" => a.tls_key = Some(PathBuf::from(val()?)),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if a.tls_listen.is_some() != (a.tls_cert.is_some() && a.tls_key.is_some()) || a.tls_cert.is_some() != a.tls_key.is_some() {
        return Err(format!("--tls-listen, --tls-cert and --tls-key go together\n{USAGE}"));
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
        "serve" => {
            let tls = match (&args.tls_listen, &args.tls_cert, &args.tls_key) {
                (Some(l), Some(c), Some(k)) => match carto_sim::tls::acceptor(c, k) {
                    Ok(a) => Some((l.clone(), a)),
                    Err(e) => {
                        eprintln!("carto-sim: {e}");
                        return ExitCode::from(2);
                    }
                },
                _ => None,
            };
            serve(config, args.setup, tls).await
        }
        other => {
            eprintln!("unknown command {other}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

async fn serve(config: Config, setup: bool, tls: Option<(String, tokio_rustls::TlsAcceptor)>) -> ExitCode {
    if setup {
        if let Err(e) = carto_sim::setup::setup(&config).await {
            eprintln!("carto-sim: setup failed: {e}");
            return ExitCode::FAILURE;
        }
        eprintln!("carto-sim: setup done");
    }
    let Some((listener, addr)) = bind(&config.listen).await else { return ExitCode::FAILURE };
    let tls = match tls {
        Some((listen, acceptor)) => {
            let Some((l, a)) = bind(&listen).await else { return ExitCode::FAILURE };
            Some((l, a, acceptor))
        }
        None => None,
    };
    let state = match carto_sim::state::AppState::new(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("carto-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Scripts wait for these lines (scripts/carto-sim-up): the HTTPS one first, so that both are there once
    // the plain one is.
    if let Some((_, a, _)) = &tls {
        println!("carto-sim listening on https://{a}");
    }
    println!("carto-sim listening on http://{addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // One signal stops both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
        let _ = tx.send(());
        // Keep the sender until the process ends: a dropped sender would also wake `wait_for` (as an error).
        std::future::pending::<()>().await;
    });
    let plain = carto_sim::server::serve(state.clone(), listener, stopped());
    let secure = async {
        match tls {
            Some((l, _, acceptor)) => carto_sim::server::serve_tls(state.clone(), l, acceptor, stopped()).await,
            None => Ok(()),
        }
    };
    // Open streams should not keep the process alive for long after a signal.
    let forced = async move {
        let _ = rx.await;
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    };
    tokio::select! {
        (r1, r2) = async { tokio::join!(plain, secure) } => {
            if let Err(e) = r1.and(r2) {
                eprintln!("carto-sim: {e}");
                return ExitCode::FAILURE;
            }
        }
        _ = forced => eprintln!("carto-sim: open connections closed forcibly"),
    }
    ExitCode::SUCCESS
}

async fn bind(listen: &str) -> Option<(tokio::net::TcpListener, std::net::SocketAddr)> {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("carto-sim: cannot listen on {listen}: {e}");
            return None;
        }
    };
    match listener.local_addr() {
        Ok(a) => Some((listener, a)),
        Err(e) => {
            eprintln!("carto-sim: {e}");
            None
        }
    }
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                eprintln!("carto-sim: shutting down");
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
}
