//! Keys built from caller data: Redis keys, namespaced idempotency keys, cache scopes. A
//! resolver may return any string as a customer id (emails, `tenant:123`), so parts are never
//! joined with a separator alone: `mallory` + `line_items:x` and `mallory:line_items` + `x`
//! must not make one key. Every variable part is length-prefixed ([`compose`]), or the whole
//! is hashed ([`digest`]) where the result must stay short.

/// The parts as one key that no other list of parts makes: each part as `<bytes>:<part>`,
/// after one another (`7:mallory12:line_items:x`). Readable in `redis-cli`, and the length
/// says where each part ends whatever it holds.
pub(crate) fn compose(parts: &[&str]) -> String {
    let mut key = String::with_capacity(parts.iter().map(|part| part.len() + 4).sum());
    for part in parts {
        // By hand rather than `write!`: the formatting machinery is slower than the key's
        // own work, and guards compose keys at the request rate.
        let mut digits = [0; 20];
        key.extend(
            decimal(part.len() as u64, &mut digits)
                .iter()
                .map(|&d| char::from(d)),
        );
        key.push(':');
        key.push_str(part);
    }
    key
}

/// The decimal digits of `value`, written at the end of `digits`.
pub(crate) fn decimal(mut value: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &digits[at..];
        }
    }
}

/// A short key for the parts: the SHA-256 of their [`compose`]d form, in hex (64 characters).
/// For keys the platform bounds (an idempotency key has at most 255 characters): the same
/// parts always give the same key, so a retry keeps it.
pub(crate) fn digest(parts: &[&str]) -> String {
    sha256_hex(&[compose(parts).as_bytes()])
}

/// The SHA-256 of the bytes, one slice after another, in lowercase hex (64 characters).
pub(crate) fn sha256_hex(bytes: &[&[u8]]) -> String {
    let digest = sha256(bytes);
    let mut hex = [0; 64];
    hex_into(&digest, &mut hex);
    // Hex digits are ASCII.
    String::from_utf8_lossy(&hex).into_owned()
}

/// The SHA-256 of the bytes, one slice after another.
pub(crate) fn sha256(bytes: &[&[u8]]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for slice in bytes {
        context.update(slice);
    }
    let mut digest = [0; 32];
    digest.copy_from_slice(context.finish().as_ref());
    digest
}

/// Writes the bytes in lowercase hex into `out`, as many as it has room for (two digits each).
pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

/// A new random key (a UUID v4): the idempotency key of an event, the id of a hold. From the
/// thread's ChaCha generator, seeded by the OS, rather than a `getrandom` call per key, which
/// was a system call on every usage request.
pub(crate) fn random_key() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_that_join_alike_make_different_keys() {
        let pairs = [
            (
                vec!["mallory", "line_items:x"],
                vec!["mallory:line_items", "x"],
            ),
            (
                vec!["mallory:line_items:x", "K1"],
                vec!["mallory", "line_items:x:K1"],
            ),
            (vec!["a", ""], vec!["", "a"]),
            (vec!["1:a"], vec!["1", "a"]),
            (vec!["ab"], vec!["a", "b"]),
        ];
        for (one, other) in pairs {
            assert_ne!(compose(&one), compose(&other), "{one:?} {other:?}");
            assert_ne!(digest(&one), digest(&other), "{one:?} {other:?}");
        }
    }

    #[test]
    fn keys_are_stable_and_digests_short() {
        assert_eq!(compose(&["mallory", "x"]), "7:mallory1:x");
        assert_eq!(digest(&["c", "k"]), digest(&["c", "k"]));
        let long = "k".repeat(10_000);
        assert_eq!(digest(&["customer", &long]).len(), 64);
        assert_eq!(compose(&["é"]), "2:é", "lengths in bytes");
    }

    #[test]
    fn decimal_digits() {
        for value in [0, 7, 10, 12, 1_000_000, u64::MAX] {
            assert_eq!(decimal(value, &mut [0; 20]), value.to_string().as_bytes());
        }
    }
}
