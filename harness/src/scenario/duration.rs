//! Durations as scenario files write them: a number and a unit, e.g. "250ms",
//! "5s", "2m", "1.5s", "1h". Not a general-purpose duration parser.

use std::time::Duration;

/// The message used whenever a duration string cannot be read.
pub(crate) fn not_a_duration(text: &str) -> String {
    format!("{text:?} is not a duration (use a number and a unit: 250ms, 5s, 2m; units us, ms, s, m, h)")
}

/// Parses "250ms", "5s", "2m", "1.5s", "0s", "100us", "1h".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(|| not_a_duration(text))?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1 {
        return Err(not_a_duration(text));
    }
    let value: f64 = num.parse().map_err(|_| not_a_duration(text))?;
    let scale = match unit.trim() {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(not_a_duration(text)),
    };
    let secs = value * scale;
    // A week is far beyond any load test; the bound keeps from_secs_f64 from panicking.
    if !secs.is_finite() || secs > 7.0 * 86400.0 {
        return Err(format!("{text:?} is too long (at most 168h)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a duration the way scenario files write them (for messages and docs).
pub fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us % 1_000_000 == 0 {
        format!("{}s", us / 1_000_000)
    } else if us % 1000 == 0 {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in ["", "5", "s", "5 parsecs", "-1s", "1..5s", ".5s", "5.s", "1e3s", "9999h", "5sec"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_back() {
        for s in ["250ms", "5s", "100us", "120s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
