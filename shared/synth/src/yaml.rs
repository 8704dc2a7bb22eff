//! A small YAML document model and its block-style writer: enough for CloudFormation templates
//! (maps keep their order; every string is double-quoted, so no value is read as another type).

/// A YAML node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Yaml {
    /// A string, written double-quoted.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A sequence.
    List(Vec<Yaml>),
    /// A mapping, in insertion order.
    Map(Vec<(String, Yaml)>),
}

/// A string node.
pub fn s(value: impl Into<String>) -> Yaml {
    Yaml::Str(value.into())
}

/// A mapping of `entries`.
pub fn map<const N: usize>(entries: [(&str, Yaml); N]) -> Yaml {
    Yaml::Map(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// A sequence of `items`.
pub fn list(items: impl IntoIterator<Item = Yaml>) -> Yaml {
    Yaml::List(items.into_iter().collect())
}

/// `{Ref: name}`.
pub fn reference(name: &str) -> Yaml {
    map([("Ref", s(name))])
}

/// `{Fn::GetAtt: [resource, attribute]}`.
pub fn get_att(resource: &str, attribute: &str) -> Yaml {
    map([("Fn::GetAtt", list([s(resource), s(attribute)]))])
}

/// `{Fn::Sub: template}`.
pub fn sub(template: impl Into<String>) -> Yaml {
    map([("Fn::Sub", s(template))])
}

impl Yaml {
    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value of `key` in a mapping, for changing it.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Adds `key: value` to a mapping (nothing for other nodes).
    pub fn insert(&mut self, key: impl Into<String>, value: Yaml) {
        if let Yaml::Map(entries) = self {
            entries.push((key.into(), value));
        }
    }

    /// The document as block-style YAML.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        match self {
            Yaml::Map(_) | Yaml::List(_) => write_block(self, 0, &mut out),
            scalar => {
                out.push_str(&scalar_text(scalar));
                out.push('\n');
            }
        }
        out
    }
}

fn scalar_text(node: &Yaml) -> String {
    match node {
        // A JSON string is a valid double-quoted YAML scalar.
        Yaml::Str(v) => serde_json::Value::String(v.clone()).to_string(),
        Yaml::Int(v) => v.to_string(),
        Yaml::Bool(v) => v.to_string(),
        Yaml::List(items) if items.is_empty() => "[]".to_owned(),
        Yaml::Map(entries) if entries.is_empty() => "{}".to_owned(),
        Yaml::List(_) | Yaml::Map(_) => String::new(),
    }
}

fn is_block(node: &Yaml) -> bool {
    match node {
        Yaml::List(items) => !items.is_empty(),
        Yaml::Map(entries) => !entries.is_empty(),
        _ => false,
    }
}

fn key_text(key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || "_:.-".contains(c))
        && !key.ends_with(':');
    if plain {
        key.to_owned()
    } else {
        serde_json::Value::String(key.to_owned()).to_string()
    }
}

/// Writes a non-empty mapping or sequence at `indent`.
fn write_block(node: &Yaml, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match node {
        Yaml::Map(entries) => {
            for (key, value) in entries {
                out.push_str(&format!("{pad}{}:", key_text(key)));
                if is_block(value) {
                    out.push('\n');
                    write_block(value, indent + 2, out);
                } else {
                    out.push_str(&format!(" {}\n", scalar_text(value)));
                }
            }
        }
        Yaml::List(items) => {
            for item in items {
                if is_block(item) {
                    // The item written two deeper, its first line's indentation turned into "- ".
                    let mut nested = String::new();
                    write_block(item, indent + 2, &mut nested);
                    out.push_str(&format!("{pad}- {}", &nested[indent + 2..]));
                } else {
                    out.push_str(&format!("{pad}- {}\n", scalar_text(item)));
                }
            }
        }
        scalar => out.push_str(&format!("{pad}{}\n", scalar_text(scalar))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_maps_and_lists_are_written_in_block_style_with_quoted_strings() {
        let doc = map([
            ("A", s("x: y")),
            ("N", Yaml::Int(-1)),
            (
                "L",
                list([s("a"), map([("K", s("v")), ("M", list([Yaml::Bool(true)]))])]),
            ),
            ("E", list([])),
            ("R", get_att("Res", "Arn")),
        ]);
        assert_eq!(
            doc.to_yaml(),
            "A: \"x: y\"\nN: -1\nL:\n  - \"a\"\n  - K: \"v\"\n    M:\n      - true\nE: []\nR:\n  Fn::GetAtt:\n    - \"Res\"\n    - \"Arn\"\n"
        );
    }
}
