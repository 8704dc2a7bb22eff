//! The shape of a state type: how serde sees it (structs with their field names and types, enums
//! with their variants, sequences, maps, options, primitives), traced from the type's
//! `Deserialize` implementation with `serde-reflection` and rendered as one canonical line, e.g.
//! `Totals{count:u64,sum:i64}`. Two types of the same shape have the same checkpoint encoding
//! (postcard follows serde's data model), so a restore that finds the stored shape equal to the
//! pipeline's reads the state as it was written, and one that finds it different knows the bytes
//! would be misread.

use serde::de::DeserializeOwned;
use serde_reflection::{
    ContainerFormat, Format, FormatHolder, Named, Registry, Samples, Tracer, TracerConfig, VariantFormat,
};

/// Renderings longer than this are stored as their hash (`xxh3:` and 16 hex digits): a checkpoint
/// carries one shape per stateful operator.
const MAX_RENDERED: usize = 1_024;

/// The shape of `T` (see the module documentation); `None` if `T`'s `Deserialize` cannot be
/// traced (it asks for self-describing input, as `deserialize_any` and untagged enums do, or it
/// refuses the placeholder values the tracer offers).
///
/// Every variant of `T` itself is traced when `T` is an enum. An enum nested inside `T` shows the
/// variant the tracer visited, then `…` (the tracer cannot reach its other variants from `T`): a
/// change to the others is not seen in the shape.
pub(crate) fn of<T: DeserializeOwned>() -> Option<String> {
    let samples = Samples::new();
    let mut tracer = Tracer::new(TracerConfig::default());
    let (mut format, _) = tracer.trace_type::<T>(&samples).ok()?;
    format.normalize().ok()?;
    // Unchecked: a nested enum is only partly known, which the rendering shows.
    let registry = tracer.registry_unchecked();
    let mut rendered = String::new();
    render(&format, &registry, &mut Vec::new(), &mut rendered);
    Some(kept(rendered))
}

/// What is stored of a rendering: itself, or its hash if it is longer than [`MAX_RENDERED`].
fn kept(rendered: String) -> String {
    if rendered.len() <= MAX_RENDERED {
        rendered
    } else {
        format!("xxh3:{:016x}", xxhash_rust::xxh3::xxh3_64(rendered.as_bytes()))
    }
}

/// Appends the rendering of `format`; named containers are expanded where they first appear on
/// the path from the root (`open` holds the ones being expanded: a recursive type shows its name).
fn render<'a>(format: &'a Format, registry: &'a Registry, open: &mut Vec<&'a str>, out: &mut String) {
    match format {
        Format::TypeName(name) => render_container(name, registry, open, out),
        Format::Option(f) => {
            out.push_str("Option<");
            render(f, registry, open, out);
            out.push('>');
        }
        Format::Seq(f) => {
            out.push('[');
            render(f, registry, open, out);
            out.push(']');
        }
        Format::Map { key, value } => {
            out.push_str("Map<");
            render(key, registry, open, out);
            out.push(',');
            render(value, registry, open, out);
            out.push('>');
        }
        Format::Tuple(fs) => render_tuple(fs, registry, open, out),
        Format::TupleArray { content, size } => {
            out.push('[');
            render(content, registry, open, out);
            out.push_str(&format!(";{size}]"));
        }
        primitive => out.push_str(primitive_name(primitive)),
    }
}

/// The name of a format without parts.
fn primitive_name(format: &Format) -> &'static str {
    match format {
        Format::Unit => "()",
        Format::Bool => "bool",
        Format::I8 => "i8",
        Format::I16 => "i16",
        Format::I32 => "i32",
        Format::I64 => "i64",
        Format::I128 => "i128",
        Format::U8 => "u8",
        Format::U16 => "u16",
        Format::U32 => "u32",
        Format::U64 => "u64",
        Format::U128 => "u128",
        Format::F32 => "f32",
        Format::F64 => "f64",
        Format::Char => "char",
        Format::Str => "str",
        Format::Bytes => "bytes",
        // Not left after `normalize`; containers are rendered by `render`.
        _ => "?",
    }
}

