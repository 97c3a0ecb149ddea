//! Dates on the wire, read as the official JavaScript client reads them with `new Date(text)`:
//! whether a subscription has ended depends on it, so a form `Date` reads must not be taken
//! for an unreadable one (that once kept an ended plan in force).
//!
//! Read: RFC 3339; ISO 8601 dates alone (`2020-12-31`, `2020-12`, `2020`: midnight UTC, as
//! `Date` reads them); date-times with `T`, `t` or a space, minutes with or without seconds
//! and their fraction, and an offset that is `Z`, `±HH:MM`, `±HHMM` or absent. Two deliberate
//! differences, documented in the README: a date-time without an offset is UTC (`Date` takes
//! the process's local time zone, so two servers would decide differently), and a date that
//! does not exist (`2020-02-30`) is unreadable (`Date` rolls it over into March).

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The instant `text` names, or `None` when it is no date `Date` would read the same way.
pub(crate) fn parse_instant(text: &str) -> Option<OffsetDateTime> {
    // What the platform sends: one parse, on every check of every subscription that ends.
    if let Ok(instant) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(instant);
    }
    let (date, rest) = match text.find(['T', 't', ' ']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let date = parse_date(date)?;
    let Some(rest) = rest else {
        return Some(date.midnight().assume_utc());
    };
    let split = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let time = parse_time(&rest[..split])?;
    let offset = parse_offset(&rest[split..])?;
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
fn parse_date(text: &str) -> Option<Date> {
    let mut parts = text.split('-');
    let year = number(parts.next()?, 4)?;
    let month = parts.next().map_or(Some(1), |part| number(part, 2))?;
    let day = parts.next().map_or(Some(1), |part| number(part, 2))?;
    if parts.next().is_some() {
        return None;
    }
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()
}

/// `HH:MM`, `HH:MM:SS` or `HH:MM:SS.fraction`.
fn parse_time(text: &str) -> Option<Time> {
    let (clock, fraction) = match text.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (text, None),
    };
    let mut parts = clock.split(':');
    let hour = u8::try_from(number(parts.next()?, 2)?).ok()?;
    let minute = u8::try_from(number(parts.next()?, 2)?).ok()?;
    let second = match parts.next() {
        Some(part) => u8::try_from(number(part, 2)?).ok()?,
        None if fraction.is_none() => 0,
        None => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    let nanos = match fraction {
        None => 0,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            // The first nine digits are nanoseconds; more are finer than `Date` keeps.
            let digits = &digits[..digits.len().min(9)];
            let scale = 10u32.pow(9 - digits.len() as u32);
            digits.parse::<u32>().ok()? * scale
        }
        Some(_) => return None,
    };
    Time::from_hms_nano(hour, minute, second, nanos).ok()
}

/// `Z`, `±HH:MM`, `±HHMM`, or nothing (UTC).
fn parse_offset(text: &str) -> Option<UtcOffset> {
    if text.is_empty() || text.eq_ignore_ascii_case("z") {
        return Some(UtcOffset::UTC);
    }
    let sign: i8 = match text.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = &text[1..];
    let (hours, minutes) = match digits.split_once(':') {
        Some((hours, minutes)) => (hours, minutes),
        None if digits.len() == 4 => digits.split_at(2),
        None => return None,
    };
    let hours = i8::try_from(number(hours, 2)?).ok()?;
    let minutes = i8::try_from(number(minutes, 2)?).ok()?;
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
}

/// Exactly `width` ASCII digits.
fn number(text: &str, width: usize) -> Option<u32> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `new Date(text).toISOString()` answers in Node (with `TZ=UTC` for the forms
    /// without an offset), or `None` where it is `Invalid Date` or where we refuse on purpose.
    const READ: [(&str, Option<&str>); 16] = [
        ("2020-12-31T23:59:59Z", Some("2020-12-31T23:59:59Z")),
        (
            "2099-01-01T00:00:00.5+02:00",
            Some("2098-12-31T22:00:00.5Z"),
        ),
        ("2020-12-31", Some("2020-12-31T00:00:00Z")),
        ("2099-01", Some("2099-01-01T00:00:00Z")),
        ("2099", Some("2099-01-01T00:00:00Z")),
        ("2020-06-30T00:00:00", Some("2020-06-30T00:00:00Z")),
        ("2021-01-31T23:59:59+0200", Some("2021-01-31T21:59:59Z")),
        ("2099-01-01T00:00", Some("2099-01-01T00:00:00Z")),
        ("2099-01-01T00:00Z", Some("2099-01-01T00:00:00Z")),
        ("2099-01-01 00:00:00", Some("2099-01-01T00:00:00Z")),
        ("2099-01-01t00:00:00z", Some("2099-01-01T00:00:00Z")),
        ("2099-13-01", None),
        ("garbage", None),
        ("20990101", None),
        ("2099-01-01T00:00:00+02", None),
        // `Date` rolls it into March; a date that does not exist is refused here.
        ("2099-02-30", None),
    ];

    #[test]
    fn reads_what_javascripts_date_reads() {
        for (text, expected) in READ {
            let expected = expected.map(|iso| OffsetDateTime::parse(iso, &Rfc3339).unwrap());
            assert_eq!(parse_instant(text), expected, "{text}");
        }
    }
}
