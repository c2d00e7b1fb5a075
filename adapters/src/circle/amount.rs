//! Exact conversion between integer base units (what Trust OS signs, DESIGN.md invariant 5) and
//! the decimal amount strings of Circle's API (`"amounts": ["0.001"]` in a transfer request or a
//! transaction; a token's `decimals` says where the point goes: USDC has 6, so 1000 base units
//! are `"0.001"`).
//!
//! No floating point anywhere: both directions work on decimal digits and checked `u128`
//! arithmetic. [`to_decimal`] writes the shortest exact form (no trailing fractional zeros, no
//! point for whole amounts, no exponent, no sign). [`from_decimal`] reads plain unsigned decimals
//! only: ASCII digits with at most one `.` that has a digit on each side. It refuses more
//! fractional digits than the token has, even zeros, so that no amount is ever rounded and a
//! string of another token's precision is caught rather than silently reinterpreted.
//!
//! Sources: `POST /v1/w3s/developer/transactions/transfer`, whose `amounts` are decimal strings,
//! <https://developers.circle.com/api-reference/wallets/developer-controlled-wallets/create-developer-transaction-transfer>;
//! a transaction's `amounts` (example `["6.62607015"]`),
//! <https://developers.circle.com/api-reference/wallets/developer-controlled-wallets/get-lowest-nonce-transaction>.

/// Writes `base` units of a token with `decimals` as Circle's decimal string.
///
/// `to_decimal(1000, 6)` is `"0.001"`, `to_decimal(1_000_000, 6)` is `"1"`,
/// `to_decimal(1_500_000, 6)` is `"1.5"`, `to_decimal(0, 6)` is `"0"`.
pub fn to_decimal(base: u128, decimals: u8) -> String {
    let digits = base.to_string();
    let decimals = usize::from(decimals);
    let (whole, fraction) = if digits.len() > decimals {
        let (whole, fraction) = digits.split_at(digits.len() - decimals);
        (whole.to_owned(), fraction.to_owned())
    } else {
        ("0".to_owned(), format!("{digits:0>decimals$}"))
    };
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        whole
    } else {
        format!("{whole}.{fraction}")
    }
}

/// Reads Circle's decimal string as base units of a token with `decimals`.
///
/// Refuses with [`AmountError::TooPrecise`] more fractional digits than `decimals`, and with
/// [`AmountError::Malformed`] anything but digits with an optional inner point (empty text, a
/// sign, an exponent, whitespace, a leading or trailing `.`, a second `.`) and amounts that do not
/// fit in `u128` base units. Leading zeros are accepted (`"01.5"` is 1.5).
pub fn from_decimal(text: &str, decimals: u8) -> Result<u128, AmountError> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    if !is_digits(whole) {
        return Err(AmountError::Malformed {
            reason: "expected digits before any decimal point",
        });
    }
    let fraction = match fraction {
        None => "",
        Some(fraction) if is_digits(fraction) => fraction,
        Some(_) => {
            return Err(AmountError::Malformed {
                reason: "expected digits after the decimal point",
            });
        }
    };
    let decimals = usize::from(decimals);
    if fraction.len() > decimals {
        return Err(AmountError::TooPrecise {
            digits: fraction.len(),
            decimals,
        });
    }
    let padding = decimals - fraction.len();
    let overflow = AmountError::Malformed {
        reason: "amount does not fit in 128-bit base units",
    };
    let mut value: u128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        value = value
            .checked_mul(10)
            .and_then(|value| value.checked_add(u128::from(digit - b'0')))
            .ok_or_else(|| overflow.clone())?;
    }
    for _ in 0..padding {
        value = value.checked_mul(10).ok_or_else(|| overflow.clone())?;
    }
    Ok(value)
}

/// Non-empty and all ASCII digits.
fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

/// Why a decimal amount was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// More fractional digits than the token has.
    #[error("amount has {digits} fractional digits; the token has {decimals}")]
    TooPrecise {
        /// Fractional digits found.
        digits: usize,
        /// The token's decimals.
        decimals: usize,
    },
    /// Not a plain unsigned decimal, or too large.
    #[error("amount is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
}

