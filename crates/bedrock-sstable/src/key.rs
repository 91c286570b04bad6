//! Internal keys: a user key followed by an 8-byte trailer that packs the
//! sequence number and the kind of write.
//!
//! ```text
//! +----------------------+-------------------------------------------+
//! | user key: n bytes    | trailer: u64 LE = seq << 8 | kind (1 byte) |
//! +----------------------+-------------------------------------------+
//! ```
//!
//! Internal keys order by user key ascending (bytewise), then sequence
//! number descending, then kind descending, so the newest version of a
//! user key comes first. Because `seq < 2^56`, "sequence descending then
//! kind descending" is exactly "trailer descending".

use std::cmp::Ordering;
use std::mem::size_of;

/// Bytes of the trailer that follows the user key in an internal key.
pub const TRAILER_LEN: usize = size_of::<u64>();

/// The largest sequence number an internal key can carry (56 bits).
pub const MAX_SEQUENCE: u64 = (1 << 56) - 1;

/// The kind of write an internal key records.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A tombstone: the user key was deleted at this sequence number.
    Delete = 0,
    /// A value was written at this sequence number.
    Put = 1,
}

impl TryFrom<u8> for ValueKind {
    type Error = u8;

    /// Decodes a kind byte; an unknown byte is returned as the error.
    fn try_from(byte: u8) -> Result<Self, u8> {
        match byte {
            0 => Ok(ValueKind::Delete),
            1 => Ok(ValueKind::Put),
            other => Err(other),
        }
    }
}

/// Packs a sequence number and kind into a trailer. `seq` above
/// [`MAX_SEQUENCE`] is clamped to it.
fn pack_trailer(seq: u64, kind: ValueKind) -> u64 {
    (seq.min(MAX_SEQUENCE) << 8) | u64::from(kind as u8)
}

/// The 8-byte trailer of an internal key for (`seq`, `kind`): the u64
/// little-endian `seq << 8 | kind`, with `seq` clamped to
/// [`MAX_SEQUENCE`]. An internal key is the user key followed by it.
pub fn internal_key_trailer(seq: u64, kind: ValueKind) -> [u8; TRAILER_LEN] {
    pack_trailer(seq, kind).to_le_bytes()
}

/// Appends the internal key for (`user_key`, `seq`, `kind`) to `out`:
/// `user_key` then the u64 little-endian trailer `seq << 8 | kind`.
///
/// A `seq` above [`MAX_SEQUENCE`] is clamped to [`MAX_SEQUENCE`], so
/// `u64::MAX` can be used to mean "the newest version" in a seek key.
pub fn encode_internal_key(user_key: &[u8], seq: u64, kind: ValueKind, out: &mut Vec<u8>) {
    out.reserve(user_key.len().saturating_add(TRAILER_LEN));
    out.extend_from_slice(user_key);
    out.extend_from_slice(&internal_key_trailer(seq, kind));
}

/// Splits `ikey` into its user key and raw trailer, or `None` if it is
/// shorter than [`TRAILER_LEN`]. The kind byte is not checked.
fn split(ikey: &[u8]) -> Option<(&[u8], u64)> {
    let at = ikey.len().checked_sub(TRAILER_LEN)?;
    let (user_key, trailer) = ikey.split_at_checked(at)?;
    Some((user_key, u64::from_le_bytes(trailer.try_into().ok()?)))
}

/// Decodes an internal key into (user key, sequence number, kind).
///
/// Returns `None` if `ikey` is shorter than [`TRAILER_LEN`] bytes or its
/// kind byte is not a [`ValueKind`].
pub fn decode_internal_key(ikey: &[u8]) -> Option<(&[u8], u64, ValueKind)> {
    let (user_key, trailer) = split(ikey)?;
    let kind = ValueKind::try_from(trailer.to_le_bytes().first().copied()?).ok()?;
    Some((user_key, trailer >> 8, kind))
}

/// The user-key part of an internal key, or `None` if `ikey` is shorter
/// than [`TRAILER_LEN`] bytes.
pub fn user_key(ikey: &[u8]) -> Option<&[u8]> {
    split(ikey).map(|(user_key, _)| user_key)
}

/// Orders internal keys: user key ascending (bytewise), then sequence
/// number descending, then kind descending.
///
/// Never panics. Malformed input is ordered consistently, so the result is
/// still a total order: keys shorter than [`TRAILER_LEN`] sort before every
/// well-formed key and bytewise among themselves; keys with an unknown kind
/// byte order by their raw trailer like any other.
pub fn compare_internal_keys(a: &[u8], b: &[u8]) -> Ordering {
    match (split(a), split(b)) {
        (Some((ua, ta)), Some((ub, tb))) => ua.cmp(ub).then_with(|| tb.cmp(&ta)),
        (None, None) => a.cmp(b),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
    }
}

