//! The revenue table: revenue per product and minute, upserted into Postgres by the
//! `revenue-shuffled` stage ([`crate::revenue_shuffled()`]).

use shardflow_bluegreen::{blue_green, shadow_table, ColourGate};
use shardflow_connectors::{quote_identifier, PostgresRow, PostgresSink, PostgresSinkConfig};
use shardflow_shop::pipelines::RevenueRow;
use shardflow_stage::{optional_var, MapSink};
use tokio_postgres::types::ToSql;

use crate::database::database_url;
use crate::StageSetupError;

/// The table (default [`RevenueTableRow::TABLE`]).
pub const REVENUE_TABLE_ENV: &str = "SHARDFLOW_REVENUE_TABLE";

/// The DDL of the revenue table `shop_revenue` (`CREATE TABLE IF NOT EXISTS`).
pub const REVENUE_TABLE_SQL: &str = include_str!("../sql/revenue.sql");

/// [`REVENUE_TABLE_SQL`] for a table named `table` (`table` or `schema.table`), which the stage
/// runs at start.
pub fn revenue_table_sql(table: &str) -> String {
    REVENUE_TABLE_SQL.replace("shop_revenue", &quote_identifier(table))
}

/// A [`RevenueRow`] as a row of [`REVENUE_TABLE_SQL`]'s table: one per (product, currency,
/// window), holding the latest pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevenueTableRow {
    product_id: i64,
    currency: String,
    window_start_ms: i64,
    window_end_ms: i64,
    revenue_cents: i64,
    order_count: i64,
    pane: String,
}

impl From<&RevenueRow> for RevenueTableRow {
    fn from(r: &RevenueRow) -> Self {
        RevenueTableRow {
            product_id: r.product_id,
            currency: r.currency.clone(),
            window_start_ms: r.window_start_ms,
            window_end_ms: r.window_end_ms,
            revenue_cents: r.revenue_cents,
            order_count: i64::try_from(r.order_count).unwrap_or(i64::MAX),
            pane: r.pane.clone(),
        }
    }
}

impl PostgresRow for RevenueTableRow {
    const TABLE: &'static str = "shop_revenue";
    const KEY_COLUMNS: &'static [&'static str] = &["product_id", "currency", "window_start_ms"];
    const COLUMNS: &'static [&'static str] = &["window_end_ms", "revenue_cents", "order_count", "pane"];

    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.product_id,
            &self.currency,
            &self.window_start_ms,
            &self.window_end_ms,
            &self.revenue_cents,
            &self.order_count,
            &self.pane,
        ]
    }
}

/// The sink of the revenue table.
pub type RevenueSink = MapSink<PostgresSink<RevenueTableRow>, fn(&RevenueRow) -> RevenueTableRow>;

/// The result sink of the revenue stages: the live table, gated by colour in a blue/green
/// deployment.
pub type RevenueGate = ColourGate<RevenueSink, RevenueSink>;

/// The revenue sink of this function's environment: connects to Postgres, creates the table
/// ([`REVENUE_TABLE_ENV`]) and, in a blue/green deployment, the colour's shadow table
/// ([`shardflow_bluegreen::shadow_table`]) if missing; it upserts each window's latest pane.
pub(crate) async fn revenue_sink(sdk: &aws_config::SdkConfig) -> Result<RevenueGate, StageSetupError> {
    let url = database_url(sdk).await?;
    let table = optional_var(REVENUE_TABLE_ENV).unwrap_or_else(|| RevenueTableRow::TABLE.to_owned());
    let live = postgres(&url, &table).await?;
    Ok(match blue_green(sdk)? {
        Some((colour, control)) => {
            let shadow = postgres(&url, &shadow_table(&table, colour)).await?;
            ColourGate::gated(colour, control, live, shadow)
        }
        None => ColourGate::single(live),
    })
}

/// A sink upserting into `table`, which it creates if missing.
async fn postgres(url: &str, table: &str) -> Result<RevenueSink, StageSetupError> {
    let config = PostgresSinkConfig::for_row::<RevenueTableRow>().table(table);
    let sink = PostgresSink::<RevenueTableRow>::connect(url, config)
        .await
        .map_err(|e| StageSetupError::Resource {
            what: "connecting to Postgres",
            message: e.to_string(),
        })?;
    sink.batch_execute(&revenue_table_sql(table))
        .await
        .map_err(|e| StageSetupError::Resource {
            what: "creating the revenue table",
            message: e.to_string(),
        })?;
    let convert: fn(&RevenueRow) -> RevenueTableRow = |r| RevenueTableRow::from(r);
    Ok(MapSink::new(sink, convert))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_ddl_names_the_configured_table_quoted() {
        let sql = revenue_table_sql("app.rev");
        assert!(sql.contains(r#"CREATE TABLE IF NOT EXISTS "app"."rev" ("#), "{sql}");
        assert!(!sql.contains("shop_revenue"));
    }
}