impl AmountError {
    /// Stable machine-readable reason code.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::TooPrecise { .. } => "CIRCLE_AMOUNT_TOO_PRECISE",
            Self::Malformed { .. } => "CIRCLE_AMOUNT_MALFORMED",
        }
    }

    /// Every reason code this module can return.
    pub fn all_reason_codes() -> &'static [&'static str] {
        &["CIRCLE_AMOUNT_TOO_PRECISE", "CIRCLE_AMOUNT_MALFORMED"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn base_units_to_decimal() {
        assert_eq!(to_decimal(1000, 6), "0.001");
        assert_eq!(to_decimal(1_000_000, 6), "1");
        assert_eq!(to_decimal(1_500_000, 6), "1.5");
        assert_eq!(to_decimal(1, 6), "0.000001");
        assert_eq!(to_decimal(0, 6), "0");
        assert_eq!(to_decimal(10, 0), "10");
        assert_eq!(to_decimal(123_456_789, 2), "1234567.89");
        assert_eq!(to_decimal(662_607_015, 8), "6.62607015");
        assert_eq!(to_decimal(1, 18), "0.000000000000000001");
        assert_eq!(
            to_decimal(u128::MAX, 6),
            "340282366920938463463374607431768.211455"
        );
        assert_eq!(to_decimal(5, 255).len(), 257);
    }

    #[test]
    fn decimal_to_base_units() {
        assert_eq!(from_decimal("0.001", 6), Ok(1000));
        assert_eq!(from_decimal("1", 6), Ok(1_000_000));
        assert_eq!(from_decimal("1.5", 6), Ok(1_500_000));
        assert_eq!(from_decimal("1.000000", 6), Ok(1_000_000));
        assert_eq!(from_decimal("0", 6), Ok(0));
        assert_eq!(from_decimal("007.25", 2), Ok(725));
        assert_eq!(from_decimal("6.62607015", 8), Ok(662_607_015));
        assert_eq!(
            from_decimal("340282366920938463463374607431768.211455", 6),
            Ok(u128::MAX)
        );
        assert_eq!(from_decimal("0", 255), Ok(0));
    }

    #[test]
    fn too_precise_amounts_are_refused() {
        for (text, decimals) in [("0.0000001", 6), ("1.0000000", 6), ("0.5", 0), ("1.", 6)] {
            let result = from_decimal(text, decimals);
            if text == "1." {
                assert_eq!(result.unwrap_err().reason_code(), "CIRCLE_AMOUNT_MALFORMED");
            } else {
                assert_eq!(
                    result.unwrap_err().reason_code(),
                    "CIRCLE_AMOUNT_TOO_PRECISE",
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn malformed_amounts_are_refused() {
        for text in [
            "",
            ".",
            ".5",
            "5.",
            "-1",
            "+1",
            "1e6",
            "1E6",
            "1.5e2",
            " 1",
            "1 ",
            "1,5",
            "1.2.3",
            "1_000",
            "0x10",
            "١",
            "NaN",
            "inf",
            "340282366920938463463374607431768.211456",
            "340282366920938463463374607431769",
            "1",
        ] {
            let decimals = if text == "1" { 39 } else { 6 };
            assert_eq!(
                from_decimal(text, decimals).unwrap_err().reason_code(),
                "CIRCLE_AMOUNT_MALFORMED",
                "{text:?}"
            );
        }
    }

    #[test]
    fn reason_codes_are_distinct_and_prefixed() {
        let errors = [
            AmountError::TooPrecise {
                digits: 0,
                decimals: 0,
            },
            AmountError::Malformed { reason: "" },
        ];
        let codes: Vec<_> = errors.iter().map(AmountError::reason_code).collect();
        assert_eq!(codes, AmountError::all_reason_codes());
        assert_ne!(codes[0], codes[1]);
    }

    proptest! {
        #[test]
        fn round_trips(base in any::<u128>(), decimals in any::<u8>()) {
            let text = to_decimal(base, decimals);
            prop_assert!(!text.contains('e') && !text.starts_with('.') && !text.ends_with('.'));
            prop_assert!(!(text.contains('.') && text.ends_with('0')));
            prop_assert_eq!(from_decimal(&text, decimals), Ok(base));
        }

        #[test]
        fn parses_what_it_accepts_exactly(whole in 0u64.., fraction in 0u32..1_000_000) {
            let text = format!("{whole}.{fraction:06}");
            let expected = u128::from(whole) * 1_000_000 + u128::from(fraction);
            prop_assert_eq!(from_decimal(&text, 6), Ok(expected));
            prop_assert_eq!(from_decimal(&to_decimal(expected, 6), 6), Ok(expected));
        }
    }
}
