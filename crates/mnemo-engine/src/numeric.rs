//! Numbers stored as item values, for incr/decr: what memcached's
//! `do_add_delta` accepts as a number (its `safe_strtoull` over the value,
//! whose end stands for the value's "\r\n") and how it writes the result.
//!
//! This is engine semantics, not protocol parsing: it decides which stored
//! values are numeric, whatever protocol the incr/decr came in by.

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The value as an unsigned 64-bit number, as `safe_strtoull` reads it:
/// optional leading whitespace and sign, decimal digits, then only
/// whitespace or the end. Overflow, no digits, or a result that reads as
/// negative when signed while the value holds a '-' anywhere is not a
/// number.
pub(crate) fn parse_u64(value: &[u8]) -> Option<u64> {
    // safe_strtoull reads a C string: for strtoull and for its search for
    // '-' alike, the value ends at its first NUL byte.
    let value = value
        .iter()
        .position(|&b| b == 0)
        .map_or(value, |nul| &value[..nul]);
    let lead = value.iter().take_while(|&&b| is_c_space(b)).count();
    let (negative, unsigned) = match &value[lead..] {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        rest => (false, rest),
    };
    let ndigits = unsigned.iter().take_while(|b| b.is_ascii_digit()).count();
    let (digits, after) = unsigned.split_at(ndigits);
    if digits.is_empty() || after.first().is_some_and(|&b| !is_c_space(b)) {
        return None;
    }
    let magnitude = digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    // strtoull negates a '-' number in 64 bits.
    let v = if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    };
    // memcached refuses a result at or above 2^63 when `strchr(str, '-')`
    // finds a '-' anywhere in the string, not only as the sign: the text
    // after the whitespace that ended the number counts too, so
    // "18446744073709551614 -" is not a number and is never rewritten.
    // (memcached's search runs on past the value's "\r\n" into whatever
    // memory follows the item until a NUL; only the value itself is
    // deterministic, so only the value is searched here.)
    if (v as i64) < 0 && value.contains(&b'-') {
        return None;
    }
    Some(v)
}

/// Writes `v` in decimal at the start of `buf`, returning the digits (an
/// incr/decr result is at most 20 of them).
pub(crate) fn format_u64(v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let len = v.checked_ilog10().map_or(1, |d| d as usize + 1);
    let mut rest = v;
    for digit in buf[..len].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    &buf[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_safe_strtoull() {
        assert_eq!(parse_u64(b"12"), Some(12));
        assert_eq!(parse_u64(b"12  "), Some(12));
        assert_eq!(parse_u64(b"  12"), Some(12));
        assert_eq!(parse_u64(b"\t12\r\n"), Some(12));
        assert_eq!(parse_u64(b"+7"), Some(7));
        assert_eq!(parse_u64(b"-0"), Some(0));
        assert_eq!(parse_u64(b"-1"), None);
        // A small negative wraps to a huge value and is still refused;
        // a '-' sign with a magnitude past i64::MAX wraps back positive
        // and is accepted, as with strtoull.
        assert_eq!(parse_u64(b"-9223372036854775808"), None);
        assert_eq!(
            parse_u64(b"-9223372036854775809"),
            Some(9223372036854775807)
        );
        // memcached looks for a '-' in the whole value once the result is
        // 2^63 or more, so one after the number makes the value non-numeric;
        // below 2^63 it does not look.
        assert_eq!(parse_u64(b"9223372036854775808 -x"), None);
        assert_eq!(parse_u64(b"18446744073709551614 -"), None);
        assert_eq!(parse_u64(b"18446744073709551615\t-"), None);
        assert_eq!(parse_u64(b"18446744073709551614 x-y"), None);
        assert_eq!(
            parse_u64(b"9223372036854775807 -"),
            Some(9223372036854775807)
        );
        assert_eq!(parse_u64(b"12 -"), Some(12));
        // A '-' sign that wraps back positive is found too, and still
        // accepted: only a result that reads as negative is checked.
        assert_eq!(
            parse_u64(b"-9223372036854775809 -"),
            Some(9223372036854775807)
        );
        // The value is a C string to memcached: a NUL ends the number and
        // hides any '-' after it.
        assert_eq!(parse_u64(b"12\0abc"), Some(12));
        assert_eq!(
            parse_u64(b"18446744073709551614 \0-"),
            Some(18446744073709551614)
        );
        assert_eq!(parse_u64(b"\x0012"), None);
        assert_eq!(parse_u64(b" \0 5"), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_u64(b"1 2"), Some(1));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"   "), None);
        assert_eq!(parse_u64(b"+"), None);
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
    }

    #[test]
    fn formats_decimal() {
        let mut b = [0u8; 20];
        assert_eq!(format_u64(0, &mut b), b"0");
        let mut b = [0u8; 20];
        assert_eq!(format_u64(u64::MAX, &mut b), b"18446744073709551615");
        let mut b = [0u8; 20];
        assert_eq!(format_u64(1200, &mut b), b"1200");
        for v in [9, 10, 99, 100, 999_999_999_999, 10_000_000_000_000_000_000] {
            let mut b = [0u8; 20];
            assert_eq!(format_u64(v, &mut b), v.to_string().as_bytes());
        }
    }
}
