//! What the benchmarks ran on, for their reports: rates measured on
//! different CPUs (or on one noisy shared machine) only compare with the
//! CPU named beside them.

/// The CPU's model name with its family and model numbers where the system
/// reports them (`Intel(R) Xeon(R) Processor, family 6 model 207`; a generic
/// name alone does not tell two generations apart), else the architecture.
pub fn describe() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| from_cpuinfo(&text))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// [`describe`] from the text of `/proc/cpuinfo` (its first processor);
/// `None` without a model name.
fn from_cpuinfo(text: &str) -> Option<String> {
    let first = text.split("\n\n").next().unwrap_or_default();
    let field = |key: &str| {
        first.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let name = field("model name").filter(|n| !n.is_empty())?;
    Some(match (field("cpu family"), field("model")) {
        (Some(family), Some(model)) => format!("{name}, family {family} model {model}"),
        _ => name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_processor_with_its_family_and_model() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n\
                    model\t\t: 207\nmodel name\t: Intel(R) Xeon(R) Processor\n\n\
                    processor\t: 1\ncpu family\t: 7\nmodel\t\t: 1\nmodel name\t: Other\n";
        assert_eq!(
            from_cpuinfo(text).as_deref(),
            Some("Intel(R) Xeon(R) Processor, family 6 model 207")
        );
    }

    #[test]
    fn a_model_name_alone_is_kept_and_none_without_one() {
        // (An arm64 kernel may report neither family nor model name.)
        assert_eq!(
            from_cpuinfo("processor : 0\nmodel name : Some CPU\n").as_deref(),
            Some("Some CPU")
        );
        assert_eq!(from_cpuinfo("processor : 0\nBogoMIPS : 50.00\n"), None);
        assert!(!describe().is_empty());
    }
}
