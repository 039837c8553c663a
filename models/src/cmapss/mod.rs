//! NASA C-MAPSS turbofan benchmark (feature `train`): parser, operating
//! condition normalisation, window features and the published protocol.
//!
//! Files are read as distributed: `train_FD00x.txt.gz`, `test_FD00x.txt.gz`,
//! `RUL_FD00x.txt.gz` (plain `.txt` works too). Each row has 26
//! space-separated numbers (unit, cycle, 3 operational settings, 21 sensors)
//! and ends with two spaces, so rows are split on runs of whitespace, never
//! on single spaces.
//!
//! The protocol ([`protocol`]) is the published one: train on the train file,
//! predict one RUL per test engine at its last cycle, score with RMSE and the
//! PHM08 score against `RUL_FD00x`, both as given and capped at the training
//! cap (each result tagged with its protocol). Every hyper-parameter, the RUL
//! cap included, comes from cross-validation grouped by engine on truncated
//! training engines ([`cv::cross_validate`]); the test files are never used
//! to choose anything.

pub mod conditions;
pub mod cv;
pub mod features;
pub mod protocol;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Number of sensor channels in a C-MAPSS row.
pub const N_SENSORS: usize = 21;
/// Number of operational settings in a C-MAPSS row.
pub const N_SETTINGS: usize = 3;
/// Numbers per row: unit, cycle, settings, sensors.
pub const N_COLUMNS: usize = 2 + N_SETTINGS + N_SENSORS;

/// One of the four C-MAPSS subsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subset {
    /// One condition, one fault mode (HPC).
    Fd001,
    /// Six conditions, one fault mode.
    Fd002,
    /// One condition, two fault modes (HPC, fan).
    Fd003,
    /// Six conditions, two fault modes.
    Fd004,
}

impl Subset {
    /// All four, in order.
    pub const ALL: [Subset; 4] = [Subset::Fd001, Subset::Fd002, Subset::Fd003, Subset::Fd004];

    /// The file-name tag, e.g. `FD001`.
    pub fn name(self) -> &'static str {
        match self {
            Subset::Fd001 => "FD001",
            Subset::Fd002 => "FD002",
            Subset::Fd003 => "FD003",
            Subset::Fd004 => "FD004",
        }
    }

    /// Parses `FD001`/`fd001`/`1`.
    pub fn parse(text: &str) -> Option<Subset> {
        let t = text.trim().to_ascii_uppercase();
        let t = t.strip_prefix("FD").unwrap_or(&t);
        match t.trim_start_matches('0') {
            "1" => Some(Subset::Fd001),
            "2" => Some(Subset::Fd002),
            "3" => Some(Subset::Fd003),
            "4" => Some(Subset::Fd004),
            _ => None,
        }
    }
}

impl fmt::Display for Subset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One engine's trajectory, cycles in file order (1, 2, 3, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Engine {
    /// Unit number from the file.
    pub unit: u32,
    /// Operational settings per cycle.
    pub settings: Vec<[f64; N_SETTINGS]>,
    /// Sensor values per cycle.
    pub sensors: Vec<[f64; N_SENSORS]>,
}

impl Engine {
    /// Number of cycles observed.
    pub fn len(&self) -> usize {
        self.sensors.len()
    }

    /// True when the engine has no cycle (never produced by the parser).
    pub fn is_empty(&self) -> bool {
        self.sensors.is_empty()
    }

    /// The first `n` cycles of this engine (a truncated trajectory, as the
    /// test files hold).
    pub fn truncated(&self, n: usize) -> Engine {
        let n = n.min(self.len());
        Engine {
            unit: self.unit,
            settings: self.settings[..n].to_vec(),
            sensors: self.sensors[..n].to_vec(),
        }
    }
}

/// A subset as loaded from disk.
#[derive(Debug, Clone)]
pub struct SubsetData {
    /// Which subset.
    pub subset: Subset,
    /// Run-to-failure training engines.
    pub train: Vec<Engine>,
    /// Truncated test engines.
    pub test: Vec<Engine>,
    /// True RUL at the last cycle of each test engine (same order).
    pub test_rul: Vec<f64>,
}

