//! Record ids on the client side: store and compare the 18-character form
//! (reference §4.5). Independent of the emulator's implementation on purpose.

const SUFFIX: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The 18-character form of a 15- or 18-character id; `None` if it is neither
/// (wrong length or a non-alphanumeric character). An 18-character id is
/// returned as-is.
pub fn to_18(id: &str) -> Option<String> {
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match id.len() {
        18 => Some(id.to_string()),
        15 => {
            let bytes = id.as_bytes();
            let mut out = id.to_string();
            for chunk in bytes.chunks(5) {
                let bits = chunk.iter().enumerate().fold(0usize, |acc, (i, b)| {
                    if b.is_ascii_uppercase() {
                        acc | (1 << i)
                    } else {
                        acc
                    }
                });
                out.push(SUFFIX[bits] as char);
            }
            Some(out)
        }
        _ => None,
    }
}

/// Whether two ids name the same record (15/18-character forms mixed).
pub fn same_record(a: &str, b: &str) -> bool {
    match (to_18(a), to_18(b)) {
        (Some(x), Some(y)) => x[..15] == y[..15],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifteen_character_ids_gain_the_documented_suffix() {
        for (short, long) in [
            ("00190000001pPvH", "00190000001pPvHAAU"),
            ("0011U00000V0tkD", "0011U00000V0tkDQAR"),
            ("750R0000000zxik", "750R0000000zxikIAA"),
            ("e01xx0000000001", "e01xx0000000001AAA"),
        ] {
            assert_eq!(to_18(short).as_deref(), Some(long));
            assert!(same_record(short, long));
        }
        assert!(
            !same_record("0011U00000V0tkD", "0011u00000v0tkd"),
            "15-character ids are case-sensitive"
        );
        assert_eq!(to_18("001-bad"), None);
    }
}
