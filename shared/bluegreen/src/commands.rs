//! `shardflow switch`, `shardflow rollback` and `shardflow validate`: the blue/green operations
//! (the protocol is in [`crate::cutover`]).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::control::ColourControl;
use crate::cutover::{Colour, Cutover};
use crate::env::shadow_table;
use anyhow::{bail, Context};
use clap::Args;
use shardflow_connectors::quote_identifier;

/// Where the cutover lives.
#[derive(Debug, Clone, Args)]
pub struct ControlArgs {
    /// The control table (the `ControlTable` of the stacks).
    #[arg(long)]
    pub control_table: String,
    /// The deployment's name in it (the stacks' `Deployment`).
    #[arg(long, default_value = "shop")]
    pub deployment: String,
}

/// Arguments of `shardflow switch`.
#[derive(Debug, Clone, Args)]
pub struct SwitchArgs {
    /// Where the cutover lives.
    #[command(flatten)]
    pub control: ControlArgs,
    /// The colour that becomes live.
    #[arg(long)]
    pub to: Colour,
    /// The cut: results whose window starts (or which happen) at or after it belong to `--to`.
    /// Default: now plus `--margin-secs`. It must be beyond every event time either colour has
    /// seen (CDC commit times are at most now).
    #[arg(long)]
    pub cut_ms: Option<i64>,
    /// The default cut's margin beyond now, at least the longest window's size.
    #[arg(long, default_value_t = 300)]
    pub margin_secs: u64,
}

/// Arguments of `shardflow rollback`: the colour that was live before becomes live again.
#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// Where the cutover lives.
    #[command(flatten)]
    pub control: ControlArgs,
    /// As for `switch`.
    #[arg(long)]
    pub cut_ms: Option<i64>,
    /// As for `switch`.
    #[arg(long, default_value_t = 300)]
    pub margin_secs: u64,
}

/// Arguments of `shardflow validate`: a colour's shadow table against the live table of a
/// Postgres sink (one row per key and window, holding the latest pane).
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// The Postgres connection (libpq string or URL).
    #[arg(long, env = "SHARDFLOW_DATABASE_URL")]
    pub database_url: String,
    /// The live table.
    #[arg(long, default_value = "shop_revenue")]
    pub table: String,
    /// The columns that name a row: the key and the window's start (default: the shop's revenue
    /// table's).
    #[arg(long, value_delimiter = ',', default_value = "product_id,currency,window_start_ms")]
    pub key_columns: Vec<String>,
    /// The columns that must be equal in both tables.
    #[arg(long, value_delimiter = ',', default_value = "revenue_cents,order_count")]
    pub value_columns: Vec<String>,
    /// The colour whose shadow table is compared (`{table}_shadow_{colour}`).
    #[arg(long)]
    pub colour: Colour,
    /// Only windows that start at or after this time: a colour restored from a savepoint never
    /// emits the windows closed before it (take a window boundary after the savepoint's
    /// watermark).
    #[arg(long, default_value_t = i64::MIN, allow_negative_numbers = true)]
    pub from_ms: i64,
    /// Only windows that end at or before this time, which both colours have closed (see the
    /// watermarks in `shardflow status`).
    #[arg(long)]
    pub closed_before_ms: i64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn control(args: &ControlArgs) -> ColourControl {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    ColourControl::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &args.control_table,
        &args.deployment,
    )
}

