//! The log: lines on stderr, as text or as JSON objects (`--log-format`), through a
//! filter that `swctl log level` replaces while switchd runs.
//!
//! The filter sits in a `tracing_subscriber::reload` layer; its handle is kept here,
//! set once at start, so that the control thread's answer to `log_level` can swap it.

use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};
use switchyard::control::{ControlError, ErrorCode, LogFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event, colored on a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with
    /// `message`), and the spans.
    Json,
}

/// The live filter, and the text it was made from.
struct Live {
    handle: reload::Handle<EnvFilter, Registry>,
    filter: Mutex<String>,
}

static LIVE: OnceLock<Live> = OnceLock::new();

/// Installs the log with `filter` (already checked by `check_log_filter`) in `format`.
pub fn init(filter: &str, format: LogFormat) -> Result<()> {
    let env_filter =
        EnvFilter::try_new(filter).with_context(|| format!("invalid log filter {filter:?}"))?;
    let (layer, handle) = reload::Layer::new(env_filter);
    let registry = tracing_subscriber::registry().with(layer);
    let installed = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    installed.context("cannot install the log")?;
    let _ = LIVE.set(Live {
        handle,
        filter: Mutex::new(filter.to_string()),
    });
    Ok(())
}

/// Replaces the log filter (`swctl log level`). A filter `--log` would refuse is
/// refused with `invalid_argument`, and the old one stays.
pub fn set_filter(filter: &str) -> Result<LogFilter, ControlError> {
    let checked = crate::check_log_filter(filter)
        .map_err(|err| ControlError::new(ErrorCode::InvalidArgument, format!("{err:#}")))?;
    let env_filter = EnvFilter::try_new(&checked).map_err(|err| {
        ControlError::new(
            ErrorCode::InvalidArgument,
            format!("invalid log filter {filter:?}: {err}"),
        )
    })?;
    let live = LIVE
        .get()
        .ok_or_else(|| ControlError::system("the log is not installed"))?;
    let mut current = live.filter.lock().unwrap_or_else(|p| p.into_inner());
    live.handle
        .reload(env_filter)
        .map_err(|err| ControlError::system(format!("cannot change the log filter: {err}")))?;
    let previous = std::mem::replace(&mut *current, checked.clone());
    Ok(LogFilter {
        filter: checked,
        previous,
    })
}
