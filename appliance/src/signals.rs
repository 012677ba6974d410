//! Requests from outside the protocol (signals, the `--exit-after` timer), delivered as
//! [`Command`]s so the connection loop and the reconnect loop handle them in one `select!`.

use std::future::pending;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// SIGUSR1: write the `--screenshot` now.
    Screenshot,
    /// SIGINT, SIGTERM or `--exit-after`: say goodbye to the server and exit 0.
    Shutdown(&'static str),
}

/// Receives [`Command`]s; see [`listen`].
pub struct Commands {
    rx: mpsc::UnboundedReceiver<Command>,
}

impl Commands {
    /// The next command. Cancel-safe, so it can sit in a `select!` next to network reads.
    pub async fn next(&mut self) -> Command {
        match self.rx.recv().await {
            Some(command) => command,
            // Every source is gone (cannot happen while the signal tasks live): nothing will come.
            None => pending().await,
        }
    }
}

/// Installs the signal handlers and the `--exit-after` timer. Must run inside the tokio runtime.
pub fn listen(exit_after: Option<Duration>) -> std::io::Result<Commands> {
    let (tx, rx) = mpsc::unbounded_channel();
    for (kind, command) in [
        (SignalKind::interrupt(), Command::Shutdown("SIGINT")),
        (SignalKind::terminate(), Command::Shutdown("SIGTERM")),
        (SignalKind::user_defined1(), Command::Screenshot),
    ] {
        let mut stream = signal(kind)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(command).is_err() {
                    break;
                }
            }
        });
    }
    if let Some(after) = exit_after {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(Command::Shutdown("--exit-after elapsed"));
        });
    }
    Ok(Commands { rx })
}
