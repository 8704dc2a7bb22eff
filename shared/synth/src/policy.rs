//! IAM statements of the stages' roles, and the check that no action anywhere is a wildcard.

use crate::yaml::{list, map, s, Yaml};

/// One `Allow` statement: named actions on one resource (or list), optionally conditioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement's id.
    pub sid: String,
    /// Its actions, each `service:Action` without wildcards.
    pub actions: Vec<String>,
    /// Its resource(s).
    pub resource: Yaml,
    /// Its condition, if any.
    pub condition: Option<Yaml>,
}

/// An `Allow` of `actions` on `resource`, with the id `sid` (letters and digits).
pub fn statement(sid: &str, actions: &[&str], resource: Yaml) -> Statement {
    Statement {
        sid: sid.chars().filter(char::is_ascii_alphanumeric).collect(),
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        resource,
        condition: None,
    }
}

impl Statement {
    /// The statement as a policy document's entry.
    pub fn into_yaml(self) -> Yaml {
        let mut out = map([
            ("Sid", s(self.sid)),
            ("Effect", s("Allow")),
            ("Action", list(self.actions.into_iter().map(s))),
            ("Resource", self.resource),
        ]);
        if let Some(condition) = self.condition {
            out.insert("Condition", condition);
        }
        out
    }
}

/// Every action in `node` (values of `Action` or `NotAction` keys, at any depth) that holds a
/// `*`, or is a `NotAction` (which allows everything else).
pub fn wildcard_actions(node: &Yaml) -> Vec<String> {
    let mut found = Vec::new();
    collect(node, &mut found);
    found
}

fn collect(node: &Yaml, found: &mut Vec<String>) {
    match node {
        Yaml::Map(entries) => {
            for (key, value) in entries {
                match key.as_str() {
                    "Action" => actions(value, found),
                    "NotAction" => found.push(format!("NotAction {value:?}")),
                    _ => collect(value, found),
                }
            }
        }
        Yaml::List(items) => items.iter().for_each(|i| collect(i, found)),
        _ => {}
    }
}

fn actions(value: &Yaml, found: &mut Vec<String>) {
    match value {
        Yaml::Str(action) if action.contains('*') => found.push(action.clone()),
        Yaml::List(items) => items.iter().for_each(|i| actions(i, found)),
        Yaml::Str(_) => {}
        // An action computed by an intrinsic function cannot be checked: refuse it too.
        other => found.push(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_not_actions_are_found_at_any_depth() {
        let doc = map([(
            "Statement",
            list([
                statement("A", &["s3:GetObject"], s("arn")).into_yaml(),
                statement("B", &["s3:Get*"], s("arn")).into_yaml(),
                map([("Action", s("*"))]),
                map([("NotAction", s("iam:PassRole"))]),
            ]),
        )]);
        let found = wildcard_actions(&doc);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(&found[..2], ["s3:Get*", "*"]);
    }
}
