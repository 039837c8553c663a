//! Salesforce record ids: 15-character case-sensitive base-62 ids, the
//! 18-character form with its 3-character case checksum, key prefixes, and
//! the emulator's deterministic id generator.
//!
//! Layout of generated ids: `prefix(3) + "xx" + "0" + 9 base-62 digits of a
//! per-org counter`, then the checksum (reference §4.5). Base-62 digits are
//! `0-9A-Za-z`, whose ASCII order matches numeric order, so ids of one object
//! sort in creation order.

const CHECKSUM_MAP: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a string is not a valid record id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdError {
    /// Not 15 or 18 characters.
    Length,
    /// A character outside base-62.
    Charset,
    /// The 18-character suffix does not match the first 15 characters.
    Checksum,
}

/// The 3-character checksum suffix of a 15-character id.
fn checksum(id15: &[u8]) -> [u8; 3] {
    let mut out = [0u8; 3];
    for (chunk, slot) in out.iter_mut().enumerate() {
        let mut n = 0usize;
        for i in 0..5 {
            if id15[chunk * 5 + i].is_ascii_uppercase() {
                n |= 1 << i;
            }
        }
        *slot = CHECKSUM_MAP[n];
    }
    out
}

/// Converts a valid 15-character id to its 18-character form.
pub fn to_id18(id15: &str) -> String {
    let mut out = String::with_capacity(18);
    out.push_str(id15);
    for c in checksum(id15.as_bytes()) {
        out.push(c as char);
    }
    out
}

/// Validates a 15- or 18-character id and returns its canonical 18-character
/// form. An 18-character id whose first 15 characters lost their case (as
/// case-insensitive systems do) is restored from the checksum, as Salesforce does.
pub fn normalize(id: &str) -> Result<String, IdError> {
    let bytes = id.as_bytes();
    if bytes.len() != 15 && bytes.len() != 18 {
        return Err(IdError::Length);
    }
    if !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return Err(IdError::Charset);
    }
    if bytes.len() == 15 {
        return Ok(to_id18(id));
    }
    let (head, suffix) = bytes.split_at(15);
    if checksum(head) == suffix {
        return Ok(id.to_string());
    }
    // Restore the case of letters from the checksum bits.
    let mut restored = head.to_vec();
    for chunk in 0..3 {
        let Some(n) = CHECKSUM_MAP
            .iter()
            .position(|&c| c == suffix[chunk].to_ascii_uppercase())
        else {
            return Err(IdError::Checksum);
        };
        for i in 0..5 {
            let c = &mut restored[chunk * 5 + i];
            let upper = n & (1 << i) != 0;
            if c.is_ascii_alphabetic() {
                *c = if upper {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                };
            } else if upper {
                return Err(IdError::Checksum);
            }
        }
    }
    let sum = checksum(&restored);
    if sum
        .iter()
        .zip(suffix)
        .all(|(a, b)| a.eq_ignore_ascii_case(b))
    {
        let mut out = String::from_utf8(restored).expect("ascii alphanumerics");
        for c in sum {
            out.push(c as char);
        }
        Ok(out)
    } else {
        Err(IdError::Checksum)
    }
}

/// The 3-character key prefix of an id (callers validate the id first).
pub fn key_prefix(id: &str) -> &str {
    id.get(..3).unwrap_or("")
}

/// Builds an 18-character id from a key prefix and a sequence number.
pub fn make_id(prefix: &str, seq: u64) -> String {
    let mut digits = [b'0'; 9];
    let mut n = seq;
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    let mut id15 = String::with_capacity(18);
    id15.push_str(prefix);
    id15.push_str("xx0");
    id15.push_str(std::str::from_utf8(&digits).expect("base-62 digits are ascii"));
    to_id18(&id15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_every_documented_id() {
        for (id15, id18) in [
            ("00190000001pPvH", "00190000001pPvHAAU"),
            ("0011U00000V0tkD", "0011U00000V0tkDQAR"),
            ("001xx000003DGb1", "001xx000003DGb1AAG"),
            ("750R0000000zxik", "750R0000000zxikIAA"),
            ("003R000000DDMlT", "003R000000DDMlTIAX"),
            ("001D000000IRFma", "001D000000IRFmaIAH"),
            ("e01xx0000000001", "e01xx0000000001AAA"),
        ] {
            assert_eq!(to_id18(id15), id18);
            assert_eq!(normalize(id15).unwrap(), id18);
            assert_eq!(normalize(id18).unwrap(), id18);
        }
    }

    #[test]
    fn normalize_rejects_bad_checksum_length_and_charset() {
        assert_eq!(normalize("001xx000003DGb1AAH"), Err(IdError::Checksum));
        assert_eq!(normalize("001xx000003DGb"), Err(IdError::Length));
        assert_eq!(normalize("001xx000003DGb!"), Err(IdError::Charset));
    }

    #[test]
    fn normalize_restores_case_from_checksum() {
        assert_eq!(
            normalize("0011u00000v0tkdqar").unwrap(),
            "0011U00000V0tkDQAR"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_id_survives_losing_its_case(id15 in "[0-9A-Za-z]{15}") {
            let id18 = to_id18(&id15);
            proptest::prop_assert_eq!(normalize(&id15).unwrap(), id18.clone());
            proptest::prop_assert_eq!(normalize(&id18.to_lowercase()).unwrap(), id18.clone());
            proptest::prop_assert_eq!(normalize(&id18.to_uppercase()).unwrap(), id18);
        }

        #[test]
        fn generated_ids_are_valid_and_ordered(a in 0u64..1_000_000_000, b in 0u64..1_000_000_000) {
            let (x, y) = (make_id("0WO", a), make_id("0WO", b));
            proptest::prop_assert_eq!(normalize(&x).unwrap(), x.clone());
            proptest::prop_assert_eq!(a.cmp(&b), x[..15].cmp(&y[..15]));
        }
    }

    #[test]
    fn generated_ids_sort_in_creation_order_and_validate() {
        let a = make_id("500", 61);
        let b = make_id("500", 62);
        assert!(a < b);
        assert_eq!(normalize(&a).unwrap(), a);
        assert_eq!(a.len(), 18);
        assert_eq!(key_prefix(&a), "500");
    }
}
