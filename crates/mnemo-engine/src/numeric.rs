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
/// whitespace or the end. Overflow, no digits, or a negative number
/// (other than -0) is not a number.
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut v: u64 = 0;
    let mut overflow = false;
    while i < s.len() && s[i].is_ascii_digit() {
        match v
            .checked_mul(10)
            .and_then(|x| x.checked_add(u64::from(s[i] - b'0')))
        {
            Some(x) => v = x,
            None => overflow = true,
        }
        i += 1;
    }
    if i == digits_start || overflow {
        return None;
    }
    if i != s.len() && !is_c_space(s[i]) {
        return None;
    }
    let v = if neg { v.wrapping_neg() } else { v };
    // memcached looks for a '-' only in the span strtoull consumed, which
    // holds one exactly when the sign was '-' (a stored value may have more
    // text after its trailing spaces).
    if (v as i64) < 0 && neg {
        return None;
    }
    Some(v)
}

/// Formats `v` in decimal into `buf`, returning the digits.
pub(crate) fn format_u64(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
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
        // A '-' after the number is not its sign (memcached looks only in
        // the span it parsed).
        assert_eq!(
            parse_u64(b"9223372036854775808 -x"),
            Some(9223372036854775808)
        );
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
    }
}
