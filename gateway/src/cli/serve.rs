//! `trustos serve`: run the daemon in the foreground until SIGINT or SIGTERM.

use super::{EXIT_OK, EXIT_USAGE};
use crate::daemon::server::{self, DaemonError};
use crate::home::Home;

/// Runs the daemon; exit 0 on a clean stop, 2 when it cannot start.
pub fn run(home: &Home, listen: Option<String>) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("trustos serve: cannot start the runtime: {err}");
            return EXIT_USAGE;
        }
    };
    match runtime.block_on(server::run(home, listen)) {
        Ok(()) => EXIT_OK,
        Err(err @ DaemonError::AlreadyRunning(_)) => {
            eprintln!("trustos serve: {err}");
            EXIT_USAGE
        }
        Err(err) => {
            eprintln!("trustos serve: {err}");
            EXIT_USAGE
        }
    }
}