/// The smallest key `k` with `last <= k < next` that is no longer than
/// `last`, used as the index entry of a data block whose last key is
/// `last` when the next block starts with `next` (LevelDB's
/// `FindShortestSeparator`).
///
/// When the user keys differ at some byte that can be incremented without
/// reaching `next`'s byte, the separator is the user-key prefix up to that
/// byte, incremented, with the trailer of ([`MAX_SEQUENCE`], `Put`), the
/// first internal key of that user key. Otherwise it is `last` itself.
pub(crate) fn shortest_separator(last: &[u8], next: &[u8]) -> Vec<u8> {
    let (Some(a), Some(b)) = (user_key(last), user_key(next)) else { return last.to_vec() };
    let shared = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (Some(&x), Some(&y)) = (a.get(shared), b.get(shared)) else { return last.to_vec() };
    let Some(bumped) = x.checked_add(1) else { return last.to_vec() };
    let Some(prefix) = a.get(..shared) else { return last.to_vec() };
    if bumped >= y || shared.saturating_add(1) >= a.len() {
        return last.to_vec();
    }
    let mut sep = Vec::with_capacity(shared.saturating_add(1 + TRAILER_LEN));
    sep.extend_from_slice(prefix);
    sep.push(bumped);
    sep.extend_from_slice(&pack_trailer(MAX_SEQUENCE, ValueKind::Put).to_le_bytes());
    debug_assert_eq!(compare_internal_keys(last, &sep), Ordering::Less);
    debug_assert_eq!(compare_internal_keys(&sep, next), Ordering::Less);
    sep
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ik(user_key: &[u8], seq: u64, kind: ValueKind) -> Vec<u8> {
        let mut out = Vec::new();
        encode_internal_key(user_key, seq, kind, &mut out);
        out
    }

    #[test]
    fn trailer_layout_is_seq_shifted_or_kind_little_endian() {
        let k = ik(b"ab", 0x0102_0304, ValueKind::Put);
        assert_eq!(k, [b'a', b'b', 0x01, 0x04, 0x03, 0x02, 0x01, 0, 0, 0]);
        assert_eq!(decode_internal_key(&k), Some((&b"ab"[..], 0x0102_0304, ValueKind::Put)));
    }

    #[test]
    fn decode_rejects_short_keys_and_unknown_kinds() {
        assert_eq!(decode_internal_key(&[0; 7]), None);
        let mut k = ik(b"x", 5, ValueKind::Delete);
        if let Some(kind) = k.get_mut(1) {
            *kind = 2;
        }
        assert_eq!(decode_internal_key(&k), None);
        assert_eq!(decode_internal_key(&[0; 8]), Some((&b""[..], 0, ValueKind::Delete)));
    }

    #[test]
    fn sequence_above_max_is_clamped() {
        let k = ik(b"k", u64::MAX, ValueKind::Put);
        assert_eq!(decode_internal_key(&k), Some((&b"k"[..], MAX_SEQUENCE, ValueKind::Put)));
    }

    #[test]
    fn order_is_user_key_then_newest_first_then_put_before_delete() {
        let keys = [
            ik(b"a", 9, ValueKind::Put),
            ik(b"a", 9, ValueKind::Delete),
            ik(b"a", 1, ValueKind::Put),
            ik(b"a\0", 100, ValueKind::Put),
            ik(b"b", MAX_SEQUENCE, ValueKind::Put),
            ik(b"b", 0, ValueKind::Delete),
        ];
        for (i, x) in keys.iter().enumerate() {
            for (j, y) in keys.iter().enumerate() {
                assert_eq!(compare_internal_keys(x, y), i.cmp(&j), "{i} vs {j}");
            }
        }
    }

    #[test]
    fn short_keys_sort_first() {
        assert_eq!(compare_internal_keys(b"zz", &ik(b"", 0, ValueKind::Delete)), Ordering::Less);
        assert_eq!(compare_internal_keys(b"a", b"b"), Ordering::Less);
    }

    #[test]
    fn separator_shortens_only_when_possible() {
        let sep = shortest_separator(&ik(b"abcdef", 3, ValueKind::Put), &ik(b"abzz", 9, ValueKind::Put));
        assert_eq!(sep, ik(b"abd", MAX_SEQUENCE, ValueKind::Put));
        // Same user key: cannot shorten.
        let last = ik(b"abc", 9, ValueKind::Put);
        assert_eq!(shortest_separator(&last, &ik(b"abc", 3, ValueKind::Put)), last);
        // Prefix: cannot shorten.
        let last = ik(b"ab", 1, ValueKind::Put);
        assert_eq!(shortest_separator(&last, &ik(b"abc", 1, ValueKind::Put)), last);
        // Adjacent bytes: cannot shorten.
        let last = ik(b"ab1234", 1, ValueKind::Put);
        assert_eq!(shortest_separator(&last, &ik(b"ac", 1, ValueKind::Put)), last);
        // A shared 0xff prefix is kept.
        let last = ik(&[0xff, 1, 2], 1, ValueKind::Put);
        let sep = shortest_separator(&last, &ik(&[0xff, 9], 1, ValueKind::Put));
        assert_eq!(sep, ik(&[0xff, 2], MAX_SEQUENCE, ValueKind::Put));
    }

    fn any_key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..12),
            (proptest::collection::vec(0u8..3, 0..3), 0u64..4, any::<bool>()).prop_map(|(u, s, put)| ik(
                &u,
                s,
                if put { ValueKind::Put } else { ValueKind::Delete }
            )),
        ]
    }

    proptest! {
        #[test]
        fn compare_is_a_total_order(a in any_key(), b in any_key(), c in any_key()) {
            let ab = compare_internal_keys(&a, &b);
            prop_assert_eq!(ab, compare_internal_keys(&b, &a).reverse());
            prop_assert_eq!(ab == Ordering::Equal, a == b);
            if ab != Ordering::Greater && compare_internal_keys(&b, &c) != Ordering::Greater {
                prop_assert_ne!(compare_internal_keys(&a, &c), Ordering::Greater);
            }
        }

        #[test]
        fn separator_lies_between(a in any_key(), b in any_key()) {
            prop_assume!(decode_internal_key(&a).is_some() && decode_internal_key(&b).is_some());
            let (last, next) = if compare_internal_keys(&a, &b) == Ordering::Less { (a, b) } else { (b, a) };
            prop_assume!(last != next);
            let sep = shortest_separator(&last, &next);
            prop_assert_ne!(compare_internal_keys(&last, &sep), Ordering::Greater);
            prop_assert_eq!(compare_internal_keys(&sep, &next), Ordering::Less);
            prop_assert!(sep.len() <= last.len());
        }
    }
}
