//! Topic patterns with named segments.
//!
//! A pattern such as `plant/{site}/{asset}/{sensor}` is compiled once into an MQTT subscription
//! filter (`plant/+/+/+`) and a matcher that extracts the named segments from a concrete topic.
//! `{name}` matches exactly one level, `+` one anonymous level, and a trailing `#` any remainder.
//! The names `asset` and `sensor` are the ones the agent uses; other names (`{site}`) are allowed
//! and ignored.

use std::fmt;

/// Why a pattern cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The pattern is empty.
    #[error("pattern is empty")]
    Empty,
    /// A segment is malformed (unbalanced braces, braces mixed with text, empty name).
    #[error("segment {segment:?} is not a literal, `+`, `#` or `{{name}}`")]
    BadSegment {
        /// The offending segment.
        segment: String,
    },
    /// `#` is not the last segment.
    #[error("`#` must be the last segment")]
    HashNotLast,
    /// A name appears twice.
    #[error("segment name {name:?} appears twice")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Named(Slot),
    Anonymous,
    Rest,
}

/// Which of the agent's fields a named segment fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Asset,
    Sensor,
    Other,
}

/// A compiled topic pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct TopicPattern {
    source: String,
    filter: String,
    segments: Vec<Segment>,
}

/// The named segments extracted from one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicFields<'t> {
    /// The `{asset}` segment, if the pattern names one.
    pub asset: Option<&'t str>,
    /// The `{sensor}` segment, if the pattern names one.
    pub sensor: Option<&'t str>,
}

impl TopicPattern {
    /// Compiles a pattern.
    ///
    /// # Errors
    /// [`TopicError`] describing the first malformed segment.
    pub fn parse(pattern: &str) -> Result<Self, TopicError> {
        if pattern.is_empty() {
            return Err(TopicError::Empty);
        }
        let parts: Vec<&str> = pattern.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        let mut names: Vec<&str> = Vec::new();
        for (idx, part) in parts.iter().enumerate() {
            let segment = if *part == "+" {
                Segment::Anonymous
            } else if *part == "#" {
                if idx + 1 != parts.len() {
                    return Err(TopicError::HashNotLast);
                }
                Segment::Rest
            } else if let Some(inner) = part.strip_prefix('{') {
                let name = inner
                    .strip_suffix('}')
                    .ok_or_else(|| TopicError::BadSegment {
                        segment: part.to_string(),
                    })?;
                if name.is_empty() || name.contains(['{', '}', '+', '#']) {
                    return Err(TopicError::BadSegment {
                        segment: part.to_string(),
                    });
                }
                if names.contains(&name) {
                    return Err(TopicError::DuplicateName {
                        name: name.to_string(),
                    });
                }
                names.push(name);
                Segment::Named(match name {
                    "asset" => Slot::Asset,
                    "sensor" => Slot::Sensor,
                    _ => Slot::Other,
                })
            } else if part.contains(['{', '}', '+', '#']) {
                return Err(TopicError::BadSegment {
                    segment: part.to_string(),
                });
            } else {
                Segment::Literal(part.to_string())
            };
            segments.push(segment);
        }
        let filter = segments
            .iter()
            .map(|segment| match segment {
                Segment::Literal(text) => text.as_str(),
                Segment::Named(_) | Segment::Anonymous => "+",
                Segment::Rest => "#",
            })
            .collect::<Vec<_>>()
            .join("/");
        Ok(Self {
            source: pattern.to_string(),
            filter,
            segments,
        })
    }

    /// The MQTT subscription filter, e.g. `plant/+/+/+`.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the pattern names an `{asset}` segment.
    pub fn names_asset(&self) -> bool {
        self.segments.contains(&Segment::Named(Slot::Asset))
    }

    /// True when the pattern names a `{sensor}` segment.
    pub fn names_sensor(&self) -> bool {
        self.segments.contains(&Segment::Named(Slot::Sensor))
    }

    /// Matches a concrete topic and extracts its named segments; `None` when it does not match.
    pub fn extract<'t>(&self, topic: &'t str) -> Option<TopicFields<'t>> {
        let mut fields = TopicFields::default();
        let mut levels = topic.split('/');
        for segment in &self.segments {
            match segment {
                Segment::Rest => return Some(fields),
                Segment::Literal(text) => {
                    if levels.next()? != text {
                        return None;
                    }
                }
                Segment::Anonymous => {
                    levels.next()?;
                }
                Segment::Named(slot) => {
                    let level = levels.next()?;
                    if level.is_empty() {
                        return None;
                    }
                    match slot {
                        Slot::Asset => fields.asset = Some(level),
                        Slot::Sensor => fields.sensor = Some(level),
                        Slot::Other => {}
                    }
                }
            }
        }
        levels.next().is_none().then_some(fields)
    }
}

impl fmt::Debug for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicPattern({:?} -> {:?})", self.source, self.filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_segments_become_single_level_wildcards() {
        let pattern = TopicPattern::parse("plant/{site}/{asset}/{sensor}").unwrap();
        assert_eq!(pattern.filter(), "plant/+/+/+");
        let fields = pattern.extract("plant/north/pump-7/temp").unwrap();
        assert_eq!(fields.asset, Some("pump-7"));
        assert_eq!(fields.sensor, Some("temp"));
        assert!(pattern.names_asset() && pattern.names_sensor());
    }

    #[test]
    fn a_topic_with_the_wrong_depth_or_literal_does_not_match() {
        let pattern = TopicPattern::parse("sensors/{asset}").unwrap();
        assert_eq!(pattern.filter(), "sensors/+");
        assert_eq!(pattern.extract("sensors/a1").unwrap().asset, Some("a1"));
        assert!(pattern.extract("sensors/a1/x").is_none());
        assert!(pattern.extract("sensor/a1").is_none());
        assert!(pattern.extract("sensors").is_none());
        assert!(pattern.extract("sensors/").is_none());
    }

    #[test]
    fn a_trailing_hash_matches_any_remainder() {
        let pattern = TopicPattern::parse("fleet/{asset}/#").unwrap();
        assert_eq!(pattern.filter(), "fleet/+/#");
        assert_eq!(pattern.extract("fleet/a/b/c").unwrap().asset, Some("a"));
        assert!(pattern.extract("fleet/a").is_some());
    }

    #[test]
    fn malformed_patterns_are_refused_with_a_reason() {
        assert_eq!(TopicPattern::parse(""), Err(TopicError::Empty));
        assert!(matches!(
            TopicPattern::parse("a/{asset"),
            Err(TopicError::BadSegment { .. })
        ));
        assert!(matches!(
            TopicPattern::parse("a/x{asset}"),
            Err(TopicError::BadSegment { .. })
        ));
        assert_eq!(TopicPattern::parse("a/#/b"), Err(TopicError::HashNotLast));
        assert!(matches!(
            TopicPattern::parse("{asset}/{asset}"),
            Err(TopicError::DuplicateName { .. })
        ));
    }
}
