//! The schema table that drives validation, SOQL and describe: the standard
//! objects from the reference (§5) defined in [`standard`], plus our custom
//! objects and fields loaded from the SFDX metadata in `salesforce/`
//! ([`metadata`]) — never duplicated as hand-written Rust.

pub mod metadata;
pub mod standard;

use std::collections::HashMap;

/// A field's data type, with the type-specific limits Salesforce enforces.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    /// The record id.
    Id,
    /// `string` with a maximum length.
    String(usize),
    /// `textarea` (long text included) with a maximum length.
    TextArea(usize),
    /// `email`.
    Email,
    /// `phone`.
    Phone,
    /// `url`.
    Url,
    /// `picklist`.
    Picklist(Picklist),
    /// `reference` to one or more objects.
    Reference(Vec<String>),
    /// `date`.
    Date,
    /// `datetime`.
    DateTime,
    /// `double` with (precision, scale).
    Double(u32, u32),
    /// `int`.
    Int,
    /// `currency` with (precision, scale).
    Currency(u32, u32),
    /// `percent` with (precision, scale).
    Percent(u32, u32),
    /// `boolean`.
    Boolean,
    /// An auto-number: `prefix{0000}` display format.
    AutoNumber(String),
}

/// Picklist values and whether the list is restricted.
#[derive(Debug, Clone, PartialEq)]
pub struct Picklist {
    /// The active values in order.
    pub values: Vec<String>,
    /// Restricted picklists reject values not in the list.
    pub restricted: bool,
    /// The value set on create when none is given.
    pub default: Option<String>,
    /// Values that close the record (`<closed>true</closed>` in a
    /// `CaseStatus` value set): they set a Case's `IsClosed`.
    pub closed: Vec<String>,
}

/// One field of an object.
#[derive(Debug, Clone)]
pub struct FieldDef {
    /// API name in canonical case.
    pub name: String,
    /// UI label (used in error messages).
    pub label: String,
    /// Data type.
    pub ty: FieldType,
    /// Settable on create.
    pub createable: bool,
    /// Settable on update.
    pub updateable: bool,
    /// May be null.
    pub nillable: bool,
    /// Gets a value on create when none is given.
    pub defaulted: bool,
    /// External ID field (usable for upsert).
    pub external_id: bool,
    /// Unique across records.
    pub unique: bool,
    /// Uniqueness is case-sensitive.
    pub case_sensitive: bool,
    /// Relationship name for a reference (`Asset` for `AssetId`, `Asset__r` for `Asset__c`).
    pub relationship_name: Option<String>,
    /// Default boolean value on create.
    pub default_bool: Option<bool>,
}

impl FieldDef {
    /// A field that is C but neither N nor D is required on create (reference §5.1).
    pub fn required_on_create(&self) -> bool {
        self.createable && !self.nillable && !self.defaulted
    }

    /// The objects a reference field may point to.
    pub fn reference_to(&self) -> &[String] {
        match &self.ty {
            FieldType::Reference(to) => to,
            _ => &[],
        }
    }

    /// The describe `type` string.
    pub fn describe_type(&self) -> &'static str {
        match self.ty {
            FieldType::Id => "id",
            FieldType::String(_) | FieldType::AutoNumber(_) => "string",
            FieldType::TextArea(_) => "textarea",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Url => "url",
            FieldType::Picklist(_) => "picklist",
            FieldType::Reference(_) => "reference",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
            FieldType::Double(..) => "double",
            FieldType::Int => "int",
            FieldType::Currency(..) => "currency",
            FieldType::Percent(..) => "percent",
            FieldType::Boolean => "boolean",
        }
    }
}

/// One object (sObject type).
#[derive(Debug, Clone)]
pub struct ObjectSchema {
    /// API name in canonical case.
    pub name: String,
    /// UI label.
    pub label: String,
    /// Three-character key prefix.
    pub key_prefix: String,
    /// Fields; index 0 is always `Id`.
    pub fields: Vec<FieldDef>,
    /// Whether records can be deleted.
    pub deletable: bool,
    /// Custom object (`__c`).
    pub custom: bool,
    by_lower: HashMap<String, usize>,
    rel_by_lower: HashMap<String, usize>,
}

impl ObjectSchema {
    /// Builds an object from its fields, adding the system fields every object has.
    pub fn new(
        name: &str,
        label: &str,
        key_prefix: &str,
        fields: Vec<FieldDef>,
        owned: bool,
    ) -> Self {
        let mut all = vec![standard::sys("Id", "Record ID", FieldType::Id)];
        all.extend(fields);
        all.push(standard::sys("IsDeleted", "Deleted", FieldType::Boolean));
        all.push(standard::sys(
            "CreatedDate",
            "Created Date",
            FieldType::DateTime,
        ));
        all.push(standard::sys(
            "CreatedById",
            "Created By ID",
            FieldType::Reference(vec!["User".into()]),
        ));
        all.push(standard::sys(
            "LastModifiedDate",
            "Last Modified Date",
            FieldType::DateTime,
        ));
        all.push(standard::sys(
            "LastModifiedById",
            "Last Modified By ID",
            FieldType::Reference(vec!["User".into()]),
        ));
        all.push(standard::sys(
            "SystemModstamp",
            "System Modstamp",
            FieldType::DateTime,
        ));
        if owned {
            all.push(
                standard::f(
                    "OwnerId",
                    "Owner ID",
                    FieldType::Reference(vec!["User".into()]),
                )
                .cu()
                .d(),
            );
        }
        let mut schema = ObjectSchema {
            name: name.to_string(),
            label: label.to_string(),
            key_prefix: key_prefix.to_string(),
            fields: all,
            deletable: true,
            custom: name.ends_with("__c"),
            by_lower: HashMap::new(),
            rel_by_lower: HashMap::new(),
        };
        schema.reindex();
        schema
    }