/// Why a C-MAPSS file could not be read.
#[derive(Debug, Error)]
pub enum CmapssError {
    /// Neither `NAME.txt.gz` nor `NAME.txt` exists in the directory.
    #[error("C-MAPSS file {name}(.txt.gz|.txt) not found in {dir}")]
    Missing {
        /// Base name, e.g. `train_FD001`.
        name: String,
        /// Directory searched.
        dir: PathBuf,
    },
    /// Reading or decompressing failed.
    #[error("cannot read {path}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A row is malformed.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// File.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Files of a subset disagree (e.g. RUL count ≠ test engines).
    #[error("{subset}: {reason}")]
    Inconsistent {
        /// Subset.
        subset: Subset,
        /// What disagrees.
        reason: String,
    },
}

/// Finds `NAME.txt.gz` or `NAME.txt` in `dir`.
///
/// # Errors
/// [`CmapssError::Missing`] when neither exists.
pub fn locate(dir: &Path, name: &str) -> Result<PathBuf, CmapssError> {
    for ext in ["txt.gz", "txt"] {
        let path = dir.join(format!("{name}.{ext}"));
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(CmapssError::Missing {
        name: name.to_string(),
        dir: dir.to_path_buf(),
    })
}

/// Reads a file as text, gunzipping when its name ends in `.gz`.
///
/// # Errors
/// [`CmapssError::Io`] on IO or gzip errors.
pub fn read_text(path: &Path) -> Result<String, CmapssError> {
    let io = |source| CmapssError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(path).map_err(io)?;
    let mut text = String::with_capacity(bytes.len() * 4);
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .map_err(io)?;
    } else {
        text = String::from_utf8(bytes)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    }
    Ok(text)
}

/// Parses trajectory text (train or test layout) into engines, in unit order
/// of appearance. Cycles must start at 1 and increase by one per engine.
///
/// # Errors
/// [`CmapssError::Parse`] with the line number on any malformed row.
pub fn parse_trajectories(text: &str, path: &Path) -> Result<Vec<Engine>, CmapssError> {
    let err = |line: usize, reason: String| CmapssError::Parse {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut engines: Vec<Engine> = Vec::new();
    let mut values = [0.0f64; N_COLUMNS];
    for (idx, line) in text.lines().enumerate() {
        let line_no = idx + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut n = 0;
        for field in line.split_ascii_whitespace() {
            if n == N_COLUMNS {
                return Err(err(line_no, format!("more than {N_COLUMNS} fields")));
            }
            values[n] = field.parse::<f64>().map_err(|_| {
                err(
                    line_no,
                    format!("field {} `{field}` is not a number", n + 1),
                )
            })?;
            if !values[n].is_finite() {
                return Err(err(line_no, format!("field {} is not finite", n + 1)));
            }
            n += 1;
        }
        if n != N_COLUMNS {
            return Err(err(line_no, format!("{n} fields, expected {N_COLUMNS}")));
        }
        let unit = values[0];
        let cycle = values[1];
        if unit < 1.0 || unit.fract() != 0.0 || cycle < 1.0 || cycle.fract() != 0.0 {
            return Err(err(
                line_no,
                "unit and cycle must be positive integers".into(),
            ));
        }
        let unit = unit as u32;
        let cycle = cycle as usize;
        let is_new = engines.last().is_none_or(|e| e.unit != unit);
        if is_new {
            if engines.iter().any(|e| e.unit == unit) {
                return Err(err(line_no, format!("unit {unit} appears in two blocks")));
            }
            engines.push(Engine {
                unit,
                settings: Vec::new(),
                sensors: Vec::new(),
            });
        }
        let engine = engines.last_mut().expect("pushed above");
        if cycle != engine.len() + 1 {
            return Err(err(
                line_no,
                format!("unit {unit}: cycle {cycle} follows cycle {}", engine.len()),
            ));
        }
        let mut settings = [0.0; N_SETTINGS];
        settings.copy_from_slice(&values[2..2 + N_SETTINGS]);
        let mut sensors = [0.0; N_SENSORS];
        sensors.copy_from_slice(&values[2 + N_SETTINGS..]);
        engine.settings.push(settings);
        engine.sensors.push(sensors);
    }
    Ok(engines)
}

/// Parses an `RUL_FD00x` file: one non-negative integer per line.
///
/// # Errors
/// [`CmapssError::Parse`] on a malformed line.
pub fn parse_rul(text: &str, path: &Path) -> Result<Vec<f64>, CmapssError> {
    let mut out = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let v: f64 = t
            .parse()
            .ok()
            .filter(|v: &f64| *v >= 0.0 && v.is_finite())
            .ok_or_else(|| CmapssError::Parse {
                path: path.to_path_buf(),
                line: idx + 1,
                reason: format!("`{t}` is not a non-negative number"),
            })?;
        out.push(v);
    }
    Ok(out)
}

