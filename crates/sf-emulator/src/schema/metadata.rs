//! Loads custom objects and custom fields from SFDX source-format metadata
//! (`objects/<Object>/<Object>.object-meta.xml`,
//! `objects/<Object>/fields/<Field>.field-meta.xml`), and the values of
//! standard picklists (`standardValueSets/<Name>.standardValueSet-meta.xml`,
//! e.g. a `Pending Review` Case status, with the `<closed>` flag that sets a
//! Case's `IsClosed`), the same files the customer's admin
//! deploys with `sf project deploy start`.

use std::path::Path;

use super::{standard, FieldDef, FieldType, ObjectSchema, Picklist, Schema, SchemaError};

include!(concat!(env!("OUT_DIR"), "/metadata_files.rs"));

/// Standard value sets the emulator knows: (value set name, object, field).
const STANDARD_VALUE_SETS: &[(&str, &str, &str)] = &[
    ("CaseStatus", "Case", "Status"),
    ("CaseOrigin", "Case", "Origin"),
    ("CasePriority", "Case", "Priority"),
    ("CaseType", "Case", "Type"),
    ("CaseReason", "Case", "Reason"),
];

/// Key prefixes the reference assigns to our custom objects in the emulator.
const KNOWN_PREFIXES: &[(&str, &str)] = &[("Asset_Alert__c", "a01"), ("AI_Insight__c", "a02")];

/// Reads every `*-meta.xml` under `dir` (either an SFDX project root or its
/// `force-app/main/default`), as (path relative to `force-app/main/default`, text).
///
/// # Errors
/// Fails when a directory or file cannot be read.
pub fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, SchemaError> {
    let base = if dir.join("force-app/main/default").is_dir() {
        dir.join("force-app/main/default")
    } else {
        dir.to_path_buf()
    };
    let mut out = Vec::new();
    walk(&base, &base, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) -> Result<(), SchemaError> {
    let io = |source| SchemaError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, base, out)?;
        } else if path.to_string_lossy().ends_with("-meta.xml") {
            let text = std::fs::read_to_string(&path).map_err(|source| SchemaError::Io {
                path: path.display().to_string(),
                source,
            })?;
            let rel = path
                .strip_prefix(base)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, text));
        }
    }
    Ok(())
}

fn child_text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|c| c.has_tag_name(name))
        .and_then(|c| c.text())
        .map(str::trim)
}

fn flag(node: roxmltree::Node<'_, '_>, name: &str) -> bool {
    child_text(node, name) == Some("true")
}

fn number(node: roxmltree::Node<'_, '_>, name: &str, path: &str) -> Result<u32, SchemaError> {
    child_text(node, name)
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| SchemaError::Invalid {
            path: path.to_string(),
            reason: format!("missing or bad <{name}>"),
        })
}