fn describe(c: &Cutover) -> String {
    c.segments
        .iter()
        .map(|s| {
            if s.from_ms == i64::MIN {
                format!("{} from the start", s.colour.as_str())
            } else {
                format!("{} from {}", s.colour.as_str(), s.from_ms)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn switch_to(control: &ColourControl, to: Colour, cut_ms: Option<i64>, margin_secs: u64) -> anyhow::Result<()> {
    let current = control.load().await?;
    let cut = cut_ms.unwrap_or_else(|| now_ms() + (margin_secs as i64) * 1_000);
    let next = control.switch(&current, to, cut).await?;
    println!("live: {} (cutover {})", next.live().as_str(), describe(&next));
    Ok(())
}

/// Runs `shardflow switch`.
pub fn switch(args: SwitchArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let control = control(&args.control).await;
        switch_to(&control, args.to, args.cut_ms, args.margin_secs).await
    })
}

/// Runs `shardflow rollback`.
pub fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let control = control(&args.control).await;
        let current = control.load().await?;
        if current.segments.len() < 2 {
            bail!(
                "nothing to roll back: {} has been live from the start",
                current.live().as_str()
            );
        }
        switch_to(&control, current.live().other(), args.cut_ms, args.margin_secs).await
    })
}

/// Rows by their key columns (as text), holding their value columns (as text).
type Windows = BTreeMap<Vec<String>, Vec<String>>;

async fn windows(client: &tokio_postgres::Client, args: &ValidateArgs, table: &str) -> anyhow::Result<Windows> {
    let text = |columns: &[String]| {
        columns
            .iter()
            .map(|c| format!("{}::text", quote_identifier(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sql = format!(
        "SELECT {}, {} FROM {} WHERE window_start_ms >= $1 AND window_end_ms <= $2",
        text(&args.key_columns),
        text(&args.value_columns),
        quote_identifier(table)
    );
    let rows = client
        .query(&sql, &[&args.from_ms, &args.closed_before_ms])
        .await
        .with_context(|| format!("reading {table}"))?;
    let keys = args.key_columns.len();
    let cell = |row: &tokio_postgres::Row, i: usize| row.get::<_, Option<String>>(i).unwrap_or_default();
    Ok(rows
        .iter()
        .map(|r| {
            let key = (0..keys).map(|i| cell(r, i)).collect();
            let values = (keys..r.len()).map(|i| cell(r, i)).collect();
            (key, values)
        })
        .collect())
}

/// Runs `shardflow validate`: exit status 1 when the tables differ.
pub fn validate(args: ValidateArgs) -> anyhow::Result<()> {
    let shadow = shadow_table(&args.table, args.colour);
    let differences = runtime()?.block_on(async {
        let (client, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls)
            .await
            .context("connecting to Postgres")?;
        tokio::spawn(connection);
        let live = windows(&client, &args, &args.table).await?;
        let shadow_rows = windows(&client, &args, &shadow).await?;
        anyhow::Ok(compare(&live, &shadow_rows))
    })?;
    for d in &differences {
        println!("{d}");
    }
    if differences.is_empty() {
        println!(
            "{shadow} matches {} for every window from {} closed by {}",
            args.table, args.from_ms, args.closed_before_ms
        );
        Ok(())
    } else {
        bail!(
            "{} windows differ between {} and {shadow}",
            differences.len(),
            args.table
        )
    }
}

/// Windows whose totals differ, or that only one side holds.
fn compare(live: &Windows, shadow: &Windows) -> Vec<String> {
    let mut out = Vec::new();
    for (key, l) in live {
        match shadow.get(key) {
            Some(s) if s == l => {}
            Some(s) => out.push(format!("{key:?}: live {l:?}, shadow {s:?}")),
            None => out.push(format!("{key:?}: live {l:?}, missing in the shadow")),
        }
    }
    for (key, s) in shadow {
        if !live.contains_key(key) {
            out.push(format!("{key:?}: shadow {s:?}, missing live"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_window() {
        let row = |k: &str, v: &str| (vec![k.to_owned(), "EUR".to_owned()], vec![v.to_owned()]);
        let live = Windows::from([row("1", "100"), row("2", "5")]);
        let shadow = Windows::from([row("1", "100"), row("3", "7")]);
        let d = compare(&live, &shadow);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("missing in the shadow") && d[1].contains("missing live"));
        assert!(compare(&live, &live).is_empty());
    }
}