/// Loads the train, test and RUL files of one subset from `dir`.
///
/// # Errors
/// Missing or malformed files, or a RUL count that differs from the number
/// of test engines.
pub fn load_subset(dir: &Path, subset: Subset) -> Result<SubsetData, CmapssError> {
    let read_engines = |prefix: &str| -> Result<Vec<Engine>, CmapssError> {
        let path = locate(dir, &format!("{prefix}_{}", subset.name()))?;
        parse_trajectories(&read_text(&path)?, &path)
    };
    let train = read_engines("train")?;
    let test = read_engines("test")?;
    let rul_path = locate(dir, &format!("RUL_{}", subset.name()))?;
    let test_rul = parse_rul(&read_text(&rul_path)?, &rul_path)?;
    if test_rul.len() != test.len() {
        return Err(CmapssError::Inconsistent {
            subset,
            reason: format!(
                "{} RUL values for {} test engines",
                test_rul.len(),
                test.len()
            ),
        });
    }
    if train.is_empty() {
        return Err(CmapssError::Inconsistent {
            subset,
            reason: "no training engine".into(),
        });
    }
    Ok(SubsetData {
        subset,
        train,
        test,
        test_rul,
    })
}

/// The real NASA files, as the repository ships them in `data/cmapss`
/// (tests only). Fails loudly when they are missing.
#[cfg(test)]
pub(crate) fn real_data_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/cmapss");
    assert!(
        dir.join("train_FD001.txt.gz").is_file(),
        "C-MAPSS data missing at {}: the repository ships it in data/cmapss (see data/README.md)",
        dir.display()
    );
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(unit: u32, cycle: u32) -> String {
        let mut s = format!("{unit} {cycle} -0.0007 -0.0004 100.0");
        for k in 0..N_SENSORS {
            s.push_str(&format!(" {}.5", 500 + k));
        }
        s.push_str("  ");
        s
    }

    #[test]
    fn rows_with_trailing_double_spaces_parse_into_engines() {
        let text = [row(1, 1), row(1, 2), row(2, 1)].join("\n") + "\n";
        let engines = parse_trajectories(&text, Path::new("t.txt")).expect("parse");
        assert_eq!(engines.len(), 2);
        assert_eq!(engines[0].len(), 2);
        assert_eq!(engines[0].settings[0], [-0.0007, -0.0004, 100.0]);
        assert_eq!(engines[1].sensors[0][20], 520.5);
    }

    #[test]
    fn malformed_rows_are_rejected_with_their_line_number() {
        let short = format!("{}\n1 2 3", row(1, 1));
        let err = parse_trajectories(&short, Path::new("t.txt")).unwrap_err();
        assert!(err.to_string().contains("t.txt:2"), "{err}");
        let gap = [row(1, 1), row(1, 3)].join("\n");
        let err = parse_trajectories(&gap, Path::new("t.txt")).unwrap_err();
        assert!(err.to_string().contains("cycle 3 follows cycle 1"), "{err}");
        let bad = row(1, 1).replace("500.5", "abc");
        assert!(parse_trajectories(&bad, Path::new("t.txt")).is_err());
        assert!(parse_rul("12\n-3\n", Path::new("r.txt")).is_err());
    }

    #[test]
    fn plain_text_files_load_like_the_gzipped_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let train = [row(1, 1), row(1, 2), row(1, 3), row(2, 1), row(2, 2)].join("\n");
        let test = [row(1, 1), row(2, 1), row(2, 2)].join("\n");
        std::fs::write(dir.path().join("train_FD003.txt"), train).expect("write");
        std::fs::write(dir.path().join("test_FD003.txt"), test).expect("write");
        std::fs::write(dir.path().join("RUL_FD003.txt"), "112\n98\n").expect("write");
        let data = load_subset(dir.path(), Subset::Fd003).expect("load");
        assert_eq!(data.train.len(), 2);
        assert_eq!(data.test[1].len(), 2);
        assert_eq!(data.test_rul, vec![112.0, 98.0]);
        std::fs::write(dir.path().join("RUL_FD003.txt"), "112\n").expect("write");
        let err = load_subset(dir.path(), Subset::Fd003).unwrap_err();
        assert!(
            err.to_string().contains("1 RUL values for 2 test engines"),
            "{err}"
        );
    }

    #[test]
    fn subset_names_parse_in_several_spellings() {
        assert_eq!(Subset::parse("FD003"), Some(Subset::Fd003));
        assert_eq!(Subset::parse("fd1"), Some(Subset::Fd001));
        assert_eq!(Subset::parse("4"), Some(Subset::Fd004));
        assert_eq!(Subset::parse("FD005"), None);
    }

    /// Reads the repository's `data/cmapss` (see [`real_data_dir`]).
    #[test]
    fn real_files_parse_with_the_published_engine_and_row_counts() {
        let dir = real_data_dir();
        // (train engines, test engines, train rows, test rows) from the data README.
        let expected = [
            (Subset::Fd001, 100, 100, 20_631, 13_096),
            (Subset::Fd002, 260, 259, 53_759, 33_991),
            (Subset::Fd003, 100, 100, 24_720, 16_596),
            (Subset::Fd004, 249, 248, 61_249, 41_214),
        ];
        for (subset, n_train, n_test, train_rows, test_rows) in expected {
            let data = load_subset(&dir, subset).expect("load");
            assert_eq!(data.train.len(), n_train, "{subset} train engines");
            assert_eq!(data.test.len(), n_test, "{subset} test engines");
            assert_eq!(
                data.train.iter().map(Engine::len).sum::<usize>(),
                train_rows
            );
            assert_eq!(data.test.iter().map(Engine::len).sum::<usize>(), test_rows);
            assert_eq!(data.test_rul.len(), n_test);
        }
    }

    /// Reads the repository's `data/cmapss`. A small, fast model must already beat
    /// the MLP and SVR rows of the published table on FD001.
    #[test]
    fn quick_fd001_fit_predicts_last_cycle_rul_within_a_sane_error() {
        let data = load_subset(&real_data_dir(), Subset::Fd001).expect("load");
        let point = cv::GridPoint {
            cap: Some(protocol::HEIMES_RUL_CAP),
            max_depth: 4,
            min_samples_leaf: 20,
            learning_rate: 0.15,
            n_trees: 60,
        };
        let base = crate::gbdt::GbdtParams {
            subsample: 0.5,
            ..crate::gbdt::GbdtParams::default()
        };
        let res = protocol::evaluate_subset(&data, &point, &base).expect("protocol");
        assert_eq!(res.n_test_engines, 100);
        assert_eq!(res.n_conditions, 1);
        assert!(res.rmse < 18.0, "FD001 RMSE {}", res.rmse);
        assert!(res.score < 1500.0, "FD001 score {}", res.score);
    }

    #[test]
    fn missing_directory_names_the_file_it_looked_for() {
        let err = load_subset(Path::new("/nonexistent/cmapss"), Subset::Fd001).unwrap_err();
        assert!(err.to_string().contains("train_FD001"), "{err}");
    }
}
