//! Kubernetes resource quantities (`500m`, `0.5`, `1Gi`, `129e6`), compared exactly.
//!
//! A quantity is `sign? digits (. digits)? suffix?`, the suffix binary (`Ki`..`Ei`), decimal
//! (`n`, `u`, `m`, ``, `k`, `M`, `G`, `T`, `P`, `E`) or an exponent (`e3`, `E-2`). Its value is
//! `mantissa * 2^a * 5^b`; with every factor 2 and 5 moved out of the mantissa into `a` and
//! `b` that form is unique, so two spellings are equal exactly when their forms are. No
//! floating point is involved, so `0.1 + rounding` cannot make unequal values equal.

/// The canonical value of a quantity: `sign * mantissa * 2^twos * 5^fives`, where `mantissa`
/// has no factor 2 or 5 (zero is `mantissa == 0` with all else zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quantity {
    negative: bool,
    mantissa: u128,
    twos: i64,
    fives: i64,
}

/// Exponents beyond this are not Kubernetes quantities; bounding them keeps the arithmetic
/// in range whatever the input.
const MAX_EXPONENT: i64 = 1_000;

impl Quantity {
    /// Parses a quantity string; `None` when it is not one (the caller then compares the
    /// values as they are).
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        let (negative, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut mantissa: u128 = 0;
        for c in int_part.bytes().chain(frac_part.bytes()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(u128::from(c - b'0'))?;
        }
        // Digits after the point scale by 10^-len.
        let mut tens = -i64::try_from(frac_part.len()).ok()?;
        let mut twos = 0i64;
        match suffix {
            "" => {}
            "n" => tens -= 9,
            "u" => tens -= 6,
            "m" => tens -= 3,
            "k" => tens += 3,
            "M" => tens += 6,
            "G" => tens += 9,
            "T" => tens += 12,
            "P" => tens += 15,
            "E" => tens += 18,
            "Ki" => twos += 10,
            "Mi" => twos += 20,
            "Gi" => twos += 30,
            "Ti" => twos += 40,
            "Pi" => twos += 50,
            "Ei" => twos += 60,
            _ => {
                let exp = suffix
                    .strip_prefix('e')
                    .or_else(|| suffix.strip_prefix('E'))?;
                let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let e: i64 = exp.parse().ok()?;
                if e.abs() > MAX_EXPONENT {
                    return None;
                }
                tens += e;
            }
        }
        Some(Quantity::normalize(negative, mantissa, twos, tens))
    }

    fn normalize(negative: bool, mut mantissa: u128, mut twos: i64, tens: i64) -> Quantity {
        if mantissa == 0 {
            return Quantity {
                negative: false,
                mantissa: 0,
                twos: 0,
                fives: 0,
            };
        }
        // 10^t = 2^t * 5^t
        twos += tens;
        let mut fives = tens;
        while mantissa.is_multiple_of(2) {
            mantissa /= 2;
            twos += 1;
        }
        while mantissa.is_multiple_of(5) {
            mantissa /= 5;
            fives += 1;
        }
        Quantity {
            negative,
            mantissa,
            twos,
            fives,
        }
    }

    /// A JSON value as a quantity: a string, or a number written as JSON writes it.
    pub fn from_json(v: &serde_json::Value) -> Option<Quantity> {
        match v {
            serde_json::Value::String(s) => Quantity::parse(s),
            serde_json::Value::Number(n) => Quantity::parse(&n.to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn equal_spellings_of_one_value_compare_equal() {
        let cases = [
            ("0.5", "500m"),
            ("1Gi", "1024Mi"),
            ("1000m", "1"),
            ("1", "1.0"),
            ("1k", "1000"),
            ("1e3", "1k"),
            ("1E3", "1000"),
            ("129e6", "129M"),
            ("128974848", "123Mi"),
            ("0.25Gi", "256Mi"),
            ("1Ki", "1024"),
            ("1.5Gi", "1536Mi"),
            ("100u", "0.1m"),
            ("1n", "0.001u"),
            ("0", "0m"),
            ("-0", "0Gi"),
            ("+2", "2"),
            ("1e-3", "1m"),
            ("1E", "1000P"),
            ("1Ei", "1024Pi"),
            (".5", "500m"),
        ];
        for (a, b) in cases {
            assert_eq!(q(a), q(b), "{a} == {b}");
        }
    }

    #[test]
    fn different_values_compare_unequal() {
        let cases = [
            ("128974848", "129e6"),
            ("1Gi", "1G"),
            ("1", "-1"),
            ("500m", "501m"),
            ("1Mi", "1M"),
            ("0.1", "0.10000001"),
        ];
        for (a, b) in cases {
            assert_ne!(q(a), q(b), "{a} != {b}");
        }
    }

    #[test]
    fn strings_that_are_not_quantities_do_not_parse() {
        for s in [
            "", "-", ".", "abc", "1Gb", "1 Gi", "25%", "1e", "1e+", "1ee3", "1.2.3", "e3", "1e9999",
        ] {
            assert_eq!(Quantity::parse(s), None, "{s:?}");
        }
    }

    #[test]
    fn json_numbers_parse_as_quantities() {
        assert_eq!(
            Quantity::from_json(&serde_json::json!(0.5)),
            Some(q("500m"))
        );
        assert_eq!(Quantity::from_json(&serde_json::json!(2)), Some(q("2000m")));
        assert_eq!(Quantity::from_json(&serde_json::json!(true)), None);
    }
}