/// Applies custom object files first, then field files, onto `schema`.
pub(crate) fn apply(schema: &mut Schema, files: &[(String, String)]) -> Result<(), SchemaError> {
    let mut objects: Vec<&(String, String)> = files
        .iter()
        .filter(|(p, _)| p.ends_with(".object-meta.xml"))
        .collect();
    objects.sort_by_key(|(p, _)| p.clone());
    let mut next_prefix = 3;
    let mut next_event_prefix = 1;
    for (path, xml) in objects {
        let name = path
            .rsplit('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".object-meta.xml")
            .to_string();
        if schema.object_idx(&name).is_some() {
            continue;
        }
        let doc = roxmltree::Document::parse(xml).map_err(|source| SchemaError::Xml {
            path: path.clone(),
            source,
        })?;
        let root = doc.root_element();
        let label = child_text(root, "label").unwrap_or(&name).to_string();
        if name.ends_with("__e") {
            // Platform events: published, never stored; no Name field, no owner.
            let prefix = format!("e{:02}", next_event_prefix);
            next_event_prefix += 1;
            schema.add_object(ObjectSchema::new(&name, &label, &prefix, Vec::new(), false));
            continue;
        }
        let prefix = match KNOWN_PREFIXES.iter().find(|(n, _)| *n == name) {
            Some((_, p)) => p.to_string(),
            None => {
                let p = format!("a{next_prefix:02}");
                next_prefix += 1;
                p
            }
        };
        let name_field = root.children().find(|c| c.has_tag_name("nameField"));
        let name_def = match name_field.and_then(|n| child_text(n, "type")) {
            Some("AutoNumber") => {
                let format = name_field
                    .and_then(|n| child_text(n, "displayFormat"))
                    .unwrap_or("{0}");
                let label = name_field
                    .and_then(|n| child_text(n, "label"))
                    .unwrap_or("Name");
                standard::f("Name", label, FieldType::AutoNumber(format.to_string())).d()
            }
            _ => {
                let label = name_field
                    .and_then(|n| child_text(n, "label"))
                    .unwrap_or("Name");
                standard::f("Name", label, FieldType::String(80)).cu()
            }
        };
        let owned = child_text(root, "sharingModel") != Some("ControlledByParent");
        schema.add_object(ObjectSchema::new(
            &name,
            &label,
            &prefix,
            vec![name_def],
            owned,
        ));
    }
    for (path, xml) in files.iter().filter(|(p, _)| p.ends_with(".field-meta.xml")) {
        let parts: Vec<&str> = path.split('/').collect();
        let object = match parts.as_slice() {
            ["objects", object, "fields", _] => *object,
            _ => {
                return Err(SchemaError::Invalid {
                    path: path.clone(),
                    reason: "expected objects/<Object>/fields/<Field>.field-meta.xml".into(),
                })
            }
        };
        let idx = schema
            .object_idx(object)
            .ok_or_else(|| SchemaError::Invalid {
                path: path.clone(),
                reason: format!("object {object} is neither standard nor defined"),
            })?;
        let doc = roxmltree::Document::parse(xml).map_err(|source| SchemaError::Xml {
            path: path.clone(),
            source,
        })?;
        let field = parse_field(doc.root_element(), path)?;
        schema.objects[idx].upsert_field(field);
    }
    for (path, xml) in files
        .iter()
        .filter(|(p, _)| p.ends_with(".standardValueSet-meta.xml"))
    {
        apply_standard_value_set(schema, path, xml)?;
    }
    Ok(())
}

/// Replaces a standard picklist's values (and default) with a deployed
/// `StandardValueSet`, as Salesforce does: the file lists the whole set.
fn apply_standard_value_set(schema: &mut Schema, path: &str, xml: &str) -> Result<(), SchemaError> {
    let invalid = |reason: String| SchemaError::Invalid {
        path: path.to_string(),
        reason,
    };
    let name = path
        .rsplit('/')
        .next()
        .unwrap_or("")
        .trim_end_matches(".standardValueSet-meta.xml");
    let (_, object, field) = STANDARD_VALUE_SETS
        .iter()
        .find(|(set, _, _)| *set == name)
        .ok_or_else(|| {
            invalid(format!(
                "standard value set {name} is not supported by the emulator"
            ))
        })?;
    let doc = roxmltree::Document::parse(xml).map_err(|source| SchemaError::Xml {
        path: path.to_string(),
        source,
    })?;
    let mut values = Vec::new();
    let mut default = None;
    let mut closed = Vec::new();
    for value in doc
        .root_element()
        .children()
        .filter(|c| c.has_tag_name("standardValue"))
    {
        let v = child_text(value, "fullName")
            .ok_or_else(|| invalid("standard value without <fullName>".into()))?;
        if flag(value, "default") {
            default = Some(v.to_string());
        }
        if flag(value, "closed") {
            closed.push(v.to_string());
        }
        values.push(v.to_string());
    }
    if values.is_empty() {
        return Err(invalid(format!(
            "standard value set {name} lists no values"
        )));
    }
    let idx = schema
        .object_idx(object)
        .ok_or_else(|| invalid(format!("object {object} is not defined")))?;
    let obj = &mut schema.objects[idx];
    let field_idx = obj
        .field_idx(field)
        .ok_or_else(|| invalid(format!("field {object}.{field} is not defined")))?;
    let FieldType::Picklist(picklist) = &mut obj.fields[field_idx].ty else {
        return Err(invalid(format!("{object}.{field} is not a picklist")));
    };
    picklist.values = values;
    picklist.closed = closed;
    if default.is_some() {
        picklist.default = default;
    }
    Ok(())
}

fn parse_field(root: roxmltree::Node<'_, '_>, path: &str) -> Result<FieldDef, SchemaError> {
    let invalid = |reason: String| SchemaError::Invalid {
        path: path.to_string(),
        reason,
    };
    let name = child_text(root, "fullName").ok_or_else(|| invalid("missing <fullName>".into()))?;
    if !name.ends_with("__c") {
        return Err(invalid(format!("custom field {name} must end in __c")));
    }
    let label = child_text(root, "label").unwrap_or(name);
    let ty_name = child_text(root, "type").ok_or_else(|| invalid("missing <type>".into()))?;
    let required = flag(root, "required");
    let mut field = standard::f(name, label, FieldType::Boolean).cu();
    field.nillable = !required;
    field.ty = match ty_name {
        "Text" => FieldType::String(number(root, "length", path)? as usize),
        "TextArea" => FieldType::TextArea(255),
        "LongTextArea" | "Html" => FieldType::TextArea(number(root, "length", path)? as usize),
        "Email" => FieldType::Email,
        "Phone" => FieldType::Phone,
        "Url" => FieldType::Url,
        "Number" => FieldType::Double(
            number(root, "precision", path)?,
            number(root, "scale", path)?,
        ),
        "Currency" => FieldType::Currency(
            number(root, "precision", path)?,
            number(root, "scale", path)?,
        ),
        "Percent" => FieldType::Percent(
            number(root, "precision", path)?,
            number(root, "scale", path)?,
        ),
        "Date" => FieldType::Date,
        "DateTime" => FieldType::DateTime,
        "Checkbox" => {
            field.nillable = false;
            field.defaulted = true;
            field.default_bool = Some(child_text(root, "defaultValue") == Some("true"));
            FieldType::Boolean
        }
        "Picklist" => {
            let value_set = root
                .children()
                .find(|c| c.has_tag_name("valueSet"))
                .ok_or_else(|| invalid("picklist without <valueSet>".into()))?;
            let restricted = flag(value_set, "restricted");
            let definition = value_set
                .children()
                .find(|c| c.has_tag_name("valueSetDefinition"))
                .ok_or_else(|| invalid("picklist without <valueSetDefinition>".into()))?;
            let mut values = Vec::new();
            let mut default = None;
            for value in definition.children().filter(|c| c.has_tag_name("value")) {
                let v = child_text(value, "fullName")
                    .ok_or_else(|| invalid("picklist value without <fullName>".into()))?;
                if flag(value, "default") {
                    default = Some(v.to_string());
                }
                values.push(v.to_string());
            }
            field.defaulted = default.is_some();
            FieldType::Picklist(Picklist {
                values,
                restricted,
                default,
                closed: Vec::new(),
            })
        }
        "Lookup" | "MasterDetail" => {
            let to = child_text(root, "referenceTo")
                .ok_or_else(|| invalid("lookup without <referenceTo>".into()))?;
            if ty_name == "MasterDetail" {
                field.nillable = false;
                field.updateable = flag(root, "reparentableMasterDetail");
            }
            FieldType::Reference(vec![to.to_string()])
        }
        "AutoNumber" => {
            field.createable = false;
            field.updateable = false;
            field.defaulted = true;
            FieldType::AutoNumber(
                child_text(root, "displayFormat")
                    .unwrap_or("{0}")
                    .to_string(),
            )
        }
        other => {
            return Err(invalid(format!(
                "field type {other} is not supported by the emulator"
            )))
        }
    };
    field.external_id = flag(root, "externalId");
    field.unique = flag(root, "unique");
    field.case_sensitive = flag(root, "caseSensitive");
    Ok(field)
}