    /// Rebuilds the name lookups after fields were added.
    pub fn reindex(&mut self) {
        self.by_lower.clear();
        self.rel_by_lower.clear();
        for (idx, field) in self.fields.iter_mut().enumerate() {
            if matches!(field.ty, FieldType::Reference(_)) && field.relationship_name.is_none() {
                field.relationship_name = relationship_name_for(&field.name);
            }
            self.by_lower.insert(field.name.to_ascii_lowercase(), idx);
            if let Some(rel) = &field.relationship_name {
                self.rel_by_lower.insert(rel.to_ascii_lowercase(), idx);
            }
        }
    }

    /// A platform event (`__e`): published, not stored or queried.
    pub fn is_event(&self) -> bool {
        self.name.ends_with("__e")
    }

    /// Field index by API name, case-insensitively.
    pub fn field_idx(&self, name: &str) -> Option<usize> {
        self.by_lower.get(&name.to_ascii_lowercase()).copied()
    }

    /// Reference field index by relationship name, case-insensitively.
    pub fn relationship_idx(&self, name: &str) -> Option<usize> {
        self.rel_by_lower.get(&name.to_ascii_lowercase()).copied()
    }

    /// Adds or replaces a field (custom fields from metadata).
    pub fn upsert_field(&mut self, field: FieldDef) {
        match self.field_idx(&field.name) {
            Some(idx) => self.fields[idx] = field,
            None => {
                // Keep system fields at the end for a readable describe.
                let pos = self
                    .fields
                    .iter()
                    .position(|f| f.name == "IsDeleted")
                    .unwrap_or(self.fields.len());
                self.fields.insert(pos, field);
            }
        }
        self.reindex();
    }
}

/// `AssetId` → `Asset`, `Asset__c` → `Asset__r`.
fn relationship_name_for(field: &str) -> Option<String> {
    if let Some(base) = field.strip_suffix("__c") {
        Some(format!("{base}__r"))
    } else {
        field
            .strip_suffix("Id")
            .filter(|b| !b.is_empty())
            .map(str::to_string)
    }
}

/// All objects of the org.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Objects in definition order.
    pub objects: Vec<ObjectSchema>,
    by_lower: HashMap<String, usize>,
    by_prefix: HashMap<String, usize>,
}

/// An error loading the SFDX metadata.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The XML did not parse.
    #[error("parsing metadata file {path}")]
    Xml {
        /// File path.
        path: String,
        /// The XML error.
        #[source]
        source: roxmltree::Error,
    },
    /// A field or object definition is not usable.
    #[error("metadata file {path}: {reason}")]
    Invalid {
        /// File path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading a metadata directory failed.
    #[error("reading metadata directory {path}")]
    Io {
        /// Directory.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

impl Schema {
    /// Builds the schema from a list of objects.
    pub fn from_objects(objects: Vec<ObjectSchema>) -> Self {
        let mut schema = Schema {
            objects,
            by_lower: HashMap::new(),
            by_prefix: HashMap::new(),
        };
        schema.reindex();
        schema
    }

    fn reindex(&mut self) {
        self.by_lower = self
            .objects
            .iter()
            .enumerate()
            .map(|(i, o)| (o.name.to_ascii_lowercase(), i))
            .collect();
        self.by_prefix = self
            .objects
            .iter()
            .enumerate()
            .map(|(i, o)| (o.key_prefix.clone(), i))
            .collect();
    }

    /// The default schema: standard objects plus the metadata embedded at build time.
    ///
    /// # Errors
    /// Fails when the embedded metadata is malformed (caught by this crate's tests).
    pub fn with_embedded_metadata() -> Result<Self, SchemaError> {
        let files: Vec<(String, String)> = metadata::EMBEDDED_METADATA
            .iter()
            .map(|(p, x)| (p.to_string(), x.to_string()))
            .collect();
        Self::with_metadata_files(&files)
    }

    /// Standard objects plus the metadata under an SFDX directory
    /// (`salesforce/` or its `force-app/main/default`).
    ///
    /// # Errors
    /// Fails when a file cannot be read or is not valid metadata.
    pub fn with_metadata_dir(dir: &std::path::Path) -> Result<Self, SchemaError> {
        let files = metadata::read_dir(dir)?;
        Self::with_metadata_files(&files)
    }

    fn with_metadata_files(files: &[(String, String)]) -> Result<Self, SchemaError> {
        let mut schema = Schema::from_objects(standard::objects());
        metadata::apply(&mut schema, files)?;
        schema.reindex();
        Ok(schema)
    }

    /// Object index by API name, case-insensitively.
    pub fn object_idx(&self, name: &str) -> Option<usize> {
        self.by_lower.get(&name.to_ascii_lowercase()).copied()
    }

    /// Object index by key prefix.
    pub fn object_by_prefix(&self, prefix: &str) -> Option<usize> {
        self.by_prefix.get(prefix).copied()
    }

    /// Adds an object (custom objects from metadata).
    pub fn add_object(&mut self, object: ObjectSchema) {
        self.objects.push(object);
        self.reindex();
    }
}
