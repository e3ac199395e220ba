//! Kubernetes resource quantities (`100m`, `0.5`, `64Mi`, `1G`, `1e3`) as
//! integers: CPU in millicores, memory and counts in units.
//!
//! A quantity is an optionally signed decimal number (`1`, `0.5`, `.5`,
//! `5.`) followed by at most one suffix: a decimal SI prefix (`n u m k M G T
//! P E`), a binary one (`Ki Mi Gi Ti Pi Ei`) or a decimal exponent (`e3`,
//! `E-2`). Values are computed exactly and rounded up, as Kubernetes'
//! `MilliValue()`/`Value()` do, so `0.1m` CPU is 1 millicore and `0.5` bytes
//! is 1 byte; values beyond `i64` saturate.

/// Significant digits kept from the number; more only matter for values far
/// beyond `i64`, which saturate anyway.
const MAX_DIGITS: usize = 18;

/// The value of quantity `s` times `10^scale`, rounded up (away from zero);
/// `None` if `s` is not a quantity.
pub fn parse_scaled(s: &str, scale: i32) -> Option<i64> {
    let s = s.trim();
    let (negative, unsigned) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    if number.matches('.').count() > 1 || !number.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let (mut exp10, pow2) = suffix_exponents(suffix)?;
    exp10 = exp10
        .checked_sub(i32::try_from(frac_part.len()).ok()?)?
        .checked_add(scale)?;

    // The mantissa's significant digits, at most MAX_DIGITS of them; the
    // rest shift the exponent and make the value inexact (round up).
    let digits = int_part
        .bytes()
        .chain(frac_part.bytes())
        .skip_while(|&b| b == b'0');
    let mut mantissa: u128 = 0;
    let mut kept = 0usize;
    let mut inexact = false;
    for b in digits {
        if kept < MAX_DIGITS {
            mantissa = mantissa * 10 + u128::from(b - b'0');
            kept += 1;
        } else {
            exp10 = exp10.checked_add(1)?;
            inexact |= b != b'0';
        }
    }
    if mantissa == 0 {
        return Some(0);
    }
    // mantissa < 10^18 < 2^60 and pow2 <= 60, so this cannot overflow.
    let n = mantissa << pow2;
    let magnitude: u128 = if exp10 >= 0 {
        match 10u128
            .checked_pow(exp10.unsigned_abs())
            .and_then(|p| n.checked_mul(p))
        {
            Some(v) => v + u128::from(inexact),
            None => u128::MAX,
        }
    } else {
        match 10u128.checked_pow(exp10.unsigned_abs()) {
            Some(d) => n / d + u128::from(!n.is_multiple_of(d) || inexact),
            // n < 2^120 < 10^37 <= d: a positive value below one.
            None => 1,
        }
    };
    let v = i64::try_from(magnitude).unwrap_or(i64::MAX);
    Some(if negative { -v } else { v })
}

/// (decimal exponent, binary exponent) of a suffix; `None` if invalid.
fn suffix_exponents(suffix: &str) -> Option<(i32, u32)> {
    Some(match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Anything longer overflows any i64 value (or rounds to 1).
            let e: i32 = if digits.len() > 4 {
                9999
            } else {
                digits.parse().ok()?
            };
            (if exp.starts_with('-') { -e } else { e }, 0)
        }
    })
}

/// CPU in millicores: `100m` → 100, `0.5` → 500, `2` → 2000.
pub fn parse_millis(s: &str) -> Option<i64> {
    parse_scaled(s, 3)
}

/// A plain value (memory in bytes, a pod count): `64Mi` → 67108864.
pub fn parse_value(s: &str) -> Option<i64> {
    parse_scaled(s, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities() {
        assert_eq!(parse_millis("100m"), Some(100));
        assert_eq!(parse_millis("0.5"), Some(500));
        assert_eq!(parse_millis(".5"), Some(500));
        assert_eq!(parse_millis("5."), Some(5000));
        assert_eq!(parse_millis("2"), Some(2000));
        assert_eq!(parse_millis("1.25"), Some(1250));
        assert_eq!(parse_millis("250000u"), Some(250));
        assert_eq!(parse_millis("1k"), Some(1_000_000));
        assert_eq!(parse_millis("+1"), Some(1000));
        assert_eq!(parse_millis("0"), Some(0));
        assert_eq!(parse_millis("000.000"), Some(0));
    }

    #[test]
    fn fractions_round_up() {
        assert_eq!(parse_millis("0.1m"), Some(1));
        assert_eq!(parse_millis("1n"), Some(1));
        assert_eq!(parse_millis("0.0001"), Some(1));
        assert_eq!(parse_value("0.5"), Some(1));
        assert_eq!(parse_value("1.5Ki"), Some(1536));
        assert_eq!(parse_value("1m"), Some(1));
        assert_eq!(parse_value("-1m"), Some(-1));
    }

    #[test]
    fn memory_quantities() {
        assert_eq!(parse_value("64Mi"), Some(64 << 20));
        assert_eq!(parse_value("1G"), Some(1_000_000_000));
        assert_eq!(parse_value("128974848"), Some(128_974_848));
        assert_eq!(parse_value("1e3"), Some(1000));
        assert_eq!(parse_value("1E3"), Some(1000));
        assert_eq!(parse_value("12e-1"), Some(2));
        assert_eq!(parse_value("5Ki"), Some(5120));
        assert_eq!(parse_value("129M"), Some(129_000_000));
        assert_eq!(parse_value("123Mi"), Some(128_974_848));
        assert_eq!(parse_value("1.5Gi"), Some(1_610_612_736));
        assert_eq!(parse_value("2Ti"), Some(2 << 40));
        assert_eq!(parse_value("1Ei"), Some(1 << 60));
        assert_eq!(parse_value("1E"), Some(1_000_000_000_000_000_000));
        assert_eq!(parse_value("1e+2"), Some(100));
        assert_eq!(parse_value("110"), Some(110));
        assert_eq!(parse_value(" 7 "), Some(7));
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(parse_value("16Ei"), Some(i64::MAX));
        assert_eq!(parse_value("1e100"), Some(i64::MAX));
        assert_eq!(parse_value("1e99999999"), Some(i64::MAX));
        assert_eq!(parse_millis("99999999999999999999999999"), Some(i64::MAX));
        assert_eq!(parse_value("1e-99999999"), Some(1));
        assert_eq!(
            parse_value("1.0000000000000000000001"),
            Some(2),
            "digits beyond the kept precision still round up"
        );
        assert_eq!(parse_value("-1e100"), Some(-i64::MAX));
    }

    #[test]
    fn invalid_quantities() {
        for bad in [
            "", "m", "abc", "1..2", "1.2.3", "1Mb", "1K", "1e", "1e+", "1ee3", "--1", "1 m", "Mi",
            ".", "1i",
        ] {
            assert_eq!(parse_value(bad), None, "{bad:?}");
        }
    }
}
