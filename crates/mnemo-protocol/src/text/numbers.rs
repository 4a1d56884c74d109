//! Numbers as memcached reads and writes them: its `safe_strto*` rules
//! (leading whitespace and a sign accepted, 64-bit values truncated where
//! memcached stores 32 bits) and decimal formatting without allocation,
//! which counters and lengths use on the request path.

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// strtoull/strtoll core: optional whitespace, sign, decimal digits.
/// Returns (negative, magnitude, bytes used); None when no digits or the
/// magnitude overflows u64 (strto* set ERANGE).
fn scan_decimal(s: &[u8]) -> Option<(bool, u64, usize)> {
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
            .and_then(|x| x.checked_add((s[i] - b'0') as u64))
        {
            Some(x) => v = x,
            None => overflow = true,
        }
        i += 1;
    }
    if i == digits_start || overflow {
        return None;
    }
    Some((neg, v, i))
}

/// The end test shared by all safe_strto*: the number must be followed by
/// whitespace or the end of the token.
fn ends_ok(s: &[u8], used: usize) -> bool {
    used == s.len() || is_c_space(s[used])
}

/// memcached's `safe_strtoull`.
pub fn strtoull(s: &[u8]) -> Option<u64> {
    let (neg, mag, used) = scan_decimal(s)?;
    if !ends_ok(s, used) {
        return None;
    }
    let v = if neg { mag.wrapping_neg() } else { mag };
    // memcached refuses a result at or above 2^63 when `strchr(str, '-')`
    // finds a '-' anywhere in the token, not only as the sign: the token
    // "18446744073709551615\t-" (the tokenizer splits on spaces only) is
    // refused though strtoull stopped at the tab. Tokens hold no NUL (the
    // line ends at one), so the token is the whole C string.
    if (v as i64) < 0 && s.contains(&b'-') {
        return None;
    }
    Some(v)
}

/// memcached's `safe_strtoul` into a `uint32_t` (the 64-bit result is
/// truncated, as the C assignment does).
pub fn strtoul32(s: &[u8]) -> Option<u32> {
    strtoull(s).map(|v| v as u32)
}

/// memcached's `safe_strtol` into an `int32_t`: parsed as a 64-bit long,
/// then truncated.
pub fn strtol32(s: &[u8]) -> Option<i32> {
    strtoll(s).map(|v| v as i32)
}

/// memcached's `safe_strtoll`.
pub fn strtoll(s: &[u8]) -> Option<i64> {
    let (neg, mag, used) = scan_decimal(s)?;
    if !ends_ok(s, used) {
        return None;
    }
    if neg {
        if mag > i64::MAX as u64 + 1 {
            return None;
        }
        Some((mag as i64).wrapping_neg())
    } else {
        if mag > i64::MAX as u64 {
            return None;
        }
        Some(mag as i64)
    }
}

/// memcached's `safe_strtod` (decimal forms only).
pub fn strtod(s: &[u8]) -> Option<f64> {
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let start = i;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        i += 1;
    }
    let mut digits = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < s.len() && s[i] == b'.' {
        i += 1;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
        let mut j = i + 1;
        if j < s.len() && (s[j] == b'+' || s[j] == b'-') {
            j += 1;
        }
        let exp_start = j;
        while j < s.len() && s[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    if !ends_ok(s, i) {
        return None;
    }
    let text = std::str::from_utf8(&s[start..i]).ok()?;
    let v: f64 = text.parse().ok()?;
    if v.is_infinite() {
        return None;
    }
    Some(v)
}

/// The decimal digits of `v`, written into `buf` (no allocation: counters
/// are formatted on the request path).
#[inline]
pub fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
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

/// Appends the decimal form of `v` without allocating.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(decimal(v, &mut buf));
}

/// Append the decimal form of a signed value (exptimes may be negative).
pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}