/// Appends the named container `name`: its name, then its contents unless it is being expanded.
fn render_container<'a>(name: &'a str, registry: &'a Registry, open: &mut Vec<&'a str>, out: &mut String) {
    out.push_str(name);
    let Some(container) = registry.get(name) else {
        return;
    };
    if open.contains(&name) {
        return;
    }
    open.push(name);
    match container {
        ContainerFormat::UnitStruct => {}
        ContainerFormat::NewTypeStruct(f) => render_tuple(std::slice::from_ref(f), registry, open, out),
        ContainerFormat::TupleStruct(fs) => render_tuple(fs, registry, open, out),
        ContainerFormat::Struct(fields) => render_fields(fields, registry, open, out),
        ContainerFormat::Enum(variants) => {
            out.push('<');
            for (i, (index, variant)) in variants.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                out.push_str(&variant.name);
                match &variant.value {
                    VariantFormat::NewType(f) => render_tuple(std::slice::from_ref(f), registry, open, out),
                    VariantFormat::Tuple(fs) => render_tuple(fs, registry, open, out),
                    VariantFormat::Struct(fields) => render_fields(fields, registry, open, out),
                    _ => {}
                }
                // The tracer numbers a variant it saw only by name from the top of `u32`.
                if *index > u32::MAX / 2 {
                    out.push_str("|…");
                }
            }
            out.push('>');
        }
    }
    open.pop();
}

fn render_tuple<'a>(formats: &'a [Format], registry: &'a Registry, open: &mut Vec<&'a str>, out: &mut String) {
    out.push('(');
    for (i, f) in formats.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        render(f, registry, open, out);
    }
    out.push(')');
}

fn render_fields<'a>(fields: &'a [Named<Format>], registry: &'a Registry, open: &mut Vec<&'a str>, out: &mut String) {
    out.push('{');
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&field.name);
        out.push(':');
        render(&field.value, registry, open, out);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;

    mod before {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        pub struct Totals {
            pub count: u64,
        }
    }

    #[derive(Serialize, Deserialize)]
    struct Totals {
        count: u64,
        sum: i64,
    }

    #[derive(Serialize, Deserialize)]
    enum Kind {
        Cash,
        Card { last4: u16 },
        Voucher(String),
    }

    #[derive(Serialize, Deserialize)]
    struct Payment {
        kind: Option<Kind>,
        history: Vec<Kind>,
    }

    #[derive(Serialize, Deserialize)]
    struct Tree {
        children: Vec<Tree>,
    }

    #[test]
    fn a_struct_shows_its_fields_and_a_field_added_changes_the_shape() {
        assert_eq!(of::<Totals>().as_deref(), Some("Totals{count:u64,sum:i64}"));
        assert_eq!(of::<before::Totals>().as_deref(), Some("Totals{count:u64}"));
        assert_eq!(of::<u64>().as_deref(), Some("u64"));
        assert_eq!(
            of::<(u32, Vec<String>, BTreeMap<u8, Option<bool>>)>().as_deref(),
            Some("(u32,[str],Map<u8,Option<bool>>)")
        );
    }

    #[test]
    fn an_enum_shows_every_variant_and_a_nested_one_the_first_it_visited() {
        assert_eq!(of::<Kind>().as_deref(), Some("Kind<Cash|Card{last4:u16}|Voucher(str)>"));
        assert_eq!(
            of::<Payment>().as_deref(),
            Some("Payment{kind:Option<Kind<Cash|…>>,history:[Kind<Cash|…>]}")
        );
        assert_eq!(
            of::<Tree>().as_deref(),
            Some("Tree{children:[Tree]}"),
            "a recursive type"
        );
    }

    #[test]
    fn a_type_that_needs_self_describing_input_has_no_shape() {
        assert_eq!(of::<serde_json::Value>(), None);
    }

    #[test]
    fn a_long_shape_is_stored_as_its_hash() {
        let long = "Totals{count:u64,sum:i64}".repeat(60);
        let shape = kept(long.clone());
        assert!(shape.starts_with("xxh3:") && shape.len() == 21, "{shape}");
        assert_ne!(shape, kept(long.replace("i64", "u64")));
        assert_eq!(kept("u64".into()), "u64");
    }
}
