//! Tables: qualified names as given on the command line (`orders`, `shop.orders`), and what the
//! catalog says of a configured table.

use std::fmt;
use std::str::FromStr;

/// A schema-qualified table name. Unqualified names are in the `public` schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// Schema (namespace) name, as stored in the catalog (case-sensitive).
    pub schema: String,
    /// Table name, as stored in the catalog (case-sensitive).
    pub name: String,
}

/// A configured table as found in the catalog.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// The table.
    pub name: TableName,
    /// Columns (name, type OID) in table order.
    pub columns: Vec<(String, u32)>,
    /// Primary-key columns in key order.
    pub primary_key: Vec<String>,
    /// `relreplident` after setup: `d`, `n`, `f` or `i`.
    pub replica_identity: char,
}

/// A table argument that is empty or has more than one dot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a table name (expected `table` or `schema.table`): {0:?}")]
pub struct ParseTableNameError(pub String);

impl TableName {
    /// A table in the given schema.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// The name quoted as an SQL identifier (`"schema"."table"`), safe to splice into SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// Quotes an SQL identifier, doubling embedded quotes.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl FromStr for TableName {
    type Err = ParseTableNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseTableNameError(s.to_owned());
        let parts: Vec<&str> = s.trim().split('.').collect();
        match parts.as_slice() {
            [name] if !name.is_empty() => Ok(TableName::new("public", *name)),
            [schema, name] if !schema.is_empty() && !name.is_empty() => Ok(TableName::new(*schema, *name)),
            _ => Err(err()),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unqualified_names_are_in_public_and_qualified_names_split_on_the_dot() {
        assert_eq!(
            "orders".parse::<TableName>().unwrap(),
            TableName::new("public", "orders")
        );
        assert_eq!(
            "shop.orders".parse::<TableName>().unwrap(),
            TableName::new("shop", "orders")
        );
        assert!("".parse::<TableName>().is_err());
        assert!("a.b.c".parse::<TableName>().is_err());
        assert!(".b".parse::<TableName>().is_err());
    }

    #[test]
    fn quoting_escapes_embedded_quotes() {
        assert_eq!(TableName::new("s", "we\"ird").quoted(), r#""s"."we""ird""#);
    }
}
