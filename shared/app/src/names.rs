//! Names: what a stage, sink or stream may be called, and the environment variables derived
//! from them.

/// Whether `name` may name an application, stage, sink or stream: `[a-z][a-z0-9-]*`, at most
/// 40 characters (it becomes part of resource names such as `<app>-<stage>`).
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 40
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The variable `SHARDFLOW_SINK_<SINK>_<SUFFIX>` of the sink `sink` (upper case, `-` as `_`):
/// `env_var("sessions-table", "TABLE")` is `SHARDFLOW_SINK_SESSIONS_TABLE_TABLE`.
pub fn env_var(sink: &str, suffix: &str) -> String {
    format!(
        "SHARDFLOW_SINK_{}_{suffix}",
        sink.to_ascii_uppercase().replace('-', "_")
    )
}

/// The CloudFormation logical id part of `name`: `page-views` is `PageViews`.
pub fn logical_id(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_case_words_and_variables_their_upper_case() {
        assert!(is_valid_name("page-views2"));
        for bad in ["", "2x", "Page", "a_b", "a b", &"a".repeat(41)] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
        assert_eq!(
            env_var("sessions-table", "TABLE"),
            "SHARDFLOW_SINK_SESSIONS_TABLE_TABLE"
        );
        assert_eq!(logical_id("page-views"), "PageViews");
    }
}
