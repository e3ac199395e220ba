//! Resource quantities (`250m`, `1`, `64Mi`, `1G`) parsed into numbers and
//! shown back compactly, for the resource summaries of `describe node`.

/// A quantity in base units (cores, bytes), or `None` if it does not parse.
pub fn parse(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (suffix, mult) in SUFFIXES {
        if let Some(num) = s.strip_suffix(suffix) {
            return num
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(|n| n * mult);
        }
    }
    for (suffix, mult) in [("P", 1e15), ("E", 1e18)] {
        if let Some(num) = s.strip_suffix(suffix) {
            return num
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(|n| n * mult);
        }
    }
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// CPU in millicores (`250m` → 250, `2` → 2000).
pub fn cpu_millis(s: &str) -> Option<i64> {
    parse(s).map(|c| (c * 1000.0).round() as i64)
}

/// Millicores as kubectl shows them: whole cores plainly, else `Nm`.
pub fn format_cpu(millis: i64) -> String {
    if millis % 1000 == 0 {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Bytes with the largest binary (or decimal) suffix that divides them.
pub fn format_bytes(bytes: i64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    for (suffix, unit) in [
        ("Ti", 1i64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes % unit == 0 {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    for (suffix, unit) in [
        ("T", 1_000_000_000_000i64),
        ("G", 1_000_000_000),
        ("M", 1_000_000),
        ("k", 1000),
    ] {
        if bytes % unit == 0 {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// `value (pct%)` of a capacity, percent truncated as kubectl does.
pub fn with_percent(shown: &str, value: f64, capacity: Option<f64>) -> String {
    match capacity {
        Some(c) if c > 0.0 => format!("{shown} ({}%)", (value / c * 100.0) as i64),
        _ => format!("{shown} (0%)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse() {
        assert_eq!(cpu_millis("250m"), Some(250));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("0.5"), Some(500));
        assert_eq!(parse("64Mi"), Some(64.0 * 1048576.0));
        assert_eq!(parse("1G"), Some(1e9));
        assert_eq!(parse("1Gi"), Some(1073741824.0));
        assert_eq!(parse(""), None);
        assert_eq!(parse("abc"), None);
    }

    #[test]
    fn quantities_format() {
        assert_eq!(format_cpu(250), "250m");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_cpu(0), "0");
        assert_eq!(format_bytes(64 * 1048576), "64Mi");
        assert_eq!(format_bytes(1_000_000_000), "1G");
        assert_eq!(format_bytes(1500), "1500");
        assert_eq!(with_percent("250m", 250.0, Some(2000.0)), "250m (12%)");
        assert_eq!(with_percent("0", 0.0, None), "0 (0%)");
    }
}
